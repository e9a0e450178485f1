package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// irqState is the interrupt side of the transport: the MSI-X table and PBA
// (PCI Local Bus 3.0, 6.8.2), the virtio vector assignments (msix_config,
// queue_msix_vector), the ISR and DEVICE_NEEDS_RESET.
type irqState struct {
	vectors []MSIVector // one per table entry; fixed after init

	mu sync.Mutex
	// mu protects everything below. It is never held while calling the
	// device or taking Transport.mu.
	table        []msixEntry
	pending      []bool // the PBA
	enabled      bool   // MSI-X Enable in Message Control
	funcMasked   bool   // Function Mask in Message Control
	configVector uint16
	queueVector  []uint16
	isr          uint8
	generation   uint8
	// epoch counts device resets; interrupts and failures reported by an
	// older activation are dropped.
	epoch   uint64
	fault   error // why DEVICE_NEEDS_RESET is set; nil if it is not
	hostErr error // first routing or trigger failure
}

// msixEntry is one MSI-X table entry and the route last given to KVM.
type msixEntry struct {
	addr   uint64
	data   uint32
	masked bool // Vector Control bit 0

	routed     bool
	routedAddr uint64
	routedData uint32
}

const (
	isrQueue  = 1 << 0
	isrConfig = 1 << 1
)

func (s *irqState) init(vectors []MSIVector, nqueues int) {
	s.vectors = vectors
	s.table = make([]msixEntry, len(vectors))
	for i := range s.table {
		s.table[i].masked = true // entries start masked
	}
	s.pending = make([]bool, len(vectors))
	s.configVector = NoVector
	s.queueVector = make([]uint16, nqueues)
	for i := range s.queueVector {
		s.queueVector[i] = NoVector
	}
}

// snapshot is what the common configuration shows of the interrupt state.
type irqSnapshot struct {
	configVector, queueVector uint16
	generation                uint8
	needsReset                bool
}

func (s *irqState) snapshot(queue int) irqSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := irqSnapshot{configVector: s.configVector, generation: s.generation, needsReset: s.fault != nil}
	if queue >= 0 && queue < len(s.queueVector) {
		snap.queueVector = s.queueVector[queue]
	}
	return snap
}

// checkVector maps a driver-chosen vector to what is stored: a vector that
// does not exist becomes NoVector, which the driver reads back as failure
// (virtio 1.2, 4.1.4.3.1).
func (s *irqState) checkVector(v uint16) uint16 {
	if int(v) >= len(s.table) {
		return NoVector
	}
	return v
}

func (s *irqState) setConfigVector(v uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configVector = s.checkVector(v)
}

func (s *irqState) setQueueVector(q int, v uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueVector[q] = s.checkVector(v)
}

// readISR returns and clears the ISR (virtio 1.2, 4.1.4.5).
func (s *irqState) readISR() uint8 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.isr
	s.isr = 0
	return v
}

// reset is the interrupt half of a device reset.
func (s *irqState) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.fault = nil
	s.isr = 0
	s.configVector = NoVector
	for i := range s.queueVector {
		s.queueVector[i] = NoVector
	}
	for i := range s.pending {
		s.pending[i] = false
	}
}

func (s *irqState) noteHostErr(err error) {
	if err != nil && s.hostErr == nil {
		s.hostErr = err
	}
}

// entryImage renders table entry i as the guest reads it.
func (s *irqState) entryImage(i int) [msixEntrySize]byte {
	var img [msixEntrySize]byte
	e := &s.table[i]
	binary.LittleEndian.PutUint64(img[0:], e.addr)
	binary.LittleEndian.PutUint32(img[8:], e.data)
	if e.masked {
		img[12] = 1
	}
	return img
}

// tableEntry locates an access of n bytes at rel in the MSI-X table; it
// must stay inside one entry.
func (s *irqState) tableEntry(rel uint64, n int) (int, uint64, bool) {
	i := rel / msixEntrySize
	off := rel % msixEntrySize
	if i >= uint64(len(s.table)) || off+uint64(n) > msixEntrySize {
		return 0, 0, false
	}
	return int(i), off, true
}

func (s *irqState) tableRead(rel uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, off, ok := s.tableEntry(rel, len(data))
	if !ok {
		return
	}
	img := s.entryImage(i)
	copy(data, img[off:])
}

func (s *irqState) tableWrite(rel uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, off, ok := s.tableEntry(rel, len(data))
	if !ok {
		return
	}
	img := s.entryImage(i)
	copy(img[off:], data)
	e := &s.table[i]
	e.addr = binary.LittleEndian.Uint64(img[0:]) &^ 3 // DWORD-aligned message address
	e.data = binary.LittleEndian.Uint32(img[8:])
	e.masked = img[12]&1 != 0
	s.syncLocked(i)
}

