package pci

import (
	"fmt"
	"math/bits"
	"sync"
)

// Allocator hands out naturally aligned BAR addresses from a window of
// guest-physical address space, normally the 32-bit PCI window
// [0xC000_0000, 0xFE00_0000) named in boot/layout.go. Alignment holes left
// by large allocations are reused by later small ones. Addresses are never
// freed: BARs live as long as the VM. Safe for concurrent use.
type Allocator struct {
	mu   sync.Mutex
	free []span // mu protects free: disjoint, ascending, non-empty
}

type span struct{ start, end uint64 } // [start, end)

// NewAllocator returns an allocator over [base, end).
func NewAllocator(base, end uint64) (*Allocator, error) {
	if base >= end {
		return nil, fmt.Errorf("pci: empty BAR window [%#x, %#x)", base, end)
	}
	return &Allocator{free: []span{{base, end}}}, nil
}

// Allocate reserves size bytes aligned to size (a power of two) and returns
// the address: the lowest fitting one.
func (a *Allocator) Allocate(size uint64) (uint64, error) {
	if size == 0 || bits.OnesCount64(size) != 1 {
		return 0, fmt.Errorf("pci: BAR size %#x is not a power of two", size)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, s := range a.free {
		addr := (s.start + size - 1) &^ (size - 1)
		if addr < s.start { // rounding overflowed
			continue
		}
		end := addr + size
		if end < addr || end > s.end {
			continue
		}
		var repl []span
		if addr > s.start {
			repl = append(repl, span{s.start, addr})
		}
		if end < s.end {
			repl = append(repl, span{end, s.end})
		}
		a.free = append(a.free[:i], append(repl, a.free[i+1:]...)...)
		return addr, nil
	}
	return 0, fmt.Errorf("pci: no room for a %#x-byte BAR in the window", size)
}
