package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its descriptor and its kvm_run mapping.
//
// Run and the register methods belong to the goroutine that runs the vCPU,
// which must be locked to its OS thread; Kick, ExitCounts and ID may be called
// from any goroutine. Close must not be called while Run is in progress:
// Kick the vCPU and wait for Run to return first.
type VCPU struct {
	id      int
	fd      int
	pid     int
	hasXCRS bool
	run     []byte // kvm_run mapping, KVM_GET_VCPU_MMAP_SIZE bytes

	tid    atomic.Int32 // OS thread that last entered Run, for Kick's signal
	kicked atomic.Bool  // sticky until ClearKick

	// mu serialises Kick and ClearKick with Close, so the kvm_run mapping
	// is never written after it is unmapped; closed is guarded by mu.
	mu     sync.Mutex
	closed bool

	counts struct {
		io, mmio, hlt, shutdown, systemEvent atomic.Uint64
		internalError, failEntry             atomic.Uint64
		interrupted, unknown                 atomic.Uint64
	}

	// Exit values reused by every Run (see Exit).
	exitIO       ExitIO
	exitMMIO     ExitMMIO
	exitSystem   ExitSystemEvent
	exitInternal ExitInternalError
	exitFail     ExitFailEntry
	exitUnknown  ExitUnknown
	systemData   [maxExitData]uint64
	internalData [maxExitData]uint64
	insn         [maxInsnBytes]byte
}

// CreateVCPU creates vCPU id (its initial APIC ID) and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	if id < 0 || id > 1<<31-1 {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU: invalid id %d", id)
	}
	fd, err := ioctlVal(vm.fd, io(nrCreateVCPU), uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	if vm.runSize < runMinSize {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: vCPU %d: kvm_run size %d too small", id, vm.runSize)
	}
	run, err := unix.Mmap(int(fd), 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: vCPU %d: map kvm_run (%d bytes): %w", id, vm.runSize, err)
	}
	return &VCPU{id: id, fd: int(fd), pid: unix.Getpid(), hasXCRS: vm.hasXCRS, run: run}, nil
}

// Close unmaps kvm_run and closes the vCPU descriptor. Kick after Close does
// nothing.
func (c *VCPU) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if err := unix.Munmap(c.run); err != nil {
		errs = append(errs, fmt.Errorf("kvm: vCPU %d: unmap kvm_run: %w", c.id, err))
	}
	c.run = nil
	if err := unix.Close(c.fd); err != nil {
		errs = append(errs, fmt.Errorf("kvm: vCPU %d: close: %w", c.id, err))
	}
	c.fd = -1
	return errors.Join(errs...)
}

// ID returns the id the vCPU was created with.
func (c *VCPU) ID() int { return c.id }

// GetRegs returns the general-purpose registers (KVM_GET_REGS).
func (c *VCPU) GetRegs() (Regs, error) {
	var r Regs
	if _, err := ioctlR(c.fd, nrGetRegs, &r); err != nil {
		return Regs{}, fmt.Errorf("kvm: vCPU %d: KVM_GET_REGS: %w", c.id, err)
	}
	return r, nil
}

// SetRegs sets the general-purpose registers (KVM_SET_REGS).
func (c *VCPU) SetRegs(r *Regs) error {
	if _, err := ioctlW(c.fd, nrSetRegs, r); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_REGS: %w", c.id, err)
	}
	return nil
}

// GetSregs returns the segment and control registers (KVM_GET_SREGS).
func (c *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	if _, err := ioctlR(c.fd, nrGetSregs, &s); err != nil {
		return Sregs{}, fmt.Errorf("kvm: vCPU %d: KVM_GET_SREGS: %w", c.id, err)
	}
	return s, nil
}

// SetSregs sets the segment and control registers (KVM_SET_SREGS).
func (c *VCPU) SetSregs(s *Sregs) error {
	if _, err := ioctlW(c.fd, nrSetSregs, s); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_SREGS: %w", c.id, err)
	}
	return nil
}

// SetCPUID2 sets the CPUID leaves the guest sees (KVM_SET_CPUID2).
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDs {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_CPUID2: %d entries, at most %d", c.id, len(entries), maxCPUIDs)
	}
	buf := encodeCPUID(entries)
	if _, err := ioctlFlex[cpuid2Header](c.fd, iocWrite, nrSetCPUID2, buf); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_CPUID2 (%d entries): %w", c.id, len(entries), err)
	}
	return nil
}

// encodeMSRs builds a kvm_msrs argument for msrs.
func encodeMSRs(msrs []MSR) []byte {
	buf := make([]byte, flexHeaderSize+len(msrs)*msrEntrySize)
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(msrs)))
	for i, m := range msrs {
		e := buf[flexHeaderSize+i*msrEntrySize:]
		binary.LittleEndian.PutUint32(e[0:], m.Index)
		binary.LittleEndian.PutUint64(e[8:], m.Data)
	}
	return buf
}

