package devices

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Device is a register window on a bus. offset is relative to the base the
// device was registered at; len(data) is 1, 2, 4 or 8 and the access lies
// entirely inside the window. Read must fill all of data.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// ErrOverlap reports a registration whose window intersects one already on
// the bus.
var ErrOverlap = errors.New("window overlaps a registered device")

// Bus dispatches accesses by address to registered devices: one bus for port
// I/O, one for MMIO.
//
// Lookups (Read, Write) take no lock and allocate nothing: they load an
// immutable slice of windows sorted by base and binary-search it.
// Registration copies the slice under mu and publishes the copy atomically,
// so it is safe at any time (PCI BARs may move while vCPUs run), although the
// machine normally registers everything before the vCPUs start.
type Bus struct {
	name string

	mu      sync.Mutex               // serialises Register and Unregister
	windows atomic.Pointer[[]window] // sorted by base, non-overlapping; never mutated once published
}

// window is one registered device: it covers [base, last], inclusive, so a
// window may end at the top of the 64-bit space.
type window struct {
	base, last uint64
	dev        Device
}

// NewBus returns an empty bus; name appears in error messages.
func NewBus(name string) *Bus {
	b := &Bus{name: name}
	empty := []window{}
	b.windows.Store(&empty)
	return b
}

// Name returns the name the bus was created with.
func (b *Bus) Name() string { return b.name }

// Register places d at [base, base+size). It rejects a nil device, a zero
// size, a window that wraps past the top of the address space and a window
// that overlaps one already registered.
func (b *Bus) Register(base, size uint64, d Device) error {
	if d == nil {
		return fmt.Errorf("devices: bus %s: register at %#x: nil device", b.name, base)
	}
	if size == 0 {
		return fmt.Errorf("devices: bus %s: register at %#x: zero size", b.name, base)
	}
	if size-1 > math.MaxUint64-base {
		return fmt.Errorf("devices: bus %s: register at %#x size %#x: window wraps past the end of the address space", b.name, base, size)
	}
	nw := window{base: base, last: base + (size - 1), dev: d}

	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.windows.Load()
	i := firstAfter(old, base) // old[i-1].base <= base < old[i].base
	if i > 0 && old[i-1].last >= base {
		p := old[i-1]
		return fmt.Errorf("devices: bus %s: register [%#x, %#x]: %w [%#x, %#x]", b.name, nw.base, nw.last, ErrOverlap, p.base, p.last)
	}
	if i < len(old) && old[i].base <= nw.last {
		n := old[i]
		return fmt.Errorf("devices: bus %s: register [%#x, %#x]: %w [%#x, %#x]", b.name, nw.base, nw.last, ErrOverlap, n.base, n.last)
	}
	next := make([]window, 0, len(old)+1)
	next = append(next, old[:i]...)
	next = append(next, nw)
	next = append(next, old[i:]...)
	b.windows.Store(&next)
	return nil
}

// Unregister removes the device registered at exactly base and returns it.
func (b *Bus) Unregister(base uint64) (Device, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.windows.Load()
	i := firstAfter(old, base) - 1
	if i < 0 || old[i].base != base {
		return nil, fmt.Errorf("devices: bus %s: unregister %#x: no device registered at that base", b.name, base)
	}
	next := make([]window, 0, len(old)-1)
	next = append(next, old[:i]...)
	next = append(next, old[i+1:]...)
	b.windows.Store(&next)
	return old[i].dev, nil
}

// Read dispatches a read of len(data) bytes at addr. It returns false, leaving
// data untouched, if no device window holds the whole access or the length is
// not 1, 2, 4 or 8; the caller then fills data with 0xFF (an open bus).
func (b *Bus) Read(addr uint64, data []byte) bool {
	d, off, ok := b.find(addr, len(data))
	if !ok {
		return false
	}
	d.Read(off, data)
	return true
}

// Write dispatches a write of data at addr. It returns false if no device
// window holds the whole access or the length is not 1, 2, 4 or 8; the caller
// then drops the write.
func (b *Bus) Write(addr uint64, data []byte) bool {
	d, off, ok := b.find(addr, len(data))
	if !ok {
		return false
	}
	d.Write(off, data)
	return true
}

// find returns the device whose window holds [addr, addr+n) and the offset of
// addr in it. An access straddling a window's end is refused rather than
// passed on.
func (b *Bus) find(addr uint64, n int) (Device, uint64, bool) {
	switch n {
	case 1, 2, 4, 8:
	default:
		return nil, 0, false
	}
	ws := *b.windows.Load()
	i := firstAfter(ws, addr) - 1
	if i < 0 {
		return nil, 0, false
	}
	w := &ws[i]
	// w.base <= addr by construction; the access must end at or before last.
	if addr > w.last || uint64(n-1) > w.last-addr {
		return nil, 0, false
	}
	return w.dev, addr - w.base, true
}

// firstAfter returns the index of the first window whose base is above addr
// (len(ws) if none). Written out rather than using sort.Search so the lookup
// path provably allocates nothing.
func firstAfter(ws []window, addr uint64) int {
	lo, hi := 0, len(ws)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ws[mid].base <= addr {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
