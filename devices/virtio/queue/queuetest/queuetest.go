// Package queuetest is a mock virtio driver for tests: it lays out the
// descriptor table, available ring and used ring of one split virtqueue in a
// memory.Guest, adds well-formed and hostile chains, and reads used entries
// back. It is test support only and trusts its caller.
package queuetest

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// Buf is one buffer the driver offers.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Used is one used ring element.
type Used struct {
	ID  uint32
	Len uint32
}

// Driver is the driver side of one queue.
type Driver struct {
	Mem                           *memory.Guest
	Size                          uint16
	DescAddr, AvailAddr, UsedAddr uint64

	nextDesc uint16 // next free descriptor (bump, wraps)
	availIdx uint16
	lastUsed uint16
	heap     uint64 // next free byte for Alloc
	heapEnd  uint64
}

// New lays out a queue of size entries at base (16-aligned) in mem: the
// descriptor table, then the available ring with used_event, then the used
// ring with avail_event (4-aligned). Memory from the next page up to
// base+span is handed out by Alloc.
func New(mem *memory.Guest, size uint16, base, span uint64) (*Driver, error) {
	if size == 0 || size&(size-1) != 0 || base%16 != 0 {
		return nil, fmt.Errorf("queuetest: bad size %d or base %#x", size, base)
	}
	n := uint64(size)
	d := &Driver{Mem: mem, Size: size, DescAddr: base}
	d.AvailAddr = base + 16*n
	d.UsedAddr = (d.AvailAddr + 4 + 2*n + 2 + 3) &^ 3
	end := d.UsedAddr + 4 + 8*n + 2
	d.heap = (end + 4095) &^ 4095
	d.heapEnd = base + span
	if d.heap > d.heapEnd || !mem.Contains(base, span) {
		return nil, fmt.Errorf("queuetest: span %#x too small or outside memory", span)
	}
	if err := mem.Zero(base, end-base); err != nil {
		return nil, err
	}
	return d, nil
}

// Queue returns the queue configuration as a transport would set it (not
// yet activated).
func (d *Driver) Queue() *queue.Queue {
	return &queue.Queue{Size: d.Size, DescAddr: d.DescAddr, DriverAddr: d.AvailAddr, DeviceAddr: d.UsedAddr, Ready: true}
}

// Alloc returns n bytes (16-aligned) of guest memory for buffers, zeroed.
func (d *Driver) Alloc(n uint64) (uint64, error) {
	a := (d.heap + 15) &^ 15
	if a+n > d.heapEnd || a+n < a {
		return 0, fmt.Errorf("queuetest: out of buffer memory")
	}
	d.heap = a + n
	return a, d.Mem.Zero(a, n)
}

// SetDesc writes descriptor i raw.
func (d *Driver) SetDesc(i uint16, addr uint64, length uint32, flags, next uint16) error {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	return d.Mem.WriteAt(b[:], d.DescAddr+16*uint64(i%d.Size))
}

// WriteTable writes raw descriptors (as for SetDesc) into an indirect table
// at addr.
func (d *Driver) WriteTable(addr uint64, descs []RawDesc) error {
	b := make([]byte, 16*len(descs))
	for i, r := range descs {
		binary.LittleEndian.PutUint64(b[16*i:], r.Addr)
		binary.LittleEndian.PutUint32(b[16*i+8:], r.Len)
		binary.LittleEndian.PutUint16(b[16*i+12:], r.Flags)
		binary.LittleEndian.PutUint16(b[16*i+14:], r.Next)
	}
	return d.Mem.WriteAt(b, addr)
}

// RawDesc is a descriptor as the driver writes it.
type RawDesc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Reserve takes n descriptors from the free-descriptor allocator, for the
// caller to write by hand with SetDesc, and returns the first index.
func (d *Driver) Reserve(n int) uint16 {
	first := d.nextDesc
	d.nextDesc = uint16((int(d.nextDesc) + n) % int(d.Size))
	return first
}