// SetMSRs writes msrs (KVM_SET_MSRS). KVM stops at the first MSR it rejects;
// that is reported as an error naming it.
func (c *VCPU) SetMSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	if len(msrs) > maxMSRsPerCall {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS: %d MSRs, at most %d", c.id, len(msrs), maxMSRsPerCall)
	}
	n, err := ioctlFlex[msrsHeader](c.fd, iocWrite, nrSetMSRs, encodeMSRs(msrs))
	if err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS: %w", c.id, err)
	}
	if n < uintptr(len(msrs)) {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS set %d of %d; MSR %#x rejected", c.id, n, len(msrs), msrs[n].Index)
	}
	return nil
}

// GetMSRs reads the MSRs named by msrs[i].Index into msrs[i].Data
// (KVM_GET_MSRS). An MSR KVM does not know is reported as an error naming it.
func (c *VCPU) GetMSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	if len(msrs) > maxMSRsPerCall {
		return fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS: %d MSRs, at most %d", c.id, len(msrs), maxMSRsPerCall)
	}
	buf := encodeMSRs(msrs)
	n, err := ioctlFlex[msrsHeader](c.fd, iocRead|iocWrite, nrGetMSRs, buf)
	if err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS: %w", c.id, err)
	}
	got := min(n, uintptr(len(msrs)))
	for i := range got {
		msrs[i].Data = binary.LittleEndian.Uint64(buf[flexHeaderSize+int(i)*msrEntrySize+8:])
	}
	if got < uintptr(len(msrs)) {
		return fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS read %d of %d; MSR %#x rejected", c.id, got, len(msrs), msrs[got].Index)
	}
	return nil
}

// GetFPU returns the x87/SSE state (KVM_GET_FPU).
func (c *VCPU) GetFPU() (FPU, error) {
	var f FPU
	if _, err := ioctlR(c.fd, nrGetFPU, &f); err != nil {
		return FPU{}, fmt.Errorf("kvm: vCPU %d: KVM_GET_FPU: %w", c.id, err)
	}
	return f, nil
}

// SetFPU sets the x87/SSE state (KVM_SET_FPU).
func (c *VCPU) SetFPU(f *FPU) error {
	if _, err := ioctlW(c.fd, nrSetFPU, f); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_FPU: %w", c.id, err)
	}
	return nil
}

// GetLAPIC returns the in-kernel local APIC's registers (KVM_GET_LAPIC).
// Requires CreateIRQChip.
func (c *VCPU) GetLAPIC() (LAPICState, error) {
	var l LAPICState
	if _, err := ioctlR(c.fd, nrGetLAPIC, &l); err != nil {
		return LAPICState{}, fmt.Errorf("kvm: vCPU %d: KVM_GET_LAPIC: %w", c.id, err)
	}
	return l, nil
}

// SetLAPIC sets the in-kernel local APIC's registers (KVM_SET_LAPIC).
func (c *VCPU) SetLAPIC(l *LAPICState) error {
	if _, err := ioctlW(c.fd, nrSetLAPIC, l); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_LAPIC: %w", c.id, err)
	}
	return nil
}

// SetXCR0 sets the guest's XCR0 (KVM_SET_XCRS). It fails with an error
// wrapping errors.ErrUnsupported when KVM lacks KVM_CAP_XCRS; the value must
// be allowed by the CPUID set with SetCPUID2.
func (c *VCPU) SetXCR0(v uint64) error {
	if !c.hasXCRS {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_XCRS: %w (no KVM_CAP_XCRS)", c.id, errors.ErrUnsupported)
	}
	x := xcrs{NrXCRs: 1}
	x.XCRs[0] = xcr{XCR: xcrXCR0, Value: v}
	if _, err := ioctlW(c.fd, nrSetXCRS, &x); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_XCRS XCR0=%#x: %w", c.id, v, err)
	}
	return nil
}

// GetXCR0 returns the guest's XCR0 (KVM_GET_XCRS); see SetXCR0.
func (c *VCPU) GetXCR0() (uint64, error) {
	if !c.hasXCRS {
		return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_XCRS: %w (no KVM_CAP_XCRS)", c.id, errors.ErrUnsupported)
	}
	var x xcrs
	if _, err := ioctlR(c.fd, nrGetXCRS, &x); err != nil {
		return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_XCRS: %w", c.id, err)
	}
	for i := 0; i < int(min(x.NrXCRs, maxXCRs)); i++ {
		if x.XCRs[i].XCR == xcrXCR0 {
			return x.XCRs[i].Value, nil
		}
	}
	return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_XCRS: no XCR0", c.id)
}

// SetMPState sets the vCPU's multiprocessing state (KVM_SET_MP_STATE), one
// of the MPState* constants. Requires CreateIRQChip.
func (c *VCPU) SetMPState(state uint32) error {
	s := mpState{MPState: state}
	if _, err := ioctlW(c.fd, nrSetMPState, &s); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MP_STATE %d: %w", c.id, state, err)
	}
	return nil
}

// GetMPState returns the vCPU's multiprocessing state (KVM_GET_MP_STATE).
func (c *VCPU) GetMPState() (uint32, error) {
	var s mpState
	if _, err := ioctlR(c.fd, nrGetMPState, &s); err != nil {
		return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_MP_STATE: %w", c.id, err)
	}
	return s.MPState, nil
}
