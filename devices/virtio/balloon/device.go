// Package balloon is the virtio memory balloon (virtio 1.2, 5.5), offered
// for free page reporting: a guest reports blocks of memory it has freed
// (2 MiB and up with Linux), and the device gives those pages back to the
// host, so a VM that once used its memory and freed it again stops holding
// it. The host may also set a target (SetTarget, from the control socket):
// the driver then inflates the balloon by that many pages, which are given
// back the same way, and deflates it when the target falls again.
//
// A hostile guest can only discard its own memory: every range is checked
// against guest RAM before it is given back.
package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

const (
	// QueueSize is the maximum size of each queue.
	QueueSize = 128
	// FReporting is VIRTIO_BALLOON_F_REPORTING: the reporting queue exists.
	FReporting uint64 = 1 << 5
	// FDeflateOnOOM is VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the driver may
	// take pages back from the balloon when the guest runs out of memory,
	// rather than fail allocations, so a target set too high costs the
	// guest memory pressure, not an OOM kill.
	FDeflateOnOOM uint64 = 1 << 2
	// FStatsVQ is VIRTIO_BALLOON_F_STATS_VQ: the driver reports the
	// guest's memory statistics on the statistics queue when asked.
	FStatsVQ uint64 = 1 << 1
	// pageShift is the balloon's page size: PFNs count 4 KiB pages.
	pageShift = 12
	// maxPFNs bounds the PFNs taken from one inflate or deflate chain
	// (Linux sends at most 256).
	maxPFNs = 4096
)

// The queues (virtio 1.2, 5.5.2): inflate and deflate, then the
// statistics queue if STATS_VQ was negotiated, then the reporting queue if
// REPORTING was; a queue whose feature is absent takes no index. (Free
// page hinting, which would come between them, is not offered.)
const (
	inflateQueue = iota
	deflateQueue
	maxQueues = 4
)

// Stats are the device's counters since it was made.
type Stats struct {
	Reports        uint64 // free page reports (chains) completed
	ReportedBytes  uint64 // bytes the guest reported free
	DiscardedBytes uint64 // bytes given back to the host (reports and inflated pages)
	InflatedPages  uint64 // 4 KiB pages the guest put in the balloon
	DeflatedPages  uint64 // 4 KiB pages the guest took back
	BadChains      uint64 // malformed chains, or ranges outside RAM: skipped
	Failures       uint64 // activations stopped by a queue fault
}

// Device is a virtio balloon device. It implements virtio.Device.
//
// Offered features: VERSION_1, RING_EVENT_IDX, RING_INDIRECT_DESC,
// DEFLATE_ON_OOM and REPORTING. Its configuration space is num_pages (the target), actual
// (written by the driver), free_page_hint_cmd_id and poison_val (0).
type Device struct {
	reports, reported, discarded, inflated, deflated, badChains, failures atomic.Uint64

	// mu serializes Activate, Reset and the configuration space, and
	// protects run, target and actual.
	mu     sync.Mutex
	run    *activation
	target uint32 // num_pages: the pages the host asks the balloon to hold
	actual uint32

	guest   *GuestStats // the driver's last statistics report
	guestAt time.Time
}

// activation is one Activate..Reset period: a worker per queue.
type activation struct {
	mem       *memory.Guest
	kicks     []virtio.Kick
	irq       virtio.Interrupt
	stats     *statsQueue // with STATS_VQ
	workers   sync.WaitGroup
	stop      atomic.Bool // workers exit at the next chain boundary
	resetting atomic.Bool // Reset has begun: do not report failures
	failOnce  sync.Once
}

var _ virtio.Device = (*Device)(nil)

// New makes a balloon device.
func New() *Device { return &Device{} }

const features = virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc |
	FStatsVQ | FDeflateOnOOM | FReporting

// DeviceID implements virtio.Device.
func (d *Device) DeviceID() uint16 { return virtio.IDBalloon }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return features }

