package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

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
	for _, w := range fileWindows(off, addr, n) {
		if err := copyMapped(mem, f, w.start, w.skip, w.size, w.addr); err != nil {
			return err
		}
	}
	return nil
}

// fileWindow is one mapping copyMapped makes: size bytes of the file from
// the page-aligned offset start, copied from skip on to guest address addr.
type fileWindow struct{ start, skip, size, addr uint64 }

// fileWindows splits copying n bytes of a file at offset off to guest
// address addr into mappings of at most loadWindow bytes.
func fileWindows(off, addr, n uint64) []fileWindow {
	page := uint64(os.Getpagesize())
	var ws []fileWindow
	for done := uint64(0); done < n; {
		pos := off + done
		start := pos &^ (page - 1)
		size := min(loadWindow, pos-start+n-done)
		ws = append(ws, fileWindow{start: start, skip: pos - start, size: size, addr: addr + done})
		done += size - (pos - start)
	}
	return ws
}

// loadSegments loads every segment's file bytes (loadSegment). From a
// file, the windows are copied by up to maxLoadWorkers goroutines at
// once, which on a busy or emulated host halves the time it takes to fault
// in and fill fresh guest memory; the windows write disjoint guest ranges.
func loadSegments(mem *memory.Guest, r io.ReaderAt, loads []elfPhdr) error {
	f, ok := r.(*os.File)
	workers := min(runtime.GOMAXPROCS(0), maxLoadWorkers)
	if !ok || workers < 2 {
		for _, ph := range loads {
			if err := loadSegment(mem, r, ph.Offset, ph.Paddr, ph.Filesz); err != nil {
				return fmt.Errorf("boot: read segment at %#x: %w", ph.Paddr, err)
			}
		}
		return nil
	}
	var jobs []fileWindow
	for _, ph := range loads {
		jobs = append(jobs, fileWindows(ph.Offset, ph.Paddr, ph.Filesz)...)
	}
	errs := inParallel(workers, len(jobs), func(next func() (int, bool)) error {
		for i, ok := next(); ok; i, ok = next() {
			j := jobs[i]
			if err := copyMapped(mem, f, j.start, j.skip, j.size, j.addr); err != nil {
				return fmt.Errorf("boot: read segment bytes at %#x: %w", j.addr, err)
			}
		}
		return nil
	})
	return errors.Join(errs...)
}

// inParallel runs work on the given number of goroutines and returns
// their errors, in worker order. The next function each receives hands
// out the indexes 0 to n-1, each once, and reports false when none is
// left or a worker has returned an error.
func inParallel(workers, n int, work func(next func() (int, bool)) error) []error {
	var counter atomic.Int64
	var failed atomic.Bool
	next := func() (int, bool) {
		if failed.Load() {
			return 0, false
		}
		i := counter.Add(1) - 1
		return int(i), i < int64(n)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[w] = work(next); errs[w] != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return errs
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
