package boot

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/memory"
)

// Loading a segment copies only the file's pages that hold something: the
// destination has been zeroed first (memory.Guest.Zero, which on fresh
// memory touches nothing), so a page that is all zero in the file is
// skipped rather than written, and the guest page behind it is never
// faulted in by the VMM. A kernel's zero pages are many: the gap the linker
// leaves between text and read-only data, and the bss that an extracted
// vmlinux stores as zeros (a third of Debian's 46 MB of segments).
const (
	// loadPage is the granularity of the zero test, in guest addresses.
	loadPage = 4096
	// loadWindow is how much of a kernel file is mapped at once: small
	// next to the guest memory a kernel fills, so the mapping adds nothing
	// to the VMM's peak resident memory.
	loadWindow = 2 << 20
)

// zeroPage is compared against; never written.
var zeroPage [loadPage]byte

// loadSegment copies n bytes of r at offset off to guest address addr,
// skipping the guest pages whose bytes are all zero in the file. The
// destination must read as zero already. A regular file is read through
// read-only mappings (no copy through the page cache into a buffer); any
// other reader is read straight into guest memory.
func loadSegment(mem *memory.Guest, r io.ReaderAt, off, addr, n uint64) error {
	f, ok := r.(*os.File)
	if !ok {
		dst, err := mem.Slice(addr, n)
		if err != nil {
			return err
		}
		return readFull(r, dst, int64(off))
	}
	page := uint64(os.Getpagesize())
	for done := uint64(0); done < n; {
		pos := off + done
		start := pos &^ (page - 1)
		size := min(loadWindow, pos-start+n-done)
		if err := copyMapped(mem, f, start, pos-start, size, addr+done); err != nil {
			return err
		}
		done += size - (pos - start)
	}
	return nil
}

// copyMapped maps size bytes of f at the page-aligned offset start and
// copies them, from skip on, to guest address addr (skipping zero pages).
// A file cut short under the mapping faults (SIGBUS); that becomes an error
// here instead of a crash.
func copyMapped(mem *memory.Guest, f *os.File, start, skip, size, addr uint64) (err error) {
	m, err := unix.Mmap(int(f.Fd()), int64(start), int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map %d bytes at offset %d: %w", size, start, err)
	}
	defer unix.Munmap(m)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			fault, ok := r.(interface{ Addr() uintptr })
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("file changed while loading: fault at %#x of its mapping at offset %d", fault.Addr(), start)
		}
	}()
	return copyNonZero(mem, addr, m[skip:])
}

// copyNonZero writes src to guest memory at addr, one guest page at a time,
// leaving out the pages of src that are all zero.
func copyNonZero(mem *memory.Guest, addr uint64, src []byte) error {
	for len(src) > 0 {
		k := min(uint64(len(src)), loadPage-addr%loadPage)
		if chunk := src[:k]; !bytes.Equal(chunk, zeroPage[:k]) {
			if err := mem.WriteAt(chunk, addr); err != nil {
				return err
			}
		}
		src = src[k:]
		addr += k
	}
	return nil
}
