// Package rng is the virtio entropy device (virtio 1.2, 5.4): it fills the
// buffers the guest's driver offers with bytes from the host's
// getrandom(2), so a guest has a source of entropy from its first second
// that does not depend on its CPU's RDRAND.
package rng

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

const (
	// QueueSize is the maximum size of the request queue.
	QueueSize = 256
	// MaxRequest caps the bytes one request gets, so that a guest offering
	// a huge buffer cannot keep the worker in getrandom for long; the
	// driver asks again for more.
	MaxRequest = 64 << 10
)

// Stats are the device's counters since it was made.
type Stats struct {
	Requests  uint64 // chains completed, well-formed or not
	Bytes     uint64 // random bytes written into the guest
	BadChains uint64 // malformed chains, or chains with device-readable buffers: completed with 0 bytes
	Failures  uint64 // activations stopped by a queue fault
}

// Device is a virtio entropy device. It implements virtio.Device. One
// worker goroutine per activation serves the queue.
//
// Offered features: VERSION_1, RING_EVENT_IDX, RING_INDIRECT_DESC. It has
// no configuration space.
type Device struct {
	requests, bytes, badChains, failures atomic.Uint64

	// mu serializes Activate and Reset and protects run.
	mu  sync.Mutex
	run *activation
}

// activation is one Activate..Reset period.
type activation struct {
	mem  *memory.Guest
	q    *queue.Queue
	kick virtio.Kick
	irq  virtio.Interrupt

	done      chan struct{} // closed when the worker exits
	stop      atomic.Bool   // the worker exits at the next request boundary
	resetting atomic.Bool   // Reset has begun: do not report failures
}

var _ virtio.Device = (*Device)(nil)

// New makes an entropy device.
func New() *Device { return &Device{} }

const features = virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDEntropy }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return features }

// QueueMaxSizes implements virtio.Device: one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device: there is no configuration space.
func (d *Device) ReadConfig(offset uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device: there is nothing to write.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	return Stats{Requests: d.requests.Load(), Bytes: d.bytes.Load(), BadChains: d.badChains.Load(), Failures: d.failures.Load()}
}

// Activate implements virtio.Device. A queue fault later stops the worker
// and is reported through virtio.FailureReporter if irq implements it.
func (d *Device) Activate(mem *memory.Guest, feat uint64, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) error {
	if err := virtio.CheckActivate(features, feat, mem, queues, kicks, irq, 1); err != nil {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-rng: activate: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		virtio.CloseKicks(kicks)
		return errors.New("virtio-rng: activate: already active")
	}
	r := &activation{mem: mem, q: queues[0], kick: kicks[0], irq: irq, done: make(chan struct{})}
	d.run = r
	go d.worker(r)
	return nil
}

// Reset implements virtio.Device: it closes the kick, waits for the worker
// to exit and forgets the queue.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.run
	if r == nil {
		return
	}
	d.run = nil
	r.resetting.Store(true)
	r.stop.Store(true)
	r.kick.Close()
	<-r.done
}

// worker serves the queue until Reset or a fault.
func (d *Device) worker(r *activation) {
	err := d.serve(r)
	if err != nil {
		r.stop.Store(true)
		r.kick.Close()
		d.failures.Add(1)
	}
	close(r.done)
	// Reported after done: the transport may call Reset from Failed.
	if err != nil && !r.resetting.Load() {
		virtio.ReportFailure(r.irq, fmt.Errorf("virtio-rng: %w", err))
	}
}

func (d *Device) serve(r *activation) error {
	var bufs [][]byte // reused across requests
	srv := virtio.QueueServer{
		Queue: r.q, Index: 0, Kick: r.kick, IRQ: r.irq, Stop: &r.stop,
		Handle: func(c *queue.Chain) uint32 {
			d.requests.Add(1)
			return d.fill(r.mem, c, &bufs)
		},
		Malformed: func() {
			d.requests.Add(1)
			d.badChains.Add(1)
		},
	}
	return srv.Serve()
}

// fill writes random bytes into the chain's buffers, at most MaxRequest,
// and returns how many. A chain with a device-readable buffer is not a
// request this device knows (virtio 1.2, 5.4.6: device-writable only): it
// gets nothing.
func (d *Device) fill(mem *memory.Guest, c *queue.Chain, bufs *[][]byte) uint32 {
	if c.ReadableLen() != 0 {
		d.badChains.Add(1)
		return 0
	}
	n := min(c.WritableLen(), MaxRequest)
	s, err := c.WritableSlices(mem, 0, n, (*bufs)[:0])
	*bufs = s
	if err != nil {
		d.badChains.Add(1)
		return 0
	}
	var written uint64
	for _, b := range s {
		if err := getrandom(b); err != nil {
			break // the host has no entropy to give: the guest gets what was filled
		}
		written += uint64(len(b))
	}
	d.bytes.Add(written)
	return uint32(written)
}

// getrandom fills b from the kernel's random pool (getrandom(2), which
// may return fewer bytes than asked, or EINTR).
func getrandom(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Getrandom(b, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("getrandom: %w", err)
		}
		b = b[n:]
	}
	return nil
}
