// Package memory owns guest RAM: the host mappings that back it and every
// access to it by guest-physical address.
//
// All guest addresses used by the VMM go through Guest, which checks each
// access for overflow and for lying entirely inside one RAM region. Devices
// never index the mapped []byte with a guest-supplied value. Integers in guest
// memory are little-endian (x86); the helpers for them live here.
package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange reports a guest-physical access that does not lie entirely
// inside one RAM region (or whose end overflows 64 bits).
var ErrOutOfRange = errors.New("guest address out of range")

// RegionSpec describes one contiguous range of guest RAM to create.
type RegionSpec struct {
	Base uint64 // guest-physical address of the first byte
	Size uint64 // bytes; a multiple of the host page size
}

// Region is one contiguous range of guest RAM and the host mapping behind it.
type Region struct {
	Base uint64 // guest-physical address of the first byte
	host []byte
}

// Size returns the region's length in bytes.
func (r Region) Size() uint64 { return uint64(len(r.host)) }

// End returns the guest-physical address one past the region's last byte.
func (r Region) End() uint64 { return r.Base + r.Size() }

// Host returns the host mapping, for registering the region with KVM. Code
// that serves the guest must use Guest's checked accessors instead.
func (r Region) Host() []byte { return r.host }

// Guest is the guest's RAM: a sorted list of non-overlapping regions.
// Its methods are safe for concurrent use; the guest itself may change the
// contents at any time, so callers must treat every value read as untrusted.
type Guest struct {
	regions []Region
}

// New maps anonymous, lazily-populated memory for each region (2 MiB-aligned,
// with transparent huge pages where the host has them; see mapRegion). Regions must
// be sorted, page-aligned and non-overlapping.
func New(specs []RegionSpec) (*Guest, error) {
	if len(specs) == 0 {
		return nil, errors.New("memory: no regions")
	}
	page := uint64(unix.Getpagesize())
	g := &Guest{}
	var prevEnd uint64
	for i, s := range specs {
		switch {
		case s.Size == 0 || s.Size%page != 0 || s.Base%page != 0:
			g.Close()
			return nil, fmt.Errorf("memory: region %d [%#x+%#x) not page-aligned or empty", i, s.Base, s.Size)
		case s.Base+s.Size < s.Base:
			g.Close()
			return nil, fmt.Errorf("memory: region %d [%#x+%#x) overflows", i, s.Base, s.Size)
		case i > 0 && s.Base < prevEnd:
			g.Close()
			return nil, fmt.Errorf("memory: region %d at %#x overlaps or is out of order", i, s.Base)
		case s.Size > math.MaxInt:
			g.Close()
			return nil, fmt.Errorf("memory: region %d too large", i)
		}
		host, err := mapRegion(s.Size)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("memory: map %d MiB at guest %#x: %w", s.Size>>20, s.Base, err)
		}
		g.regions = append(g.regions, Region{Base: s.Base, host: host})
		prevEnd = s.Base + s.Size
	}
	return g, nil
}

// Close unmaps all regions. The Guest must not be used afterwards.
func (g *Guest) Close() error {
	var first error
	for _, r := range g.regions {
		if err := unmapRegion(r.host); err != nil && first == nil {
			first = fmt.Errorf("memory: unmap %#x: %w", r.Base, err)
		}
	}
	g.regions = nil
	return first
}

// Regions returns the RAM regions in ascending order.
func (g *Guest) Regions() []Region { return g.regions }

// Size returns the total bytes of guest RAM.
func (g *Guest) Size() uint64 {
	var n uint64
	for _, r := range g.regions {
		n += r.Size()
	}
	return n
}

// Contains reports whether [addr, addr+n) lies inside one RAM region.
func (g *Guest) Contains(addr, n uint64) bool {
	_, err := g.Slice(addr, n)
	return err == nil
}

