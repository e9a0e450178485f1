package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// Block feature bits (virtio 1.2, 5.2.3).
const (
	FSizeMax     uint64 = 1 << 1
	FSegMax      uint64 = 1 << 2
	FGeometry    uint64 = 1 << 4
	FRO          uint64 = 1 << 5
	FBlkSize     uint64 = 1 << 6
	FFlush       uint64 = 1 << 9
	FTopology    uint64 = 1 << 10
	FConfigWCE   uint64 = 1 << 11
	FMQ          uint64 = 1 << 12
	FDiscard     uint64 = 1 << 13
	FWriteZeroes uint64 = 1 << 14
)

const (
	// QueueSize is the maximum size of the single request queue.
	QueueSize = 256
	// SegMax is the most data segments per request: the queue size minus the
	// header and status descriptors (also well under queue.MaxIndirectDescs).
	SegMax = QueueSize - 2

	// notifyEvery bounds how many requests complete before the worker
	// checks whether the guest wants an interrupt, so a driver that keeps
	// the queue full still sees completions.
	notifyEvery = 32
)

// Configuration space offsets (virtio 1.2, 5.2.4, struct virtio_blk_config).
const (
	cfgCapacity              = 0
	cfgSizeMax               = 8
	cfgSegMax                = 12
	cfgBlkSize               = 20
	cfgMaxDiscardSectors     = 36
	cfgMaxDiscardSeg         = 40
	cfgDiscardSectorAlign    = 44
	cfgMaxWriteZeroesSectors = 48
	cfgMaxWriteZeroesSeg     = 52
	cfgWriteZeroesMayUnmap   = 56
	configSize               = 60 // through unused1; secure erase and zoned fields read as zero
)

// Stats are the device's counters since New.
type Stats struct {
	Requests     uint64 // chains completed, well-formed or not
	ReadBytes    uint64 // bytes read from the disk into the guest
	WrittenBytes uint64 // bytes written from the guest to the disk
	Flushes      uint64
	IOErrors     uint64 // requests completed with VIRTIO_BLK_S_IOERR
	Unsupported  uint64 // requests completed with VIRTIO_BLK_S_UNSUPP
	BadChains    uint64 // malformed chains or no status byte: completed with 0 bytes
	Failures     uint64 // activations stopped by a queue fault
}

type counters struct {
	requests, readBytes, writtenBytes, flushes, ioErrors, unsupported, badChains, failures atomic.Uint64
}

// Device is a virtio block device backed by a Disk. It implements
// virtio.Device. One worker goroutine per activation serves the queue.
//
// Offered features: VERSION_1, RING_EVENT_IDX, RING_INDIRECT_DESC, FLUSH,
// SEG_MAX, BLK_SIZE, RO for a read-only disk, DISCARD when the file can
// punch holes, WRITE_ZEROES when writable. SIZE_MAX is not offered (no
// per-segment limit), so size_max reads as zero.
type Device struct {
	disk     *Disk
	features uint64
	config   [configSize]byte // immutable after New
	stats    counters

	// mu serializes Activate and Reset and protects run.
	mu  sync.Mutex
	run *activation
}

// activation is one Activate..Reset period.
type activation struct {
	mem      *memory.Guest
	features uint64
	queues   []*queue.Queue
	kicks    []virtio.Kick
	irq      virtio.Interrupt

	wg        sync.WaitGroup
	stop      atomic.Bool // workers exit at the next request boundary
	resetting atomic.Bool // Reset has begun: do not report failures
	failOnce  sync.Once
}

var _ virtio.Device = (*Device)(nil)

