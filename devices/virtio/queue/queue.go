// Package queue owns the device side of virtio 1.2 split virtqueues
// (virtio 1.2, 2.7): validating the driver's ring setup, popping checked
// descriptor chains from the available ring, publishing used buffers and
// deciding when the guest wants an interrupt.
//
// The guest is hostile. Every ring index, descriptor address, length, flag
// and next value is validated here; devices only ever see chains whose
// buffers lie inside guest RAM. Guest faults are errors wrapping ErrGuest:
//
//   - a ring-level fault (avail.idx moved impossibly far, a head index out of
//     range, a ring that is not readable) breaks the queue: Pop keeps
//     returning the error and the device should stop and report it so the
//     transport marks the device DEVICE_NEEDS_RESET;
//   - a chain-level fault (descriptor loop, buffer outside RAM, bad indirect
//     table, readable after writable, chain too long) is a *ChainError: the
//     chain has been consumed and its head is valid, so the device may
//     complete it with Push(head, 0) and go on, or treat it as fatal.
//
// A Queue is not safe for concurrent use: after Activate it belongs to one
// device worker. Shared ring words are read and written with the acquire /
// release atomics of memory.Guest (virtio 1.2, 2.7.13 and 2.7.7).
package queue

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// ErrGuest is wrapped by every error caused by the guest driver.
var ErrGuest = errors.New("guest driver error")

// ErrNotActive is returned when a Queue is used before a successful Activate.
var ErrNotActive = errors.New("virtqueue: queue not activated")

// Descriptor and ring flags (virtio 1.2, 2.7.5, 2.7.6, 2.7.8).
const (
	DescFNext     = 1
	DescFWrite    = 2
	DescFIndirect = 4

	AvailFNoInterrupt = 1
	UsedFNoNotify     = 1
)

// Limits.
const (
	// MaxSize is the largest split queue size (virtio 1.2, 2.7).
	MaxSize = 32768
	// MaxIndirectDescs caps the entries of one indirect table.
	MaxIndirectDescs = 1024
	// MaxChainBytes caps the total length of one chain's buffers.
	MaxChainBytes = 1<<32 - 1
)

const (
	descSize     = 16
	usedElemSize = 8
)

// Queue is one split virtqueue. The transport fills the exported fields from
// the driver's register writes and calls Activate; after that only the
// private copies are used, so later writes to the exported fields do not
// affect a running queue.
type Queue struct {
	Size       uint16 // number of entries, set by the driver
	DescAddr   uint64 // guest-physical address of the descriptor table
	DriverAddr uint64 // guest-physical address of the available ring
	DeviceAddr uint64 // guest-physical address of the used ring
	Ready      bool   // queue_enable was written with 1

	mem      *memory.Guest
	active   bool
	eventIdx bool
	size     uint16
	desc     uint64
	avail    uint64
	used     uint64

	lastAvail uint16 // next available ring slot to consume
	usedIdx   uint16 // next used ring slot to fill (the published used.idx)
	usedFlags uint16 // device-owned used.flags
	inFlight  uint32 // chains popped and not yet pushed
	unsignal  uint32 // used entries added since the last NeedsNotification (saturating)
	broken    error  // sticky ring-level fault
}

// Activate validates the ring setup against guest RAM and readies the queue
// for Pop: the size must be a power of two no larger than maxSize, the
// rings must be aligned (descriptors 16, available ring 2, used ring 4)
// and lie entirely inside guest RAM, including the used_event / avail_event
// fields when eventIdx (VIRTIO_F_EVENT_IDX) was negotiated. Ring indices
// start at zero.
func (q *Queue) Activate(mem *memory.Guest, maxSize uint16, eventIdx bool) error {
	q.active = false
	switch {
	case mem == nil:
		return errors.New("virtqueue: activate: no guest memory")
	case !q.Ready:
		return fmt.Errorf("virtqueue: activate: %w: queue not enabled", ErrGuest)
	case maxSize == 0 || maxSize > MaxSize || maxSize&(maxSize-1) != 0:
		return fmt.Errorf("virtqueue: activate: bad maximum size %d", maxSize)
	case q.Size == 0 || q.Size&(q.Size-1) != 0 || q.Size > maxSize:
		return fmt.Errorf("virtqueue: activate: %w: size %d not a power of two <= %d", ErrGuest, q.Size, maxSize)
	case q.DescAddr%16 != 0:
		return fmt.Errorf("virtqueue: activate: %w: descriptor table %#x not 16-aligned", ErrGuest, q.DescAddr)
	case q.DriverAddr%2 != 0:
		return fmt.Errorf("virtqueue: activate: %w: available ring %#x not 2-aligned", ErrGuest, q.DriverAddr)
	case q.DeviceAddr%4 != 0:
		return fmt.Errorf("virtqueue: activate: %w: used ring %#x not 4-aligned", ErrGuest, q.DeviceAddr)
	}
	n := uint64(q.Size)
	var event uint64
	if eventIdx {
		event = 2
	}
	rings := []struct {
		name       string
		addr, size uint64
	}{
		{"descriptor table", q.DescAddr, descSize * n},
		{"available ring", q.DriverAddr, 4 + 2*n + event},
		{"used ring", q.DeviceAddr, 4 + usedElemSize*n + event},
	}
	for _, r := range rings {
		if !mem.Contains(r.addr, r.size) {
			return fmt.Errorf("virtqueue: activate: %w: %s [%#x+%#x) outside guest RAM", ErrGuest, r.name, r.addr, r.size)
		}
	}
	*q = Queue{
		Size: q.Size, DescAddr: q.DescAddr, DriverAddr: q.DriverAddr, DeviceAddr: q.DeviceAddr, Ready: q.Ready,
		mem: mem, active: true, eventIdx: eventIdx,
		size: q.Size, desc: q.DescAddr, avail: q.DriverAddr, used: q.DeviceAddr,
	}
	return nil
}

