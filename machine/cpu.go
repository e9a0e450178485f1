package machine

import (
	"fmt"
	"math/bits"

	"github.com/vmm-dev/vmm/kvm"
)

// CPUID leaves and bits the VMM adjusts (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3, appendix E).
const (
	leafFeatures     = 0x1
	leafCacheParams  = 0x4
	leafTopology     = 0xB
	leafTopologyV2   = 0x1F
	leafExtFeatures  = 0x80000001
	leafAMDSizes     = 0x80000008
	leafAMDTopology  = 0x8000001E
	ecxHypervisor    = 1 << 31
	ecxTSCDeadline   = 1 << 24
	edxHTT           = 1 << 28
	ecxAMDTopoExt    = 1 << 22
	cpuidFlagIndexed = 1 // KVM_CPUID_FLAG_SIGNIFCANT_INDEX
)

// vcpuCPUID derives vCPU id's CPUID table from what KVM supports: the APIC
// ID and package topology describe ncpus single-threaded cores in one
// socket, and the hypervisor bit is set so the guest looks for the KVM leaves
// (0x40000000: kvm-clock and friends), which KVM reports itself.
func vcpuCPUID(supported []kvm.CPUIDEntry, id, ncpus int, tscDeadline bool) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(supported)+3)
	maxBasic := uint32(0)
	for _, e := range supported {
		if e.Function == 0 {
			maxBasic = e.EAX
		}
	}
	coreBits := uint32(bits.Len(uint(ncpus - 1)))
	for _, e := range supported {
		switch e.Function {
		case leafFeatures:
			e.EBX = uint32(id)<<24 | uint32(ncpus)<<16 | 8<<8 | e.EBX&0xFF
			e.ECX |= ecxHypervisor
			if tscDeadline {
				e.ECX |= ecxTSCDeadline
			}
			if ncpus > 1 {
				e.EDX |= edxHTT
			}
		case leafCacheParams:
			e.EAX = e.EAX&0x03FFFFFF | uint32(ncpus-1)<<26
		case leafTopology, leafTopologyV2, leafAMDTopology:
			continue // rewritten below / hidden
		case leafExtFeatures:
			e.ECX &^= ecxAMDTopoExt
		case leafAMDSizes:
			e.ECX = e.ECX&^0xF0FF | coreBits<<12 | uint32(ncpus-1)
		}
		out = append(out, e)
	}
	if maxBasic >= leafTopology {
		apic := uint32(id)
		out = append(out,
			// SMT level: one thread per core.
			kvm.CPUIDEntry{Function: leafTopology, Index: 0, Flags: cpuidFlagIndexed, EAX: 0, EBX: 1, ECX: 1 << 8, EDX: apic},
			// Core level: ncpus cores per package.
			kvm.CPUIDEntry{Function: leafTopology, Index: 1, Flags: cpuidFlagIndexed, EAX: coreBits, EBX: uint32(ncpus), ECX: 2<<8 | 1, EDX: apic},
			// End of enumeration.
			kvm.CPUIDEntry{Function: leafTopology, Index: 2, Flags: cpuidFlagIndexed, ECX: 2, EDX: apic},
		)
	}
	return out
}

// MSRs written at reset, as a BIOS would leave them.
const (
	msrSysenterCS   = 0x174
	msrSysenterESP  = 0x175
	msrSysenterEIP  = 0x176
	msrSTAR         = 0xC0000081
	msrLSTAR        = 0xC0000082
	msrCSTAR        = 0xC0000083
	msrSyscallMask  = 0xC0000084
	msrKernelGSBase = 0xC0000102
	msrTSC          = 0x10
	msrMiscEnable   = 0x1A0
	msrMTRRDefType  = 0x2FF

	miscEnableFastStrings = 1
	mtrrEnableWriteBack   = 1<<11 | 6
)

func bootMSRs() []kvm.MSR {
	return []kvm.MSR{
		{Index: msrSysenterCS}, {Index: msrSysenterESP}, {Index: msrSysenterEIP},
		{Index: msrSTAR}, {Index: msrLSTAR}, {Index: msrCSTAR}, {Index: msrSyscallMask},
		{Index: msrKernelGSBase}, {Index: msrTSC},
		{Index: msrMiscEnable, Data: miscEnableFastStrings},
		{Index: msrMTRRDefType, Data: mtrrEnableWriteBack},
	}
}

// Local APIC register offsets and delivery modes (Intel SDM vol. 3A, 11.5.1).
const (
	lapicLVT0      = 0x350
	lapicLVT1      = 0x360
	deliveryNMI    = 4
	deliveryExtInt = 7
)

func setLVT(s *kvm.LAPICState, reg int, mode uint32) {
	v := uint32(s.Regs[reg]) | uint32(s.Regs[reg+1])<<8 | uint32(s.Regs[reg+2])<<16 | uint32(s.Regs[reg+3])<<24
	v = v&^0x700 | mode<<8
	s.Regs[reg], s.Regs[reg+1], s.Regs[reg+2], s.Regs[reg+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// configureVCPU sets the state every vCPU needs before its first run:
// CPUID, MSRs, FPU and the local APIC's LINT pins (ExtINT and NMI, as a
// BIOS leaves them). Registers of the boot vCPU are set separately.
func configureVCPU(c *kvm.VCPU, cpuid []kvm.CPUIDEntry) error {
	if err := c.SetCPUID2(cpuid); err != nil {
		return fmt.Errorf("vcpu %d: set cpuid: %w", c.ID(), err)
	}
	if err := c.SetMSRs(bootMSRs()); err != nil {
		return fmt.Errorf("vcpu %d: set msrs: %w", c.ID(), err)
	}
	fpu := kvm.FPU{FCW: 0x37F, MXCSR: 0x1F80}
	if err := c.SetFPU(&fpu); err != nil {
		return fmt.Errorf("vcpu %d: set fpu: %w", c.ID(), err)
	}
	lapic, err := c.GetLAPIC()
	if err != nil {
		return fmt.Errorf("vcpu %d: get lapic: %w", c.ID(), err)
	}
	setLVT(&lapic, lapicLVT0, deliveryExtInt)
	setLVT(&lapic, lapicLVT1, deliveryNMI)
	if err := c.SetLAPIC(&lapic); err != nil {
		return fmt.Errorf("vcpu %d: set lapic: %w", c.ID(), err)
	}
	return nil
}