// AddChain writes bufs as a chain of free descriptors and publishes it.
func (d *Driver) AddChain(bufs []Buf) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > int(d.Size) {
		return 0, fmt.Errorf("queuetest: %d buffers", len(bufs))
	}
	head := d.nextDesc
	for i, b := range bufs {
		idx := d.nextDesc
		d.nextDesc = (d.nextDesc + 1) % d.Size
		var flags uint16
		if b.Write {
			flags |= queue.DescFWrite
		}
		if i < len(bufs)-1 {
			flags |= queue.DescFNext
		}
		if err := d.SetDesc(idx, b.Addr, b.Len, flags, d.nextDesc); err != nil {
			return 0, err
		}
	}
	return head, d.Publish(head)
}

// AddIndirect writes bufs into an indirect table allocated with Alloc and
// publishes one descriptor pointing at it.
func (d *Driver) AddIndirect(bufs []Buf) (uint16, error) {
	table, err := d.Alloc(16 * uint64(len(bufs)))
	if err != nil {
		return 0, err
	}
	raw := make([]RawDesc, len(bufs))
	for i, b := range bufs {
		raw[i] = RawDesc{Addr: b.Addr, Len: b.Len, Next: uint16(i + 1)}
		if b.Write {
			raw[i].Flags |= queue.DescFWrite
		}
		if i < len(bufs)-1 {
			raw[i].Flags |= queue.DescFNext
		}
	}
	if err := d.WriteTable(table, raw); err != nil {
		return 0, err
	}
	head := d.nextDesc
	d.nextDesc = (d.nextDesc + 1) % d.Size
	if err := d.SetDesc(head, table, uint32(16*len(bufs)), queue.DescFIndirect, 0); err != nil {
		return 0, err
	}
	return head, d.Publish(head)
}

// Publish puts head in the next available ring slot and increments avail.idx.
func (d *Driver) Publish(head uint16) error {
	if err := d.Mem.PutUint16(d.AvailAddr+4+2*uint64(d.availIdx%d.Size), head); err != nil {
		return err
	}
	d.availIdx++
	return d.Mem.PutUint16(d.AvailAddr+2, d.availIdx)
}

// SetAvailIdx writes avail.idx directly (hostile drivers).
func (d *Driver) SetAvailIdx(v uint16) error {
	d.availIdx = v
	return d.Mem.PutUint16(d.AvailAddr+2, v)
}

// SetAvailFlags writes avail.flags.
func (d *Driver) SetAvailFlags(v uint16) error { return d.Mem.PutUint16(d.AvailAddr, v) }

// SetUsedEvent writes used_event (after the available ring).
func (d *Driver) SetUsedEvent(v uint16) error {
	return d.Mem.PutUint16(d.AvailAddr+4+2*uint64(d.Size), v)
}

// AvailEvent reads avail_event (after the used ring).
func (d *Driver) AvailEvent() (uint16, error) {
	return d.Mem.Uint16(d.UsedAddr + 4 + 8*uint64(d.Size))
}

// UsedFlags reads used.flags.
func (d *Driver) UsedFlags() (uint16, error) { return d.Mem.Uint16(d.UsedAddr) }

// UsedIdx reads used.idx.
func (d *Driver) UsedIdx() (uint16, error) { return d.Mem.Uint16(d.UsedAddr + 2) }

// Used returns the used elements published since the previous call.
func (d *Driver) Used() ([]Used, error) {
	idx, err := d.UsedIdx()
	if err != nil {
		return nil, err
	}
	var out []Used
	for ; d.lastUsed != idx; d.lastUsed++ {
		v, err := d.Mem.Uint64(d.UsedAddr + 4 + 8*uint64(d.lastUsed%d.Size))
		if err != nil {
			return nil, err
		}
		out = append(out, Used{ID: uint32(v), Len: uint32(v >> 32)})
	}
	return out, nil
}