// QueueMaxSizes implements virtio.Device: inflate, deflate, then
// statistics and reporting as negotiated.
func (d *Device) QueueMaxSizes() []uint16 {
	return []uint16{QueueSize, QueueSize, QueueSize, QueueSize}
}

// configSize is struct virtio_balloon_config's size.
const configSize = 16

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	d.mu.Lock()
	var cfg [configSize]byte
	binary.LittleEndian.PutUint32(cfg[0:], d.target)
	binary.LittleEndian.PutUint32(cfg[4:], d.actual)
	d.mu.Unlock()
	clear(data)
	if offset < configSize {
		copy(data, cfg[offset:])
	}
}

// WriteConfig implements virtio.Device: only actual (bytes 4 to 7) is
// the driver's to write.
func (d *Device) WriteConfig(offset uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], d.actual)
	for i, v := range data {
		if o := offset + uint64(i); o >= 4 && o < 8 {
			b[o-4] = v
		}
	}
	d.actual = binary.LittleEndian.Uint32(b[:])
}

// Actual returns the pages the driver says the balloon holds.
func (d *Device) Actual() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.actual
}

// Target returns the pages the host asks the balloon to hold.
func (d *Device) Target() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.target
}

// SetTarget asks the driver to hold pages 4 KiB pages in the balloon
// (num_pages) and, while the device is active, tells it with a
// configuration change interrupt. A driver that is not there yet reads
// the target when it starts.
func (d *Device) SetTarget(pages uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.target = pages
	if d.run == nil {
		return nil
	}
	if err := d.run.irq.ConfigChanged(); err != nil {
		return fmt.Errorf("virtio-balloon: configuration change interrupt: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	return Stats{
		Reports: d.reports.Load(), ReportedBytes: d.reported.Load(), DiscardedBytes: d.discarded.Load(),
		InflatedPages: d.inflated.Load(), DeflatedPages: d.deflated.Load(),
		BadChains: d.badChains.Load(), Failures: d.failures.Load(),
	}
}

// Activate implements virtio.Device. The statistics and reporting queues
// are served when their features were negotiated.
func (d *Device) Activate(mem *memory.Guest, feat uint64, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) error {
	n := 2
	statsAt, reportAt := -1, -1
	if feat&FStatsVQ != 0 {
		statsAt = n
		n++
	}
	if feat&FReporting != 0 {
		reportAt = n
		n++
	}
	if len(queues) < n || len(kicks) < n {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-balloon: activate: %d queues, want %d", len(queues), n)
	}
	virtio.CloseKicks(kicks[n:]) // a queue the negotiated features do not have
	kicks = kicks[:n]
	if err := virtio.CheckActivate(features, feat, mem, queues[:n], kicks, irq, n); err != nil {
		virtio.CloseKicks(kicks)
		return fmt.Errorf("virtio-balloon: activate: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		virtio.CloseKicks(kicks)
		return errors.New("virtio-balloon: activate: already active")
	}
	r := &activation{mem: mem, kicks: kicks, irq: irq}
	handlers := map[int]func(*queue.Chain) uint32{
		inflateQueue: func(c *queue.Chain) uint32 { d.inflate(mem, c); return 0 },
		deflateQueue: func(c *queue.Chain) uint32 { d.deflate(mem, c); return 0 },
	}
	if reportAt >= 0 {
		handlers[reportAt] = func(c *queue.Chain) uint32 { d.report(mem, c); return 0 }
	}
	for i, h := range handlers {
		srv := &virtio.QueueServer{
			Queue: queues[i], Index: i, Kick: kicks[i], IRQ: irq, Stop: &r.stop,
			Handle: h, Malformed: func() { d.badChains.Add(1) },
		}
		r.workers.Add(1)
		go func() { d.workerDone(r, srv.Serve()) }()
	}
	if statsAt >= 0 {
		r.stats = &statsQueue{q: queues[statsAt], index: statsAt}
		r.workers.Add(1)
		go func() { d.workerDone(r, d.serveStats(r, kicks[statsAt])) }()
	}
	d.run = r
	return nil
}

// Reset implements virtio.Device: it stops the workers and forgets the
// queues. Pages given back stay given back; the guest's next touch of
// each brings a zeroed page.
func (d *Device) Reset() {
	d.mu.Lock()
	r := d.run
	d.run = nil
	d.actual = 0
	d.mu.Unlock()
	if r == nil {
		return
	}
	r.resetting.Store(true)
	r.stop.Store(true)
	virtio.CloseKicks(r.kicks)
	r.workers.Wait()
}

// workerDone ends one worker of r with err (nil: it stopped as asked).
func (d *Device) workerDone(r *activation, err error) {
	if err != nil {
		d.fail(r, err)
	}
	r.workers.Done()
}

// fail stops every worker of r after a fault, which is reported once
// they are gone.
func (d *Device) fail(r *activation, err error) {
	r.stop.Store(true)
	virtio.CloseKicks(r.kicks)
	r.failOnce.Do(func() {
		d.failures.Add(1)
		go func() {
			// Reported once every worker is gone: the transport may
			// call Reset from Failed.
			r.workers.Wait()
			if !r.resetting.Load() {
				virtio.ReportFailure(r.irq, fmt.Errorf("virtio-balloon: %w", err))
			}
		}()
	})
}

// report gives back the memory of a free page report: every buffer of
// the chain is a block the guest has freed (device-writable, Linux's
// page_reporting); the device need write nothing.
func (d *Device) report(mem *memory.Guest, c *queue.Chain) {
	d.reports.Add(1)
	for _, b := range c.Descs {
		d.reported.Add(uint64(b.Len))
		n, err := mem.Discard(b.Addr, uint64(b.Len))
		if err != nil {
			d.badChains.Add(1)
			continue
		}
		d.discarded.Add(n)
	}
}

// inflate gives back the pages a chain of PFNs (le32) names, a run of
// consecutive pages at a time.
func (d *Device) inflate(mem *memory.Guest, c *queue.Chain) {
	d.forPFNRuns(mem, c, func(addr, n uint64) {
		d.inflated.Add(n >> pageShift)
		if got, err := mem.Discard(addr, n); err != nil {
			d.badChains.Add(1)
		} else {
			d.discarded.Add(got)
		}
	})
}

// deflate counts the pages the guest takes back: there is nothing to do,
// its first touch of each faults one in.
func (d *Device) deflate(mem *memory.Guest, c *queue.Chain) {
	d.forPFNRuns(mem, c, func(addr, n uint64) { d.deflated.Add(n >> pageShift) })
}

// forPFNRuns reads the chain's readable part as le32 PFNs (at most
// maxPFNs) and calls fn for each run of consecutive pages. A chain with
// a device-writable buffer, or a length that is not whole PFNs, is
// malformed.
func (d *Device) forPFNRuns(mem *memory.Guest, c *queue.Chain, fn func(addr, n uint64)) {
	n := c.ReadableLen()
	if c.WritableLen() != 0 || n%4 != 0 {
		d.badChains.Add(1)
		return
	}
	n = min(n, 4*maxPFNs)
	b := make([]byte, n)
	if err := c.ReadAt(mem, b, 0); err != nil {
		d.badChains.Add(1)
		return
	}
	// Sorted and without repeats, the pages of one batch form as few runs
	// as they can: Linux hands them over in allocation order, often
	// descending, and each run is one madvise, which in guest RAM backed
	// by huge pages splits one and makes KVM unmap it.
	pfns := make([]uint32, 0, n/4)
	for i := 0; i < len(b); i += 4 {
		pfns = append(pfns, binary.LittleEndian.Uint32(b[i:]))
	}
	slices.Sort(pfns)
	pfns = slices.Compact(pfns)
	var start, length uint64
	for _, pfn := range pfns {
		addr := uint64(pfn) << pageShift
		if length > 0 && addr == start+length {
			length += 1 << pageShift
			continue
		}
		if length > 0 {
			fn(start, length)
		}
		start, length = addr, 1<<pageShift
	}
	if length > 0 {
		fn(start, length)
	}
}
