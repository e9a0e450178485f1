package devices

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Interrupt raises one edge on the device's interrupt line, e.g. by writing
// to a KVM irqfd. It is called from vCPU goroutines and the input goroutine,
// with no device lock held, and must not block.
type Interrupt interface {
	Trigger() error
}

// InterruptFunc adapts a function to Interrupt.
type InterruptFunc func() error

// Trigger calls f.
func (f InterruptFunc) Trigger() error { return f() }

// SerialSize is the length of a 16550A's register window (COM1 is
// 0x3F8..0x3FF).
const SerialSize = 8

// RXFIFOSize is the depth of the emulated receive FIFO.
const RXFIFOSize = 64

// ErrSerialClosed is returned by ReadFrom once the serial port is closed.
var ErrSerialClosed = errors.New("devices: serial port closed")

// 16550A register offsets (National PC16550D data sheet, register summary).
const (
	regData = 0 // read RBR, write THR; DLL when LCR.DLAB is set
	regIER  = 1 // DLM when LCR.DLAB is set
	regIIR  = 2 // read IIR, write FCR
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// Register bits.
const (
	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmit holding register empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0F // the 16550A has no other IER bits

	iirNoInt = 0x01
	iirMSI   = 0x00
	iirTHRI  = 0x02
	iirRDI   = 0x04
	iirRLSI  = 0x06
	iirFIFO  = 0xC0 // both "FIFOs enabled" bits: what Linux reads as a 16550A

	fcrEnable  = 0x01
	fcrClearRX = 0x02

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1F

	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrDCTS = 0x01
	msrDDSR = 0x02
	msrTERI = 0x04
	msrDDCD = 0x08
	msrCTS  = 0x10
	msrDSR  = 0x20
	msrRI   = 0x40
	msrDCD  = 0x80
)

// Serial is a 16550A UART.
//
// Transmission is instantaneous: THR and the transmitter are always empty
// (LSR.THRE and LSR.TEMT are always set) and every byte written to THR goes
// to the output at once, or into the receive FIFO in loopback mode. Received
// bytes come from Enqueue or ReadFrom into a 64-byte FIFO that is used whether
// or not the guest enables FIFO mode; the FIFO trigger level is ignored and
// "data available" is reported as soon as one byte is present, so no
// character-timeout emulation is needed.
//
// Interrupts: each source (line status, data available, THR empty, modem
// status) that is enabled in IER and becomes pending raises one edge; a
// source that stays pending raises no more. The THR-empty source is latched
// when ETBEI goes from 0 to 1 and by every write to THR (the byte leaves at
// once, so THR is empty again); reading IIR while IIR reports it clears the
// latch. So a driver that reads IIR and then writes a burst of bytes gets one
// edge per burst, not one per byte. IIR reports the highest-priority pending
// source. MCR.OUT2 does not gate the line.
type Serial struct {
	irq Interrupt       // nil: no interrupts
	out *BufferedOutput // transmitted bytes

	mu    sync.Mutex // protects every field below
	space sync.Cond  // L is &mu; broadcast when ReadFrom may make progress

	ier, lcr, mcr, scr byte
	dll, dlm           byte
	fifo               bool // FCR bit 0 (only reported in IIR)
	lsrErr             byte // sticky LSR error bits (only OE can occur), cleared by reading LSR
	msrDelta           byte // MSR delta bits, cleared by reading MSR
	thrPending         bool // THR-empty interrupt latched

	rx     [RXFIFOSize]byte // ring buffer
	rxHead int              // index of the oldest byte
	rxLen  int              // bytes in the ring, 0..RXFIFOSize

	asserted byte // IER-bit mask of the sources pending and enabled after the last access
	closed   bool
	irqErr   error // first interrupt error, returned by Close
	outErr   error // first output error, returned by Close
}

// NewSerial returns a UART that signals irq (may be nil) and writes its
// output, buffered, to out (nil discards). Close flushes the output.
func NewSerial(irq Interrupt, out io.Writer) *Serial {
	s := &Serial{
		irq: irq,
		out: NewBufferedOutput(out, DefaultFlushDelay, DefaultBufferSize),
		dll: 0x0C, // 9600 baud from the PC's 1.8432 MHz clock; nothing depends on it
	}
	s.space.L = &s.mu
	return s
}

// Read implements Device. A wider access reads consecutive registers.
func (s *Serial) Read(offset uint64, data []byte) {
	s.mu.Lock()
	for i := range data {
		data[i] = s.readLocked(offset + uint64(i))
	}
	raise := s.updateLocked()
	s.mu.Unlock()
	if raise {
		s.trigger()
	}
}

// Write implements Device. A wider access writes consecutive registers.
func (s *Serial) Write(offset uint64, data []byte) {
	var tx byte
	emit := false
	s.mu.Lock()
	for i, v := range data {
		if b, ok := s.writeLocked(offset+uint64(i), v); ok {
			tx, emit = b, true
		}
	}
	raise := s.updateLocked()
	s.mu.Unlock()
	// Output may block on the host's writer: never with mu held, so input
	// and other vCPUs are not stalled behind it.
	if emit {
		if err := s.out.WriteByte(tx); err != nil {
			s.noteErr(&s.outErr, fmt.Errorf("devices: serial output: %w", err))
		}
	}
	if raise {
		s.trigger()
	}
}

func (s *Serial) readLocked(off uint64) byte {
	switch off {
	case regData:
		if s.lcr&lcrDLAB != 0 {
			return s.dll
		}
		if s.rxLen == 0 {
			return 0
		}
		v := s.rx[s.rxHead]
		s.rxHead = (s.rxHead + 1) % RXFIFOSize
		s.rxLen--
		s.space.Broadcast()
		return v
	case regIER:
		if s.lcr&lcrDLAB != 0 {
			return s.dlm
		}
		return s.ier
	case regIIR:
		iir := s.iirLocked()
		if iir&0x0F == iirTHRI {
			s.thrPending = false
		}
		return iir
	case regLCR:
		return s.lcr
	case regMCR:
		return s.mcr
	case regLSR:
		lsr := byte(lsrTHRE|lsrTEMT) | s.lsrErr
		if s.rxLen > 0 {
			lsr |= lsrDR
		}
		s.lsrErr = 0
		return lsr
	case regMSR:
		msr := s.msrLinesLocked() | s.msrDelta
		s.msrDelta = 0
		return msr
	case regSCR:
		return s.scr
	default:
		return 0xFF
	}
}

// writeLocked applies one register write and returns the byte to transmit,
// if any.
func (s *Serial) writeLocked(off uint64, v byte) (byte, bool) {
	switch off {
	case regData:
		if s.lcr&lcrDLAB != 0 {
			s.dll = v
			return 0, false
		}
		// Writing THR clears a latched THR-empty interrupt; the byte leaves
		// at once, so THR is empty again and the interrupt is latched again.
		// Both happen under one lock: the source stays pending, and only
		// raises an edge if an IIR read had cleared it.
		s.thrPending = true
		if s.mcr&mcrLoop != 0 {
			if s.rxLen == RXFIFOSize {
				s.lsrErr |= lsrOE // the FIFO keeps its contents; the new byte is lost
			} else {
				s.pushLocked(v)
			}
			return 0, false
		}
		return v, true
	case regIER:
		if s.lcr&lcrDLAB != 0 {
			s.dlm = v
			return 0, false
		}
		old := s.ier
		s.ier = v & ierMask
		if s.ier&ierTHRI != 0 && old&ierTHRI == 0 {
			// Enabling ETBEI while THR is empty interrupts at once: Linux's
			// 8250 start-up test relies on it.
			s.thrPending = true
		}
	case regIIR: // FCR
		enable := v&fcrEnable != 0
		if enable != s.fifo || (enable && v&fcrClearRX != 0) {
			// Changing FIFO mode resets the FIFOs, as does an explicit clear.
			s.rxHead, s.rxLen = 0, 0
			s.space.Broadcast()
		}
		s.fifo = enable
	case regLCR:
		s.lcr = v
	case regMCR:
		oldLines := s.msrLinesLocked()
		wasLoop := s.mcr&mcrLoop != 0
		s.mcr = v & mcrMask
		newLines := s.msrLinesLocked()
		s.msrDelta |= msrDeltas(oldLines, newLines)
		if wasLoop && s.mcr&mcrLoop == 0 {
			s.space.Broadcast() // host input is accepted again
		}
	case regSCR:
		s.scr = v
	}
	// LSR and MSR writes (factory test) are ignored.
	return 0, false
}

// msrLinesLocked returns the MSR's status bits (4..7). In loopback mode the
// modem control outputs are wired back to the inputs: RTS->CTS, DTR->DSR,
// OUT1->RI, OUT2->DCD. Otherwise carrier, data set ready and clear to send
// are asserted, as for a connected terminal.
func (s *Serial) msrLinesLocked() byte {
	if s.mcr&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var m byte
	if s.mcr&mcrRTS != 0 {
		m |= msrCTS
	}
	if s.mcr&mcrDTR != 0 {
		m |= msrDSR
	}
	if s.mcr&mcrOUT1 != 0 {
		m |= msrRI
	}
	if s.mcr&mcrOUT2 != 0 {
		m |= msrDCD
	}
	return m
}

// msrDeltas returns the MSR delta bits for a change of the status lines.
func msrDeltas(old, cur byte) byte {
	changed := old ^ cur
	var d byte
	if changed&msrCTS != 0 {
		d |= msrDCTS
	}
	if changed&msrDSR != 0 {
		d |= msrDDSR
	}
	if old&msrRI != 0 && cur&msrRI == 0 {
		d |= msrTERI // trailing edge only
	}
	if changed&msrDCD != 0 {
		d |= msrDDCD
	}
	return d
}

// pendingLocked returns the interrupt sources that are pending and enabled,
// as IER bits.
func (s *Serial) pendingLocked() byte {
	var p byte
	if s.rxLen > 0 {
		p |= ierRDI
	}
	if s.thrPending {
		p |= ierTHRI
	}
	if s.lsrErr != 0 {
		p |= ierRLSI
	}
	if s.msrDelta != 0 {
		p |= ierMSI
	}
	return p & s.ier
}

// iirLocked returns IIR: the highest-priority pending source and the FIFO
// bits.
func (s *Serial) iirLocked() byte {
	var iir byte = iirNoInt
	switch p := s.pendingLocked(); {
	case p&ierRLSI != 0:
		iir = iirRLSI
	case p&ierRDI != 0:
		iir = iirRDI
	case p&ierTHRI != 0:
		iir = iirTHRI
	case p&ierMSI != 0:
		iir = iirMSI
	}
	if s.fifo {
		iir |= iirFIFO
	}
	return iir
}

// updateLocked records the pending sources and reports whether one became
// pending since the last access, which raises an edge.
func (s *Serial) updateLocked() bool {
	now := s.pendingLocked()
	rising := now&^s.asserted != 0
	s.asserted = now
	return rising
}

func (s *Serial) pushLocked(v byte) {
	s.rx[(s.rxHead+s.rxLen)%RXFIFOSize] = v
	s.rxLen++
}

func (s *Serial) trigger() {
	if s.irq == nil {
		return
	}
	if err := s.irq.Trigger(); err != nil {
		s.noteErr(&s.irqErr, fmt.Errorf("devices: serial interrupt: %w", err))
	}
}

// noteErr keeps err in *first (a field guarded by mu) unless one is there.
func (s *Serial) noteErr(first *error, err error) {
	s.mu.Lock()
	if *first == nil {
		*first = err
	}
	s.mu.Unlock()
}

// Enqueue puts as much of p as fits into the receive FIFO, raises the
// data-available interrupt if enabled, and returns the number of bytes taken.
// It takes nothing while the UART is in loopback mode (its input is then
// disconnected) or after Close.
func (s *Serial) Enqueue(p []byte) int {
	s.mu.Lock()
	n := s.enqueueLocked(p)
	raise := s.updateLocked()
	s.mu.Unlock()
	if raise {
		s.trigger()
	}
	return n
}

func (s *Serial) enqueueLocked(p []byte) int {
	if s.closed || s.mcr&mcrLoop != 0 {
		return 0
	}
	n := min(len(p), RXFIFOSize-s.rxLen)
	for _, v := range p[:n] {
		s.pushLocked(v)
	}
	return n
}

// ReadFrom copies r into the receive FIFO until r returns io.EOF (then it
// returns a nil error), r fails, or the port is closed (ErrSerialClosed).
// When the FIFO is full it sleeps until the guest reads from it, so no input
// is lost and no CPU is spent waiting. It cannot interrupt a blocked r.Read:
// to stop it, close the port and r.
func (s *Serial) ReadFrom(r io.Reader) (int64, error) {
	var buf [RXFIFOSize]byte
	var total int64
	for {
		n, rerr := r.Read(buf[:])
		data := buf[:n]
		for len(data) > 0 {
			k, err := s.enqueueWait(data)
			total += int64(k)
			if err != nil {
				return total, err
			}
			data = data[k:]
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, fmt.Errorf("devices: serial input: %w", rerr)
		}
	}
}

// enqueueWait blocks until the FIFO accepts some of p or the port closes.
func (s *Serial) enqueueWait(p []byte) (int, error) {
	s.mu.Lock()
	for !s.closed && (s.rxLen == RXFIFOSize || s.mcr&mcrLoop != 0) {
		s.space.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return 0, ErrSerialClosed
	}
	n := s.enqueueLocked(p)
	raise := s.updateLocked()
	s.mu.Unlock()
	if raise {
		s.trigger()
	}
	return n, nil
}

// Close flushes buffered output, wakes ReadFrom (which returns
// ErrSerialClosed) and returns the first output error and the first
// interrupt error seen (joined).
// Registers keep working afterwards; output is then unbuffered.
func (s *Serial) Close() error {
	s.mu.Lock()
	s.closed = true
	s.space.Broadcast()
	irqErr, outErr := s.irqErr, s.outErr
	s.irqErr, s.outErr = nil, nil
	s.mu.Unlock()
	if err := s.out.Close(); err != nil && outErr == nil {
		outErr = fmt.Errorf("devices: serial output: %w", err)
	}
	return errors.Join(irqErr, outErr)
}