// New makes a device for disk. The device does not own the disk: close it
// after the last Reset.
func New(disk *Disk) *Device {
	d := &Device{disk: disk}
	d.features = virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc |
		FFlush | FSegMax | FBlkSize
	if disk.ReadOnly() {
		d.features |= FRO
	} else {
		d.features |= FWriteZeroes
		if disk.CanDiscard() {
			d.features |= FDiscard
		}
	}
	c := d.config[:]
	le := binary.LittleEndian
	le.PutUint64(c[cfgCapacity:], disk.Sectors())
	le.PutUint32(c[cfgSegMax:], SegMax)
	le.PutUint32(c[cfgBlkSize:], SectorSize)
	le.PutUint32(c[cfgMaxDiscardSectors:], MaxDiscardSectors)
	le.PutUint32(c[cfgMaxDiscardSeg:], MaxDiscardSeg)
	le.PutUint32(c[cfgDiscardSectorAlign:], disk.BlockSize()/SectorSize)
	le.PutUint32(c[cfgMaxWriteZeroesSectors:], MaxWriteZeroesSectors)
	le.PutUint32(c[cfgMaxWriteZeroesSeg:], MaxWriteZeroesSeg)
	if disk.CanDiscard() {
		c[cfgWriteZeroesMayUnmap] = 1
	}
	return d
}

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes implements virtio.Device: one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset >= configSize {
		return
	}
	copy(data, d.config[offset:])
}

// WriteConfig implements virtio.Device. Nothing is writable: writeback
// needs VIRTIO_BLK_F_CONFIG_WCE, which is not offered.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		Requests: s.requests.Load(), ReadBytes: s.readBytes.Load(), WrittenBytes: s.writtenBytes.Load(),
		Flushes: s.flushes.Load(), IOErrors: s.ioErrors.Load(), Unsupported: s.unsupported.Load(),
		BadChains: s.badChains.Load(), Failures: s.failures.Load(),
	}
}

// Activate implements virtio.Device. A queue fault later stops the worker
// and is reported through virtio.FailureReporter if irq implements it.
func (d *Device) Activate(mem *memory.Guest, features uint64, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) error {
	fail := func(format string, args ...any) error {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-blk: activate: "+format, args...)
	}
	if err := virtio.CheckActivate(d.features, features, mem, queues, kicks, irq, 1); err != nil {
		return fail("%w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		return fail("already active")
	}
	r := &activation{mem: mem, features: features, queues: queues, kicks: kicks, irq: irq}
	d.run = r
	for i := range queues {
		r.wg.Add(1)
		go d.worker(r, i)
	}
	return nil
}

// Reset implements virtio.Device: it closes the kicks, waits for the worker
// to finish its current request and exit, and forgets the queues.
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
	virtio.CloseKicks(r.kicks)
	r.wg.Wait()
}

// worker serves queue qi until Reset or a fault: drain what is already
// available (buffers may predate the kick), then sleep until kicked.
func (d *Device) worker(r *activation, qi int) {
	err := d.serve(r, qi)
	if err != nil {
		// Stop the other workers (if any) before saying we failed.
		r.failOnce.Do(func() {
			r.stop.Store(true)
			virtio.CloseKicks(r.kicks)
		})
		d.stats.failures.Add(1)
	}
	r.wg.Done()
	// Reported after Done: the transport may call Reset from Failed.
	if err != nil && !r.resetting.Load() {
		virtio.ReportFailure(r.irq, fmt.Errorf("virtio-blk: queue %d: %w", qi, err))
	}
}

