package machine

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestResidentBytes(t *testing.T) {
	page := unix.Getpagesize()
	b, err := unix.Mmap(-1, 0, 64*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(b)
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pagemap.Close()
	before, err := residentBytes(pagemap, [][]byte{b})
	if err != nil {
		t.Fatalf("residentBytes: %v", err)
	}
	for i := 0; i < 64; i += 4 {
		b[i*page] = 1
	}
	after, err := residentBytes(pagemap, [][]byte{b, nil})
	if err != nil {
		t.Fatalf("residentBytes: %v", err)
	}
	// Transparent huge pages may make more resident than was touched.
	if want := uint64(16 * page); after-before < want {
		t.Fatalf("after touching 16 pages: resident %d -> %d bytes, want at least %d more", before, after, want)
	}
	if after > uint64(len(b)) {
		t.Fatalf("resident %d bytes of a %d-byte mapping", after, len(b))
	}
}

func TestPresentPages(t *testing.T) {
	b := make([]byte, 8*4)
	b[7] = 0x80  // present
	b[15] = 0x40 // swapped, not present
	b[31] = 0x81 // present, other bits
	if n := presentPages(b); n != 2 {
		t.Fatalf("presentPages = %d, want 2", n)
	}
	if n := presentPages(b[:5]); n != 0 {
		t.Fatalf("presentPages of a short buffer = %d, want 0", n)
	}
}
