package memory

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageSize is the x86-64 transparent huge page size.
const hugePageSize = 2 << 20

// mapRegion maps size bytes of anonymous, lazily populated memory at a host
// address aligned to 2 MiB, and asks for transparent huge pages. Guest
// regions start on 2 MiB boundaries too, so host and guest addresses are
// congruent modulo 2 MiB and KVM can back the guest with 2 MiB nested-page
// mappings (one fault and one TLB entry per 2 MiB instead of 512), as QEMU
// does for its RAM. Without the alignment KVM maps 4 KiB pages even where
// the host has huge pages: receiving 32 MiB over virtio-net cost the guest
// about 10 000 nested page faults (QEMU: 15). Huge pages are a hint: where
// the host has none (THP "never", fragmented memory), 4 KiB pages serve.
func mapRegion(size uint64) ([]byte, error) {
	const prot = unix.PROT_READ | unix.PROT_WRITE
	const flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
	// Over-allocate by one huge page, then unmap the unaligned head and
	// the tail.
	// Safety: a fresh anonymous mapping at an address the kernel picks;
	// the pointers below stay inside it, and only [lead, lead+size) is kept
	// and turned into a slice.
	span := uintptr(size) + hugePageSize
	raw, err := unix.MmapPtr(-1, 0, nil, span, prot, flags)
	if err != nil {
		return nil, err
	}
	base := uintptr(raw)
	lead := (hugePageSize - base%hugePageSize) % hugePageSize
	if lead > 0 {
		if err := unix.MunmapPtr(raw, lead); err != nil {
			unix.MunmapPtr(raw, span)
			return nil, err
		}
	}
	host := unsafe.Add(raw, lead)
	if tail := span - lead - uintptr(size); tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(host, size), tail); err != nil {
			unix.MunmapPtr(host, uintptr(size)+tail)
			return nil, err
		}
	}
	b := unsafe.Slice((*byte)(host), size)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // a hint: EINVAL without THP support
	return b, nil
}

// unmapRegion unmaps memory from mapRegion.
func unmapRegion(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	// Safety: b is exactly one mapping made by mapRegion and no longer used.
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}