// Active reports whether Activate succeeded since the last Reset.
func (q *Queue) Active() bool { return q.active }

// EventIdx reports whether the queue uses VIRTIO_F_EVENT_IDX.
func (q *Queue) EventIdx() bool { return q.eventIdx }

// Reset returns the queue to its power-on state (all fields zero).
func (q *Queue) Reset() { *q = Queue{} }

// Err returns the sticky ring-level fault, if any.
func (q *Queue) Err() error { return q.broken }

// LastAvail returns the index of the next available ring entry to consume.
func (q *Queue) LastAvail() uint16 { return q.lastAvail }

// UsedIdx returns the used.idx the device has published.
func (q *Queue) UsedIdx() uint16 { return q.usedIdx }

func (q *Queue) check() error {
	if !q.active {
		return ErrNotActive
	}
	return q.broken
}

func (q *Queue) fail(format string, args ...any) error {
	q.broken = fmt.Errorf("virtqueue: %w: "+format, append([]any{ErrGuest}, args...)...)
	return q.broken
}

// availIdx loads avail.idx with acquire ordering through the naturally
// aligned 32-bit word that contains it: flags|idx<<16 when the ring is
// 4-aligned, idx|ring[0]<<16 when it is only 2-aligned. Both words lie
// inside the ring checked by Activate.
func (q *Queue) availIdx() (uint16, error) {
	a := q.avail + 2
	w := a &^ 3
	v, err := q.mem.LoadUint32Atomic(w)
	if err != nil {
		return 0, err
	}
	return uint16(v >> ((a - w) * 8)), nil
}