func (d *Device) serve(r *activation, qi int) error {
	q, kick := r.queues[qi], r.kicks[qi]
	var iov [][]byte // reused across requests
	for {
		if err := d.drain(r, q, qi, &iov); err != nil {
			return err
		}
		if r.stop.Load() {
			return nil
		}
		if err := kick.Wait(); err != nil {
			if errors.Is(err, virtio.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// drain completes every available request, re-enabling notifications with
// a re-check so that no kick is lost, and interrupts the guest as it asks.
func (d *Device) drain(r *activation, q *queue.Queue, qi int, iov *[][]byte) error {
	for {
		if err := q.DisableNotification(); err != nil {
			return err
		}
		if err := d.completeAvailable(r, q, qi, iov); err != nil {
			return err
		}
		if r.stop.Load() {
			return nil
		}
		more, err := q.EnableNotification()
		if err != nil {
			return err
		}
		if !more {
			return d.notify(r, q, qi)
		}
	}
}

// completeAvailable completes requests until the ring is empty or the
// worker is told to stop. Its error means the ring is broken.
func (d *Device) completeAvailable(r *activation, q *queue.Queue, qi int, iov *[][]byte) error {
	for done := 1; !r.stop.Load(); done++ {
		c, err := q.Pop()
		var ce *queue.ChainError
		switch {
		case errors.As(err, &ce):
			// Malformed chain: complete it with nothing written.
			d.stats.badChains.Add(1)
			err = q.Push(ce.Head, 0)
		case err != nil:
			return err
		case c == nil:
			return nil
		default:
			err = q.Push(c.Head, d.handle(r, c, iov))
		}
		if err != nil {
			return err
		}
		d.stats.requests.Add(1)
		if done%notifyEvery == 0 {
			if err := d.notify(r, q, qi); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Device) notify(r *activation, q *queue.Queue, qi int) error {
	need, err := q.NeedsNotification()
	if err != nil || !need {
		return err
	}
	if err := r.irq.Notify(qi); err != nil {
		return fmt.Errorf("virtio-blk: interrupt: %w", err)
	}
	return nil
}

// handle parses and executes one request and writes its status byte. It
// returns the number of bytes written into the chain (the used length).
func (d *Device) handle(r *activation, c *queue.Chain, iov *[][]byte) uint32 {
	req, err := ParseRequest(r.mem, c, d.disk.Sectors())
	if errors.Is(err, ErrNoStatus) {
		d.stats.badChains.Add(1)
		return 0
	}
	var status uint8
	var n uint32
	if err != nil {
		status = Status(err)
	} else {
		status, n = d.execute(r, c, &req, iov)
	}
	switch status {
	case StatusIOErr:
		d.stats.ioErrors.Add(1)
	case StatusUnsupp:
		d.stats.unsupported.Add(1)
	}
	if err := c.WriteAt(r.mem, []byte{status}, req.StatusOffset); err != nil {
		d.stats.badChains.Add(1)
		return 0
	}
	return n + 1
}

// execute performs a parsed request and returns its status and the data
// bytes written into the chain before the status byte.
func (d *Device) execute(r *activation, c *queue.Chain, req *Request, iov *[][]byte) (uint8, uint32) {
	off := req.Sector * SectorSize // < 2^64: ParseRequest checked sector <= capacity
	switch req.Type {
	case TypeIn:
		bufs, err := c.WritableSlices(r.mem, 0, uint64(req.Len), (*iov)[:0])
		*iov = bufs
		if err != nil || d.disk.ReadAt(bufs, off) != nil {
			return StatusIOErr, 0
		}
		d.stats.readBytes.Add(uint64(req.Len))
		return StatusOK, req.Len
	case TypeOut:
		if d.disk.ReadOnly() {
			return StatusIOErr, 0
		}
		bufs, err := c.ReadableSlices(r.mem, headerSize, uint64(req.Len), (*iov)[:0])
		*iov = bufs
		if err != nil || d.disk.WriteAt(bufs, off) != nil {
			return StatusIOErr, 0
		}
		d.stats.writtenBytes.Add(uint64(req.Len))
		return StatusOK, 0
	case TypeFlush:
		d.stats.flushes.Add(1)
		if d.disk.Flush() != nil {
			return StatusIOErr, 0
		}
		return StatusOK, 0
	case TypeGetID:
		id := d.disk.ID()
		if c.WriteAt(r.mem, id[:req.Len], 0) != nil {
			return StatusIOErr, 0
		}
		return StatusOK, req.Len
	case TypeDiscard, TypeWriteZeroes:
		feature := FDiscard
		if req.Type == TypeWriteZeroes {
			feature = FWriteZeroes
		}
		if d.disk.ReadOnly() {
			return StatusIOErr, 0
		}
		if r.features&feature == 0 {
			return StatusUnsupp, 0
		}
		for _, s := range req.Segments {
			o, n := s.Sector*SectorSize, uint64(s.Sectors)*SectorSize
			var err error
			if req.Type == TypeDiscard {
				err = d.disk.Discard(o, n)
			} else {
				err = d.disk.WriteZeroes(o, n, s.Unmap)
			}
			if err != nil {
				return StatusIOErr, 0
			}
		}
		return StatusOK, 0
	}
	return StatusUnsupp, 0
}
