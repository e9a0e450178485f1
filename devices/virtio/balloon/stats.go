package balloon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
)

// GuestStats are the memory statistics the guest's driver last reported
// (virtio 1.2, 5.5.6.3); memory in bytes. Fields the driver did not report
// are zero.
type GuestStats struct {
	SwapIn          uint64 `json:"swap_in_bytes"`
	SwapOut         uint64 `json:"swap_out_bytes"`
	MajorFaults     uint64 `json:"major_faults"`
	MinorFaults     uint64 `json:"minor_faults"`
	Free            uint64 `json:"free_bytes"`
	Total           uint64 `json:"total_bytes"`
	Available       uint64 `json:"available_bytes"`
	DiskCaches      uint64 `json:"disk_caches_bytes"`
	HugetlbAllocs   uint64 `json:"hugetlb_allocations"`
	HugetlbFailures uint64 `json:"hugetlb_failures"`
	// Age is how long ago the guest sent them.
	Age time.Duration `json:"age_ns"`
}

// statEntry is struct virtio_balloon_stat: le16 tag, le64 value.
const statEntry = 10

// maxStatEntries bounds the entries read from one report (Linux sends 10).
const maxStatEntries = 32

// statsQueue is the statistics queue of an activation. The driver keeps one
// buffer of statistics with the device; the device returns it to ask for
// fresh ones, and the driver sends it again, refilled.
type statsQueue struct {
	mu    sync.Mutex // serializes the queue between the worker and RequestStats
	q     *queue.Queue
	index int
	held  *uint16 // the buffer the device holds, to return on the next request
}

// serveStats takes the driver's statistics buffers until Reset or a fault.
func (d *Device) serveStats(r *activation, kick virtio.Kick) error {
	s := r.stats
	for {
		s.mu.Lock()
		err := d.takeStats(r, s)
		s.mu.Unlock()
		if err != nil || r.stop.Load() {
			return err
		}
		if err := kick.Wait(); err != nil {
			if errors.Is(err, virtio.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// takeStats records every buffer the driver made available and keeps the
// last one; s.mu is held. A second buffer while one is held (the driver
// lost track) returns the older one.
func (d *Device) takeStats(r *activation, s *statsQueue) error {
	for {
		c, err := s.q.Pop()
		var ce *queue.ChainError
		switch {
		case errors.As(err, &ce):
			d.badChains.Add(1)
			if err := s.q.Push(ce.Head, 0); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		case c == nil:
			more, err := s.q.EnableNotification()
			if err != nil || !more {
				return err
			}
			continue
		}
		d.recordStats(r, c)
		if s.held != nil {
			if err := s.q.Push(*s.held, 0); err != nil {
				return err
			}
		}
		head := c.Head
		s.held = &head
	}
}

// recordStats parses a statistics buffer (its device-readable part).
func (d *Device) recordStats(r *activation, c *queue.Chain) {
	n := min(c.ReadableLen(), statEntry*maxStatEntries)
	if c.WritableLen() != 0 || n%statEntry != 0 {
		d.badChains.Add(1)
		return
	}
	b := make([]byte, n)
	if err := c.ReadAt(r.mem, b, 0); err != nil {
		d.badChains.Add(1)
		return
	}
	var g GuestStats
	byTag := [...]*uint64{ // VIRTIO_BALLOON_S_*: the tag is the index
		&g.SwapIn, &g.SwapOut, &g.MajorFaults, &g.MinorFaults, &g.Free,
		&g.Total, &g.Available, &g.DiskCaches, &g.HugetlbAllocs, &g.HugetlbFailures,
	}
	for i := 0; i+statEntry <= len(b); i += statEntry {
		if tag := int(binary.LittleEndian.Uint16(b[i:])); tag < len(byTag) {
			*byTag[tag] = binary.LittleEndian.Uint64(b[i+2:])
		}
	}
	d.mu.Lock()
	d.guest, d.guestAt = &g, time.Now()
	d.mu.Unlock()
}

// GuestStats returns the statistics the guest last reported (nil before
// its first report, or without STATS_VQ) and asks it for fresh ones: the
// next call sees them once the guest has answered.
func (d *Device) GuestStats() (*GuestStats, error) {
	d.mu.Lock()
	var g *GuestStats
	if d.guest != nil {
		c := *d.guest
		c.Age = time.Since(d.guestAt)
		g = &c
	}
	r := d.run
	d.mu.Unlock()
	if r == nil || r.stats == nil || r.stop.Load() {
		return g, nil
	}
	s := r.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		return g, nil // the guest is refilling it
	}
	head := *s.held
	s.held = nil
	if err := s.q.Push(head, 0); err != nil {
		d.fail(r, err)
		return g, fmt.Errorf("virtio-balloon: statistics queue: %w", err)
	}
	if need, err := s.q.NeedsNotification(); err != nil {
		d.fail(r, err)
		return g, fmt.Errorf("virtio-balloon: statistics queue: %w", err)
	} else if need {
		if err := r.irq.Notify(s.index); err != nil {
			return g, fmt.Errorf("virtio-balloon: interrupt: %w", err)
		}
	}
	return g, nil
}
