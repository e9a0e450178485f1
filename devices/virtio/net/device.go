// Package net implements the virtio-net device (virtio 1.2, 5.1): a receive
// and a transmit queue between the guest driver and a network.Backend, the
// configuration space (MAC address, link status) and offload negotiation.
// No control queue and no multiqueue.
//
// Threads: with a TAP (network.Pollable) and eventfd kicks, one event-loop
// goroutine per activation serves both queues (loop.go): it waits on an
// epoll set of the TAP and both kicks, drains the transmit queue (pop ->
// validate -> backend WriteFrame -> push), then reads every frame the TAP
// holds into one staging buffer and copies it into the guest's receive
// buffers, then checks once whether the guest wants an interrupt. With
// other backends or kicks, a tx worker and an rx worker do the same per
// queue; the rx worker reads the backend itself (TryReadFrame until
// nothing is queued, then a blocking ReadFrame). No frame changes
// goroutines on its way. Reset stops the activation and wakes the loop or
// the backend read (Wake), so it never waits for host traffic. While the
// guest posts no receive buffers the device stops reading, and the backend
// (for TAP, the kernel's queue) holds or drops what follows. No vCPU ever
// waits for the network.
//
// Guest faults: a malformed chain or an invalid header drops that frame
// (the chain completes with 0 bytes written) and is counted; a broken ring
// stops the device and is reported through virtio.FailureReporter, so the
// transport sets DEVICE_NEEDS_RESET and the VMM runs on.
package net

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/network"
)

// Queue indices and sizes.
const (
	RxQueue   = 0
	TxQueue   = 1
	QueueSize = 256

	// notifyEvery bounds how many frames complete before the workers check
	// whether the guest wants an interrupt; notifyBytes bounds the bytes of
	// transmitted frames (see drainTx).
	notifyEvery = 32
	notifyBytes = 32 << 10
	// stagingLen holds the header and the largest frame, plus one byte so
	// that a backend can tell an oversized (truncated) frame from a full one.
	stagingLen = network.HeaderLen + MaxFrameLen + 1
)

// Configuration space (virtio 1.2, 5.1.4, struct virtio_net_config).
const (
	cfgMAC      = 0
	cfgStatus   = 6
	cfgMaxPairs = 8
	configSize  = 10

	statusLinkUp = 1 // VIRTIO_NET_S_LINK_UP
)

// Stats are the device's counters since New.
type Stats struct {
	TxFrames, TxBytes uint64 // frames (and their bytes, without header) sent to the backend
	TxDropped         uint64 // guest frames refused (bad header, length, chain) or failed in the backend
	RxFrames, RxBytes uint64 // frames delivered to the guest
	RxDropped         uint64 // backend frames refused or not fitting the guest's buffers
	BadChains         uint64 // malformed chains completed with 0 bytes
	Failures          uint64 // activations stopped by a queue fault or a backend error
}

type counters struct {
	txFrames, txBytes, txDropped, rxFrames, rxBytes, rxDropped, badChains, failures atomic.Uint64
}

// Config describes a Device.
type Config struct {
	MAC     network.MAC
	Backend network.Backend
	// OwnThread runs the event loop (a Pollable backend with eventfd
	// kicks) on its own OS thread, blocking in epoll_wait, instead of in
	// Go's netpoller. Measured better for a TAP, worse for the user-mode
	// network's socket (see loop.go).
	OwnThread bool
}

// Device is a virtio-net device. It implements virtio.Device.
type Device struct {
	backend   network.Backend
	ownThread bool // Config.OwnThread
	features  uint64
	config    [configSize]byte // immutable after New
	stats     counters

	// staging receives each frame from the backend before it is copied
	// to the guest; only the (single) live rx worker uses it.
	staging   []byte
	readErr   atomic.Pointer[error] // a failed backend read: no more activations
	closed    chan struct{}         // closed by Close
	closeOnce sync.Once

	// mu serializes Activate, Reset and Close, and protects run.
	mu  sync.Mutex
	run *activation
}

// activation is one Activate..Reset period.
type activation struct {
	mem      *memory.Guest
	features uint64
	rxOffers uint64 // receive offloads the backend was told to use (see rxOffloads)
	queues   []*queue.Queue
	kicks    []virtio.Kick
	irq      virtio.Interrupt

	// loop is the event loop's wait set when one goroutine serves both
	// queues (see serveLoop), nil with one worker per queue.
	loop *waitSet
	// waitRx waits for the guest to post receive buffers; nil means the
	// receive kick's Wait. Set before the rx worker starts, used by it only.
	waitRx func() error

	wg        sync.WaitGroup
	done      chan struct{} // closed to stop the workers
	stopOnce  sync.Once
	resetting atomic.Bool // Reset has begun: do not report failures
	failOnce  sync.Once
}

var _ virtio.Device = (*Device)(nil)

// New makes a device for the backend. The device owns the backend: Close
// closes it.
func New(cfg Config) (*Device, error) {
	if cfg.Backend == nil {
		return nil, errors.New("virtio-net: no backend")
	}
	if cfg.MAC.IsZero() || cfg.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("virtio-net: MAC %v is not a unicast address", cfg.MAC)
	}
	d := &Device{
		backend:   cfg.Backend,
		ownThread: cfg.OwnThread,
		staging:   make([]byte, stagingLen),
		closed:    make(chan struct{}),
	}
	d.features = virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc |
		network.FMAC | network.FStatus | network.FMrgRxbuf | offered(cfg.Backend.Features())
	copy(d.config[cfgMAC:], cfg.MAC[:])
	d.config[cfgStatus] = statusLinkUp
	d.config[cfgMaxPairs] = 1
	return d, nil
}