// publishUsed stores used.flags and used.idx as one release store. On amd64
// it is also a full fence, which orders it before any later read of the
// guest's notification-suppression fields.
func (q *Queue) publishUsed() error {
	return q.mem.StoreUint32Atomic(q.used, uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
}

// Pop returns the next available chain, or nil, nil when the ring is empty.
// A *ChainError means the chain at its Head was malformed and has been
// consumed; any other error wraps ErrGuest (or ErrNotActive) and is sticky.
func (q *Queue) Pop() (*Chain, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	idx, err := q.availIdx()
	if err != nil {
		return nil, q.fail("read avail.idx: %v", err)
	}
	pending := idx - q.lastAvail
	if pending == 0 {
		return nil, nil
	}
	if pending > q.size {
		return nil, q.fail("avail.idx %d is %d entries past %d (size %d)", idx, pending, q.lastAvail, q.size)
	}
	slot := q.avail + 4 + 2*uint64(q.lastAvail%q.size)
	head, err := q.mem.Uint16(slot)
	if err != nil {
		return nil, q.fail("read avail ring slot %d: %v", q.lastAvail%q.size, err)
	}
	if head >= q.size {
		return nil, q.fail("head index %d >= size %d", head, q.size)
	}
	q.lastAvail++
	q.inFlight++
	c := &Chain{Head: head}
	if err := q.walk(c); err != nil {
		return nil, &ChainError{Head: head, Err: err}
	}
	return c, nil
}

// walk follows the chain from c.Head, at most q.size descriptors in the
// table plus one indirect table.
func (q *Queue) walk(c *Chain) error {
	var w chainWalker
	idx := c.Head
	for hops := 0; ; hops++ {
		if hops >= int(q.size) {
			return fmt.Errorf("%w: chain longer than queue size %d (loop?)", ErrGuest, q.size)
		}
		var raw [descSize]byte
		if err := q.mem.ReadAt(raw[:], q.desc+descSize*uint64(idx)); err != nil {
			return fmt.Errorf("%w: read descriptor %d: %v", ErrGuest, idx, err)
		}
		d := decodeDesc(raw[:])
		if d.flags&DescFIndirect != 0 {
			if d.flags&DescFNext != 0 {
				return fmt.Errorf("%w: descriptor %d has both INDIRECT and NEXT", ErrGuest, idx)
			}
			return w.expand(q.mem, c, d)
		}
		if err := w.add(q.mem, c, d); err != nil {
			return fmt.Errorf("descriptor %d: %w", idx, err)
		}
		if d.flags&DescFNext == 0 {
			return nil
		}
		if d.next >= q.size {
			return fmt.Errorf("%w: descriptor %d next %d >= size %d", ErrGuest, idx, d.next, q.size)
		}
		idx = d.next
	}
}

// Push returns the chain at head to the driver with written bytes stored in
// its writable buffers, then publishes the new used.idx (release).
func (q *Queue) Push(head uint16, written uint32) error {
	if err := q.AddUsed(head, written); err != nil {
		return err
	}
	return q.PublishUsed()
}

// AddUsed writes the used element for the chain at head without making it
// visible: the driver sees it only after PublishUsed. Devices that return
// several chains as one unit (virtio-net mergeable receive buffers, 5.1.6.4)
// add them all, then publish once, so the driver never sees part of it.
func (q *Queue) AddUsed(head uint16, written uint32) error {
	if err := q.check(); err != nil {
		return err
	}
	if head >= q.size {
		return fmt.Errorf("virtqueue: push: head %d >= size %d", head, q.size)
	}
	if q.inFlight == 0 {
		return fmt.Errorf("virtqueue: push: head %d: no chain in flight", head)
	}
	elem := q.used + 4 + usedElemSize*uint64(q.usedIdx%q.size)
	if err := q.mem.PutUint64(elem, uint64(head)|uint64(written)<<32); err != nil {
		return q.fail("write used element: %v", err)
	}
	q.usedIdx++
	q.inFlight--
	if q.unsignal < 1<<16 {
		q.unsignal++
	}
	return nil
}

// PublishUsed makes every element added since the last publish visible to
// the driver with one release store of used.idx.
func (q *Queue) PublishUsed() error {
	if err := q.check(); err != nil {
		return err
	}
	if err := q.publishUsed(); err != nil {
		return q.fail("publish used.idx: %v", err)
	}
	return nil
}

// NeedsNotification reports whether the driver wants an interrupt for the
// used entries pushed since the previous call (virtio 1.2, 2.7.10): with
// VIRTIO_F_EVENT_IDX when used.idx has passed used_event, otherwise unless
// avail.flags has VIRTQ_AVAIL_F_NO_INTERRUPT. Call it after Push, whose
// fenced store of used.idx orders the read of the guest's field after it.
func (q *Queue) NeedsNotification() (bool, error) {
	if err := q.check(); err != nil {
		return false, err
	}
	added := q.unsignal
	q.unsignal = 0
	if added == 0 {
		return false, nil
	}
	if !q.eventIdx {
		flags, err := q.mem.Uint16(q.avail)
		if err != nil {
			return false, q.fail("read avail.flags: %v", err)
		}
		return flags&AvailFNoInterrupt == 0, nil
	}
	if added >= 1<<16 {
		return true, nil // the 16-bit window wrapped: always notify
	}
	event, err := q.mem.Uint16(q.avail + 4 + 2*uint64(q.size))
	if err != nil {
		return false, q.fail("read used_event: %v", err)
	}
	return NeedEvent(event, q.usedIdx, q.usedIdx-uint16(added)), nil
}

// NeedEvent is vring_need_event (virtio 1.2, 2.7.10.1): whether moving an
// index from old to new crosses event, in wrapping 16-bit arithmetic.
func NeedEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// DisableNotification asks the driver not to notify the queue while the
// device is processing it (VIRTQ_USED_F_NO_NOTIFY). With
// VIRTIO_F_EVENT_IDX it does nothing: the avail_event the device last wrote
// has already been passed, so the driver does not notify until
// EnableNotification moves it.
func (q *Queue) DisableNotification() error {
	if err := q.check(); err != nil {
		return err
	}
	if q.eventIdx || q.usedFlags&UsedFNoNotify != 0 {
		return nil
	}
	q.usedFlags |= UsedFNoNotify
	if err := q.publishUsed(); err != nil {
		return q.fail("write used.flags: %v", err)
	}
	return nil
}

// EnableNotification asks the driver to notify the queue when it adds the
// next buffer (clears VIRTQ_USED_F_NO_NOTIFY, or sets avail_event to the
// next entry to consume), then re-reads avail.idx after a full fence and
// reports whether buffers arrived in the meantime. When more is true the
// caller must keep processing: the driver may have skipped its notification.
func (q *Queue) EnableNotification() (more bool, err error) {
	if err := q.check(); err != nil {
		return false, err
	}
	if q.eventIdx {
		if err := q.mem.PutUint16(q.used+4+usedElemSize*uint64(q.size), q.lastAvail); err != nil {
			return false, q.fail("write avail_event: %v", err)
		}
	} else {
		q.usedFlags &^= UsedFNoNotify
	}
	// The atomic store is the full fence between writing avail_event /
	// used.flags and reading avail.idx (virtio 1.2, 2.7.10 race).
	if err := q.publishUsed(); err != nil {
		return false, q.fail("write used.flags: %v", err)
	}
	idx, err := q.availIdx()
	if err != nil {
		return false, q.fail("read avail.idx: %v", err)
	}
	return idx != q.lastAvail, nil
}
