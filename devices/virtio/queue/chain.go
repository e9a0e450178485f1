package queue

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Desc is one checked buffer of a chain: [Addr, Addr+Len) lay inside guest
// RAM when the chain was popped. Write is true for device-writable buffers.
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Chain is a checked descriptor chain: the head index to return with Push
// and its buffers in order, every device-readable buffer before every
// device-writable one, indirect tables already expanded.
//
// Chain holds values copied out of guest memory, so the guest cannot change
// it after Pop; the helpers below check each buffer against guest RAM again
// on use.
type Chain struct {
	Head  uint16
	Descs []Desc
}

// ChainError reports a malformed chain. The chain was consumed from the
// available ring; Head is a valid index the device may Push.
type ChainError struct {
	Head uint16
	Err  error // wraps ErrGuest
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("virtqueue: chain at head %d: %v", e.Head, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

type rawDesc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func decodeDesc(b []byte) rawDesc {
	return rawDesc{
		addr:  binary.LittleEndian.Uint64(b[0:8]),
		len:   binary.LittleEndian.Uint32(b[8:12]),
		flags: binary.LittleEndian.Uint16(b[12:14]),
		next:  binary.LittleEndian.Uint16(b[14:16]),
	}
}

// chainWalker accumulates the checks that span a whole chain.
type chainWalker struct {
	total uint64
	seenW bool
}

func (w *chainWalker) add(mem *memory.Guest, c *Chain, d rawDesc) error {
	write := d.flags&DescFWrite != 0
	if w.seenW && !write {
		return fmt.Errorf("%w: device-readable buffer after a device-writable one", ErrGuest)
	}
	w.seenW = w.seenW || write
	w.total += uint64(d.len)
	if w.total > MaxChainBytes {
		return fmt.Errorf("%w: chain longer than %d bytes", ErrGuest, uint64(MaxChainBytes))
	}
	if !mem.Contains(d.addr, uint64(d.len)) {
		return fmt.Errorf("%w: buffer [%#x+%#x) outside guest RAM", ErrGuest, d.addr, d.len)
	}
	c.Descs = append(c.Descs, Desc{Addr: d.addr, Len: d.len, Write: write})
	return nil
}

// expand follows the indirect table that d points to (virtio 1.2, 2.7.5.3):
// one level only (an indirect descriptor has no NEXT, so it ends the chain), length a non-zero multiple of 16 up to MaxIndirectDescs
// entries, walked from entry 0 with every next inside the table and at
// most one visit per entry. The device ignores d's WRITE flag.
func (w *chainWalker) expand(mem *memory.Guest, c *Chain, d rawDesc) error {
	if d.len == 0 || d.len%descSize != 0 {
		return fmt.Errorf("%w: indirect table length %d not a non-zero multiple of %d", ErrGuest, d.len, descSize)
	}
	n := d.len / descSize
	if n > MaxIndirectDescs {
		return fmt.Errorf("%w: indirect table of %d entries exceeds %d", ErrGuest, n, MaxIndirectDescs)
	}
	// Copy the table once: later guest writes cannot change what we check.
	table := make([]byte, d.len)
	if err := mem.ReadAt(table, d.addr); err != nil {
		return fmt.Errorf("%w: indirect table [%#x+%#x): %v", ErrGuest, d.addr, d.len, err)
	}
	var i uint32
	for hops := uint32(0); ; hops++ {
		if hops >= n {
			return fmt.Errorf("%w: indirect chain longer than its table (loop?)", ErrGuest)
		}
		e := decodeDesc(table[descSize*i : descSize*(i+1)])
		if e.flags&DescFIndirect != 0 {
			return fmt.Errorf("%w: nested indirect descriptor at entry %d", ErrGuest, i)
		}
		if err := w.add(mem, c, e); err != nil {
			return fmt.Errorf("indirect entry %d: %w", i, err)
		}
		if e.flags&DescFNext == 0 {
			return nil
		}
		if uint32(e.next) >= n {
			return fmt.Errorf("%w: indirect entry %d next %d >= table size %d", ErrGuest, i, e.next, n)
		}
		i = uint32(e.next)
	}
}

// ReadableLen returns the total length of the device-readable buffers.
func (c *Chain) ReadableLen() uint64 { return c.length(false) }

// WritableLen returns the total length of the device-writable buffers.
func (c *Chain) WritableLen() uint64 { return c.length(true) }

func (c *Chain) length(write bool) uint64 {
	var n uint64
	for _, d := range c.Descs {
		if d.Write == write {
			n += uint64(d.Len)
		}
	}
	return n
}

// ReadAt copies len(p) bytes from the device-readable part of the chain,
// starting off bytes into it (across buffer boundaries), into p.
func (c *Chain) ReadAt(mem *memory.Guest, p []byte, off uint64) error {
	return c.each(mem, false, off, uint64(len(p)), func(s []byte) { p = p[copy(p, s):] })
}

// WriteAt copies p into the device-writable part of the chain, starting
// off bytes into it.
func (c *Chain) WriteAt(mem *memory.Guest, p []byte, off uint64) error {
	return c.each(mem, true, off, uint64(len(p)), func(s []byte) { p = p[copy(s, p):] })
}

// ReadableSlices appends to dst the host slices backing n bytes of the
// device-readable part at off, for vectored I/O without a copy. The slices
// alias guest memory.
func (c *Chain) ReadableSlices(mem *memory.Guest, off, n uint64, dst [][]byte) ([][]byte, error) {
	err := c.each(mem, false, off, n, func(s []byte) { dst = append(dst, s) })
	return dst, err
}

// WritableSlices is ReadableSlices for the device-writable part.
func (c *Chain) WritableSlices(mem *memory.Guest, off, n uint64, dst [][]byte) ([][]byte, error) {
	err := c.each(mem, true, off, n, func(s []byte) { dst = append(dst, s) })
	return dst, err
}

// each calls fn with the guest slices covering [off, off+n) of the readable
// or writable part, in order; each buffer is checked against RAM again.
func (c *Chain) each(mem *memory.Guest, write bool, off, n uint64, fn func([]byte)) error {
	if n == 0 {
		return nil
	}
	for _, d := range c.Descs {
		if d.Write != write {
			continue
		}
		l := uint64(d.Len)
		if off >= l {
			off -= l
			continue
		}
		take := min(l-off, n)
		s, err := mem.Slice(d.Addr+off, take)
		if err != nil {
			return fmt.Errorf("virtqueue: %w: chain buffer: %v", ErrGuest, err)
		}
		fn(s)
		off = 0
		n -= take
		if n == 0 {
			return nil
		}
	}
	kind := "readable"
	if write {
		kind = "writable"
	}
	return fmt.Errorf("virtqueue: %w: chain's %s part too short", ErrGuest, kind)
}