// offered keeps the backend's offloads whose dependencies (virtio 1.2,
// 5.1.3.1) are also offered.
func offered(backend uint64) uint64 {
	f := backend & network.OffloadFeatures
	if f&network.FGuestCsum == 0 {
		f &^= network.FGuestTSO4 | network.FGuestTSO6 | network.FGuestUFO
	}
	if f&(network.FGuestTSO4|network.FGuestTSO6) == 0 {
		f &^= network.FGuestECN
	}
	if f&network.FCsum == 0 {
		f &^= network.FHostTSO4 | network.FHostTSO6 | network.FHostUFO
	}
	if f&(network.FHostTSO4|network.FHostTSO6) == 0 {
		f &^= network.FHostECN
	}
	return f
}

// rxOffloads returns the negotiated offloads the backend may use for frames
// to the guest: all of them. A large (GSO) frame spans several mergeable
// buffers, which deliver publishes together.
func rxOffloads(features uint64) uint64 {
	return features & network.OffloadFeatures
}

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes implements virtio.Device: receiveq1, transmitq1.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset >= configSize {
		return
	}
	copy(data, d.config[offset:])
}

// WriteConfig implements virtio.Device: the modern configuration space is
// read-only (the MAC is writable only through the control queue, not offered).
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		TxFrames: s.txFrames.Load(), TxBytes: s.txBytes.Load(), TxDropped: s.txDropped.Load(),
		RxFrames: s.rxFrames.Load(), RxBytes: s.rxBytes.Load(), RxDropped: s.rxDropped.Load(),
		BadChains: s.badChains.Load(), Failures: s.failures.Load(),
	}
}

// Activate implements virtio.Device.
func (d *Device) Activate(mem *memory.Guest, features uint64, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) error {
	fail := func(format string, args ...any) error {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-net: activate: "+format, args...)
	}
	if err := virtio.CheckActivate(d.features, features, mem, queues, kicks, irq, 2); err != nil {
		return fail("%w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.closed:
		return fail("device closed")
	default:
	}
	if d.run != nil {
		return fail("already active")
	}
	if p := d.readErr.Load(); p != nil {
		return fail("backend failed: %w", *p)
	}
	rx := rxOffloads(features)
	if err := d.backend.SetGuestOffloads(rx); err != nil {
		return fail("%w", err)
	}
	r := &activation{mem: mem, features: features, rxOffers: rx, queues: queues, kicks: kicks, irq: irq, done: make(chan struct{})}
	d.run = r
	if w, rxk, txk := d.newLoop(kicks); w != nil {
		r.loop = w
		r.wg.Add(1)
		go d.worker(r, "event loop", func(r *activation) error { return d.serveLoop(r, w, rxk, txk) })
		return nil
	}
	r.wg.Add(2)
	go d.worker(r, "receive queue", d.serveRx)
	go d.worker(r, "transmit queue", d.serveTx)
	return nil
}

// Reset implements virtio.Device: it stops the workers (waking the rx
// worker's backend read), waits for them and forgets the queues. A frame
// the rx worker held is dropped.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
}

func (d *Device) resetLocked() {
	r := d.run
	if r == nil {
		return
	}
	d.run = nil
	r.resetting.Store(true)
	r.stop()
	d.backend.Wake() // after stop: the woken rx worker sees it stopped
	r.wg.Wait()
}

// Close resets the device and closes the backend. The device cannot be
// activated again.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
	var err error
	d.closeOnce.Do(func() {
		close(d.closed)
		err = d.backend.Close()
	})
	if err != nil {
		return fmt.Errorf("virtio-net: close backend: %w", err)
	}
	return nil
}

func (r *activation) stop() {
	r.stopOnce.Do(func() {
		close(r.done)
		if r.loop != nil {
			r.loop.wake()
		}
		virtio.CloseKicks(r.kicks)
	})
}

// fail stops r's workers and reports err once, unless Reset is under way.
func (d *Device) fail(r *activation, err error) {
	r.failOnce.Do(func() {
		r.stop()
		d.stats.failures.Add(1)
		if !r.resetting.Load() {
			// From a new goroutine: the transport may call Reset from
			// Failed, and Reset waits for the worker calling fail.
			go virtio.ReportFailure(r.irq, err)
		}
	})
}

// worker runs serve, named what for errors; an error fails the activation.
func (d *Device) worker(r *activation, what string, serve func(*activation) error) {
	defer r.wg.Done()
	if err := serve(r); err != nil {
		d.fail(r, fmt.Errorf("virtio-net: %s: %w", what, err))
	}
}

func (r *activation) stopped() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func notify(r *activation, qi int) error {
	need, err := r.queues[qi].NeedsNotification()
	if err != nil || !need {
		return err
	}
	if err := r.irq.Notify(qi); err != nil {
		return fmt.Errorf("virtio-net: interrupt: %w", err)
	}
	return nil
}
