package memory

import (
	"testing"
	"unsafe"
)

func TestRegionsHugePageAligned(t *testing.T) {
	g, err := New([]RegionSpec{{Base: 0, Size: 6 << 20}, {Base: 8 << 20, Size: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, r := range g.Regions() {
		h := r.Host()
		// Safety: only the address of the first byte is read, to check alignment.
		if r.Size() >= hugePageSize && uintptr(unsafe.Pointer(&h[0]))%hugePageSize != 0 {
			t.Errorf("region at %#x: host address %p not 2 MiB aligned", r.Base, &h[0])
		}
		// The whole region is usable, to its last byte.
		if err := g.PutUint8(r.End()-1, 0xAA); err != nil {
			t.Errorf("last byte of region at %#x: %v", r.Base, err)
		}
	}
	if err := g.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
