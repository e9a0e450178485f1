package memory

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// LoadUint32Atomic reads the naturally aligned little-endian uint32 at addr
// with acquire ordering: no later read of guest memory by this goroutine is
// moved before it. Virtqueues use it for ring words the guest publishes
// (virtio 1.2, 2.7.13: "read idx, then the ring entries").
func (g *Guest) LoadUint32Atomic(addr uint64) (uint32, error) {
	p, err := g.word32(addr)
	if err != nil {
		return 0, err
	}
	return atomic.LoadUint32(p), nil
}

// StoreUint32Atomic writes the naturally aligned uint32 at addr with release
// ordering: every earlier write to guest memory is visible to the guest
// before this one. On amd64 it is also a full fence (XCHG), so a following
// read cannot be moved before it (needed for event-index checks).
func (g *Guest) StoreUint32Atomic(addr uint64, v uint32) error {
	p, err := g.word32(addr)
	if err != nil {
		return err
	}
	atomic.StoreUint32(p, v)
	return nil
}

func (g *Guest) word32(addr uint64) (*uint32, error) {
	if addr%4 != 0 {
		return nil, fmt.Errorf("%w: atomic access at unaligned %#x", ErrOutOfRange, addr)
	}
	s, err := g.Slice(addr, 4)
	if err != nil {
		return nil, err
	}
	// Safety: s is 4 bytes inside an mmap'd region, which is page-aligned,
	// and addr%4 == 0 with region bases page-aligned, so &s[0] is 4-byte
	// aligned. The mapping outlives every caller (unmapped only by Close).
	// amd64 is little-endian, so the value matches the guest's view.
	return (*uint32)(unsafe.Pointer(&s[0])), nil
}