// Slice returns the host bytes backing [addr, addr+n). The range must lie
// inside one region. The returned slice aliases guest memory: the guest may
// change it concurrently.
func (g *Guest) Slice(addr, n uint64) ([]byte, error) {
	end := addr + n
	if end < addr {
		return nil, fmt.Errorf("%w: %#x+%#x overflows", ErrOutOfRange, addr, n)
	}
	for _, r := range g.regions {
		if addr >= r.Base && end <= r.End() {
			off := addr - r.Base
			return r.host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, %#x)", ErrOutOfRange, addr, end)
}

// ReadAt copies len(p) bytes at guest address addr into p.
func (g *Guest) ReadAt(p []byte, addr uint64) error {
	s, err := g.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// WriteAt copies p into guest memory at addr.
func (g *Guest) WriteAt(p []byte, addr uint64) error {
	s, err := g.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// releaseMin is the smallest run of whole pages Zero gives back to the host
// instead of clearing: below it one madvise costs more than the stores.
const releaseMin = 64 << 10

// Zero clears [addr, addr+n). The whole pages of a large range are given
// back to the host (madvise MADV_DONTNEED on the private anonymous mapping,
// after which they read as zero) instead of being written, so that zeroing
// memory nothing has touched yet touches nothing either. Giving back part of
// a resident huge page splits it, so Zero is meant for building the VM
// (loading a kernel into fresh memory), not for memory the guest is using.
func (g *Guest) Zero(addr, n uint64) error {
	s, err := g.Slice(addr, n)
	if err != nil {
		return err
	}
	// Host and guest addresses agree modulo the page size (regions and
	// their mappings are page-aligned), so whole guest pages are whole
	// host pages.
	page := uint64(unix.Getpagesize())
	head := (page - addr%page) % page
	if n < head || n-head < releaseMin {
		clear(s)
		return nil
	}
	body := (n - head) &^ (page - 1)
	clear(s[:head])
	if err := unix.Madvise(s[head:head+body], unix.MADV_DONTNEED); err != nil {
		clear(s[head : head+body])
	}
	clear(s[head+body:])
	return nil
}

// Discard gives the whole pages in [addr, addr+n) back to the host
// (madvise MADV_DONTNEED on the private anonymous mapping): their contents
// are gone, and the guest's next touch of each faults in a zeroed page.
// Partial pages at either end are left as they are. It returns how many
// bytes it gave back. It is for memory the guest has said it does not use
// (a balloon's free page reports); the range is checked like any other.
func (g *Guest) Discard(addr, n uint64) (uint64, error) {
	s, err := g.Slice(addr, n)
	if err != nil {
		return 0, err
	}
	page := uint64(unix.Getpagesize())
	head := (page - addr%page) % page
	if n < head+page {
		return 0, nil
	}
	body := (n - head) &^ (page - 1)
	if err := unix.Madvise(s[head:head+body], unix.MADV_DONTNEED); err != nil {
		return 0, fmt.Errorf("memory: discard %#x+%#x: %w", addr+head, body, err)
	}
	return body, nil
}

// Uint8 reads one byte at addr.
func (g *Guest) Uint8(addr uint64) (uint8, error) {
	s, err := g.Slice(addr, 1)
	if err != nil {
		return 0, err
	}
	return s[0], nil
}

// Uint16 reads a little-endian uint16 at addr.
func (g *Guest) Uint16(addr uint64) (uint16, error) {
	s, err := g.Slice(addr, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian uint32 at addr.
func (g *Guest) Uint32(addr uint64) (uint32, error) {
	s, err := g.Slice(addr, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian uint64 at addr.
func (g *Guest) Uint64(addr uint64) (uint64, error) {
	s, err := g.Slice(addr, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint8 writes one byte at addr.
func (g *Guest) PutUint8(addr uint64, v uint8) error {
	s, err := g.Slice(addr, 1)
	if err != nil {
		return err
	}
	s[0] = v
	return nil
}

// PutUint16 writes a little-endian uint16 at addr.
func (g *Guest) PutUint16(addr uint64, v uint16) error {
	s, err := g.Slice(addr, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes a little-endian uint32 at addr.
func (g *Guest) PutUint32(addr uint64, v uint32) error {
	s, err := g.Slice(addr, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes a little-endian uint64 at addr.
func (g *Guest) PutUint64(addr uint64, v uint64) error {
	s, err := g.Slice(addr, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}
