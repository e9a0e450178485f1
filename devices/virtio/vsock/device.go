// Package vsock is the virtio socket device (virtio 1.2, 5.10): stream
// sockets between the guest and the host, without a network. The host end
// is Unix domain sockets, as in Firecracker's vsock:
//
//   - a host program connects to the device's socket PATH, writes
//     "CONNECT <port>\n" and, once the guest accepted, reads
//     "OK <host port>\n"; the stream then carries the connection's bytes;
//   - a guest connect to CID 2 (the host), port P becomes a connect to the
//     Unix socket PATH_P; if nobody listens there the guest's connect is
//     refused.
//
// One goroutine per activation runs every connection from an epoll set.
// The guest is hostile: every header it transmits is checked, a guest that
// sends more than the credit it was given loses that connection, and a
// broken ring fails the device, never the VMM.
package vsock

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/hostsock"
	"github.com/vmm-dev/vmm/memory"
)

const (
	// QueueSize is the maximum size of each of the three queues.
	QueueSize = 256
	// MaxConns bounds the open connections of one device; more are
	// refused.
	MaxConns = 1024
	// connBuf is the credit the host end gives the guest per connection:
	// how many bytes of the guest's it holds before its Unix socket takes
	// them.
	connBuf = 256 << 10
)

// Queue indices (virtio 1.2, 5.10.2).
const (
	rxQueue = iota
	txQueue
	eventQueue
	numQueues
)

// Config is a vsock device's host side.
type Config struct {
	// GuestCID is the guest's address: 3 or more, and less than 2^32 - 1.
	GuestCID uint64
	// Path is the Unix socket host programs connect to; guest connects to
	// port P go to Path_P.
	Path string
}

// Validate checks c without touching the file system.
func (c Config) Validate() error {
	switch {
	case c.GuestCID < 3 || c.GuestCID >= math.MaxUint32:
		return fmt.Errorf("vsock: guest CID %d: want 3 to %d (0 to 2 are reserved)", c.GuestCID, uint64(math.MaxUint32-1))
	case c.Path == "":
		return errors.New("vsock: no socket path")
	case len(c.Path)+len("_4294967295") >= len(unix.RawSockaddrUnix{}.Path):
		return fmt.Errorf("vsock: socket path %q is too long for a Unix socket address (with its _PORT suffix)", c.Path)
	}
	return nil
}

// Stats are the device's counters since it was made.
type Stats struct {
	HostConnects   uint64 // connections host programs made to Path
	GuestConnects  uint64 // connections the guest made to Path_P
	Refused        uint64 // connects refused, either way
	Resets         uint64 // connections ended by a reset, either way
	TxPackets      uint64 // packets the guest transmitted
	TxBytes        uint64 // payload bytes from the guest
	RxPackets      uint64 // packets given to the guest
	RxBytes        uint64 // payload bytes to the guest
	Wakeups        uint64 // times the device's loop woke up
	BadPackets     uint64 // transmitted packets dropped as malformed
	CreditOverruns uint64 // connections reset because the guest sent beyond its credit
	Failures       uint64 // activations stopped by a queue fault
}

// counters are Stats, updated by the loop and read by Stats.
type counters struct {
	hostConnects, guestConnects, refused, resets atomic.Uint64
	txBytes, rxBytes, badPackets, overruns       atomic.Uint64
	txPackets, rxPackets, wakeups                atomic.Uint64
	failures                                     atomic.Uint64
}

// Device is a virtio socket device. It implements virtio.Device.
//
// Offered features: VERSION_1, RING_EVENT_IDX, RING_INDIRECT_DESC; stream
// sockets only. Its configuration space is the guest's CID (le64).
type Device struct {
	cfg      Config
	listener int // the listening Unix socket, non-blocking
	stats    counters
	// connectTimeout bounds a host program's CONNECT line and the guest's
	// answer to the request that follows.
	connectTimeout time.Duration

	// mu serializes Activate, Reset and Close and protects run.
	mu     sync.Mutex
	run    *loop
	closed bool
}

var _ virtio.Device = (*Device)(nil)

// New makes a device and starts listening on cfg.Path. A socket file left
// there by a process that is gone is replaced; one that accepts
// connections, or a file that is not a socket, is an error.
func New(cfg Config) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fd, err := hostsock.Listen(cfg.Path, hostsock.Umask)
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	return &Device{cfg: cfg, listener: fd, connectTimeout: defaultConnectTimeout}, nil
}

// Close stops the device and closes its listening socket. The socket
// file stays (a confined VMM may not remove files); the next New on the
// same path replaces it.
func (d *Device) Close() error {
	d.Reset()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return unix.Close(d.listener)
}

// Path returns the socket host programs connect to.
func (d *Device) Path() string { return d.cfg.Path }

const features = virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDSocket }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return features }

// QueueMaxSizes implements virtio.Device: receive, transmit and event.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: the guest CID, le64 at offset 0.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [8]byte
	for i := range cfg {
		cfg[i] = byte(d.cfg.GuestCID >> (8 * i))
	}
	clear(data)
	if offset < uint64(len(cfg)) {
		copy(data, cfg[offset:])
	}
}

// WriteConfig implements virtio.Device: the configuration is read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		HostConnects: s.hostConnects.Load(), GuestConnects: s.guestConnects.Load(),
		Refused: s.refused.Load(), Resets: s.resets.Load(),
		TxPackets: s.txPackets.Load(), TxBytes: s.txBytes.Load(),
		RxPackets: s.rxPackets.Load(), RxBytes: s.rxBytes.Load(), Wakeups: s.wakeups.Load(),
		BadPackets: s.badPackets.Load(), CreditOverruns: s.overruns.Load(),
		Failures: s.failures.Load(),
	}
}

// Activate implements virtio.Device. A queue fault later stops the loop
// and is reported through virtio.FailureReporter if irq implements it.
func (d *Device) Activate(mem *memory.Guest, feat uint64, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) error {
	if err := virtio.CheckActivate(features, feat, mem, queues, kicks, irq, numQueues); err != nil {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-vsock: activate: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		virtio.CloseKicks(kicks)
		return errors.New("virtio-vsock: activate: device closed")
	case d.run != nil:
		virtio.CloseKicks(kicks)
		return errors.New("virtio-vsock: activate: already active")
	}
	l, err := newLoop(d, mem, queues, kicks, irq)
	if err != nil {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-vsock: activate: %w", err)
	}
	d.run = l
	l.start()
	return nil
}

// Reset implements virtio.Device: it stops the loop, closes every
// connection's socket and forgets the queues. Host programs see their
// connections end; the listening socket stays.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.run; l != nil {
		d.run = nil
		l.stop()
	}
}
