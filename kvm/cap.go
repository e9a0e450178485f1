package kvm

import "strconv"

// Cap is a KVM capability number for CheckExtension (KVM_CAP_*).
type Cap int

// Capabilities the VMM queries.
const (
	CapIRQChip            Cap = 0
	CapHLT                Cap = 1
	CapUserMemory         Cap = 3
	CapSetTSSAddr         Cap = 4
	CapExtCPUID           Cap = 7
	CapNRVCPUs            Cap = 9  // recommended maximum vCPUs per VM
	CapNRMemslots         Cap = 10 // maximum memory slots per VM
	CapPIT                Cap = 11
	CapMPState            Cap = 14
	CapSyncMMU            Cap = 16
	CapIRQRouting         Cap = 25
	CapIRQFD              Cap = 32
	CapPIT2               Cap = 33
	CapIOEventFD          Cap = 36
	CapSetIdentityMapAddr Cap = 37
	CapAdjustClock        Cap = 39
	CapVCPUEvents         Cap = 41
	CapDebugRegs          Cap = 50
	CapXSave              Cap = 55
	CapXCRS               Cap = 56
	CapTSCControl         Cap = 60
	CapGetTSCKHz          Cap = 61
	CapMaxVCPUs           Cap = 66
	CapTSCDeadlineTimer   Cap = 72
	CapSignalMSI          Cap = 77
	CapCheckExtensionVM   Cap = 105
	CapSplitIRQChip       Cap = 121
	CapIOEventFDAnyLength Cap = 122
	CapMaxVCPUID          Cap = 128
	CapX2APICAPI          Cap = 129
	CapImmediateExit      Cap = 136
	CapBinaryStatsFD      Cap = 203 // KVM_GET_STATS_FD (Linux 5.14+)
	CapSystemEventData    Cap = 215
)

// capName returns the kernel name of a known capability, or "".
func capName(c Cap) string {
	switch c {
	case CapIRQChip:
		return "KVM_CAP_IRQCHIP"
	case CapHLT:
		return "KVM_CAP_HLT"
	case CapUserMemory:
		return "KVM_CAP_USER_MEMORY"
	case CapSetTSSAddr:
		return "KVM_CAP_SET_TSS_ADDR"
	case CapExtCPUID:
		return "KVM_CAP_EXT_CPUID"
	case CapNRVCPUs:
		return "KVM_CAP_NR_VCPUS"
	case CapNRMemslots:
		return "KVM_CAP_NR_MEMSLOTS"
	case CapPIT:
		return "KVM_CAP_PIT"
	case CapMPState:
		return "KVM_CAP_MP_STATE"
	case CapSyncMMU:
		return "KVM_CAP_SYNC_MMU"
	case CapIRQRouting:
		return "KVM_CAP_IRQ_ROUTING"
	case CapIRQFD:
		return "KVM_CAP_IRQFD"
	case CapPIT2:
		return "KVM_CAP_PIT2"
	case CapIOEventFD:
		return "KVM_CAP_IOEVENTFD"
	case CapSetIdentityMapAddr:
		return "KVM_CAP_SET_IDENTITY_MAP_ADDR"
	case CapAdjustClock:
		return "KVM_CAP_ADJUST_CLOCK"
	case CapVCPUEvents:
		return "KVM_CAP_VCPU_EVENTS"
	case CapDebugRegs:
		return "KVM_CAP_DEBUGREGS"
	case CapXSave:
		return "KVM_CAP_XSAVE"
	case CapXCRS:
		return "KVM_CAP_XCRS"
	case CapTSCControl:
		return "KVM_CAP_TSC_CONTROL"
	case CapGetTSCKHz:
		return "KVM_CAP_GET_TSC_KHZ"
	case CapMaxVCPUs:
		return "KVM_CAP_MAX_VCPUS"
	case CapTSCDeadlineTimer:
		return "KVM_CAP_TSC_DEADLINE_TIMER"
	case CapSignalMSI:
		return "KVM_CAP_SIGNAL_MSI"
	case CapCheckExtensionVM:
		return "KVM_CAP_CHECK_EXTENSION_VM"
	case CapSplitIRQChip:
		return "KVM_CAP_SPLIT_IRQCHIP"
	case CapIOEventFDAnyLength:
		return "KVM_CAP_IOEVENTFD_ANY_LENGTH"
	case CapMaxVCPUID:
		return "KVM_CAP_MAX_VCPU_ID"
	case CapX2APICAPI:
		return "KVM_CAP_X2APIC_API"
	case CapImmediateExit:
		return "KVM_CAP_IMMEDIATE_EXIT"
	case CapBinaryStatsFD:
		return "KVM_CAP_BINARY_STATS_FD"
	case CapSystemEventData:
		return "KVM_CAP_SYSTEM_EVENT_DATA"
	}
	return ""
}

// String returns the kernel's name for the capability.
func (c Cap) String() string {
	if n := capName(c); n != "" {
		return n
	}
	return "KVM_CAP_" + strconv.Itoa(int(c))
}
