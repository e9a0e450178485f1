package memory

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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

// TestZeroTouchesNothing checks that zeroing fresh memory leaves it
// non-resident: a kernel's zero pages cost the host nothing.
func TestZeroTouchesNothing(t *testing.T) {
	g, err := New([]RegionSpec{{Base: 0, Size: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Zero(0x1000, 3<<20); err != nil {
		t.Fatal(err)
	}
	host := g.Regions()[0].Host()
	vec := make([]byte, len(host)/unix.Getpagesize())
	// Safety: mincore(2) reads the mapping's page table entries only and
	// writes one byte per page into vec, which has room for all of them.
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&host[0])), uintptr(len(host)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Skipf("mincore: %v", errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	if resident != 0 {
		t.Errorf("%d pages resident after zeroing fresh memory", resident)
	}
}