func (s *irqState) pbaRead(rel uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range data {
		var b byte
		for bit := 0; bit < 8; bit++ {
			v := (rel+uint64(k))*8 + uint64(bit)
			if v < uint64(len(s.pending)) && s.pending[v] {
				b |= 1 << bit
			}
		}
		data[k] = b
	}
}

// setControl applies the MSI-X Enable and Function Mask bits.
func (s *irqState) setControl(enabled, funcMasked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enabled, s.funcMasked = enabled, funcMasked
	for i := range s.table {
		s.syncLocked(i)
	}
}

// deliverable reports whether vector i may fire now.
func (s *irqState) deliverable(i int) bool {
	return s.enabled && !s.funcMasked && !s.table[i].masked
}

// syncLocked brings the KVM route of vector i up to date once it is
// unmasked and fires it if a message is pending (PCI Local Bus 3.0, 6.8.2.9).
func (s *irqState) syncLocked(i int) {
	if !s.deliverable(i) {
		return
	}
	if err := s.routeLocked(i); err != nil {
		return
	}
	if s.pending[i] {
		s.pending[i] = false
		s.noteHostErr(s.triggerLocked(i))
	}
}

func (s *irqState) routeLocked(i int) error {
	e := &s.table[i]
	if e.routed && e.routedAddr == e.addr && e.routedData == e.data {
		return nil
	}
	if err := s.vectors[i].Update(e.addr, e.data); err != nil {
		err = fmt.Errorf("virtio-pci: route MSI-X vector %d: %w", i, err)
		s.noteHostErr(err)
		return err
	}
	e.routed, e.routedAddr, e.routedData = true, e.addr, e.data
	return nil
}

func (s *irqState) triggerLocked(i int) error {
	if err := s.vectors[i].Trigger(); err != nil {
		return fmt.Errorf("virtio-pci: trigger MSI-X vector %d: %w", i, err)
	}
	return nil
}

// fireLocked sends vector v, or records it pending while masked. With no
// vector assigned, or MSI-X disabled (there is no INTx fallback), nothing
// is sent.
func (s *irqState) fireLocked(v uint16) error {
	if int(v) >= len(s.table) || !s.enabled {
		return nil
	}
	i := int(v)
	if !s.deliverable(i) {
		s.pending[i] = true
		return nil
	}
	if err := s.routeLocked(i); err != nil {
		return err
	}
	err := s.triggerLocked(i)
	s.noteHostErr(err)
	return err
}

func (s *irqState) notify(epoch uint64, q int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch {
		return nil // the device was reset since: drop
	}
	if q < 0 || q >= len(s.queueVector) {
		return fmt.Errorf("virtio-pci: notify of queue %d, device has %d", q, len(s.queueVector))
	}
	if !s.enabled {
		s.isr |= isrQueue
		return nil
	}
	return s.fireLocked(s.queueVector[q])
}

func (s *irqState) configChanged(epoch uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch {
		return nil
	}
	s.generation++
	s.isr |= isrConfig
	return s.fireLocked(s.configVector)
}

// fail sets DEVICE_NEEDS_RESET for activation epoch and tells the driver.
func (s *irqState) fail(epoch uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch || s.fault != nil {
		return
	}
	if err == nil {
		err = errors.New("virtio-pci: device failed")
	}
	s.fault = err
	s.isr |= isrConfig
	s.noteHostErr(s.fireLocked(s.configVector))
}

// failNow is fail for the current activation.
func (s *irqState) failNow(err error) {
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	s.fail(epoch, err)
}

func (s *irqState) currentEpoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// activation is the virtio.Interrupt handed to Device.Activate: bound to
// one activation, so a worker that outlives a reset cannot interrupt the
// guest or fail the next activation.
type activation struct {
	s     *irqState
	epoch uint64
}

func (s *irqState) activation() *activation {
	return &activation{s: s, epoch: s.currentEpoch()}
}

// Notify implements virtio.Interrupt.
func (a *activation) Notify(queue int) error { return a.s.notify(a.epoch, queue) }

// ConfigChanged implements virtio.Interrupt.
func (a *activation) ConfigChanged() error { return a.s.configChanged(a.epoch) }

// Failed implements virtio.FailureReporter.
func (a *activation) Failed(err error) { a.s.fail(a.epoch, err) }

// Notify implements virtio.Interrupt for the current activation.
func (t *Transport) Notify(queue int) error { return t.irq.notify(t.irq.currentEpoch(), queue) }

// ConfigChanged implements virtio.Interrupt for the current activation:
// it bumps config_generation, sets ISR bit 1 and fires msix_config.
func (t *Transport) ConfigChanged() error { return t.irq.configChanged(t.irq.currentEpoch()) }

// Failed implements virtio.FailureReporter for the current activation.
func (t *Transport) Failed(err error) { t.irq.failNow(err) }

// Fault returns why DEVICE_NEEDS_RESET is set, or nil.
func (t *Transport) Fault() error {
	t.irq.mu.Lock()
	defer t.irq.mu.Unlock()
	return t.irq.fault
}
