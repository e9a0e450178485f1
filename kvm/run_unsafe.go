package kvm

import (
	"sync/atomic"
	"unsafe"
)

// runControlWord returns the first 32-bit word of the vCPU's kvm_run
// mapping: request_interrupt_window (byte 0), immediate_exit (byte 1) and
// padding. Kick and ClearKick update immediate_exit in it atomically while
// another thread may be entering KVM_RUN.
//
// Safety: c.run is a page-aligned MAP_SHARED mapping of at least runMinSize
// bytes (checked in CreateVCPU), so the word is in bounds and 4-byte aligned.
// It is not Go heap memory; it stays mapped until Close, and Kick and
// ClearKick, the only callers, hold c.mu and check c.closed first.
func (c *VCPU) runControlWord() *uint32 {
	return (*uint32)(unsafe.Pointer(&c.run[0]))
}

// setImmediateExit sets or clears kvm_run.immediate_exit. Caller holds c.mu.
func (c *VCPU) setImmediateExit(on bool) {
	const mask = 0xFF << (8 * runImmediateExit)
	w := c.runControlWord()
	if on {
		atomic.OrUint32(w, 1<<(8*runImmediateExit))
	} else {
		atomic.AndUint32(w, ^uint32(mask))
	}
}

// hostAddr returns the host virtual address of b's first byte, for
// kvm_userspace_memory_region.userspace_addr.
//
// Safety: the address is only handed to the kernel as a number. b must be a
// non-empty mapping outside the Go heap (SetUserMemoryRegion documents this),
// so the garbage collector neither moves nor frees it while KVM uses it.
func hostAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}
