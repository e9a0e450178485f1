package kvm

// This file mirrors the kernel structures (linux/kvm.h, asm/kvm.h) that are
// passed by pointer to KVM ioctls. kvm_test.go checks every size against the
// kernel's headers; types.go holds the register structures.

// CPUIDEntry mirrors struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32 // CPUIDFlag*
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUID entry flags (KVM_CPUID_FLAG_*).
const (
	CPUIDFlagSignificantIndex = 1 << 0 // the entry depends on Index (ECX input)
)

// MSR is one model-specific register for GetMSRs and SetMSRs.
type MSR struct {
	Index uint32
	Data  uint64
}

// FPU mirrors struct kvm_fpu (legacy x87/SSE state in FXSAVE layout).
type FPU struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8 // abridged tag word, FXSAVE format
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

// LAPICState mirrors struct kvm_lapic_state: the local APIC register page
// (KVM_APIC_REG_SIZE bytes, registers at their MMIO offsets).
type LAPICState struct {
	Regs [1024]byte
}

// RouteKind is the type of a GSI routing entry.
type RouteKind uint32

// Routing entry kinds (KVM_IRQ_ROUTING_*).
const (
	RouteIRQChip RouteKind = 1 // a pin of the in-kernel PIC or IOAPIC
	RouteMSI     RouteKind = 2 // an MSI message
)

// In-kernel interrupt controllers addressed by RouteIRQChip entries
// (KVM_IRQCHIP_*), with their pin counts.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2

	picPins    = 8
	ioapicPins = 24 // KVM_IOAPIC_NUM_PINS
)

// IRQRoute is one entry of the GSI routing table: GSI is delivered either to
// IRQChip/Pin (RouteIRQChip) or as the MSI message MSIAddr/MSIData (RouteMSI).
type IRQRoute struct {
	GSI     uint32
	Kind    RouteKind
	IRQChip uint32
	Pin     uint32
	MSIAddr uint64
	MSIData uint32
}

// MP states for SetMPState (KVM_MP_STATE_*).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// Exit reasons (KVM_EXIT_*) that Run decodes.
const (
	exitUnknown       = 0
	exitIO            = 2
	exitHLT           = 5
	exitMMIO          = 6
	exitShutdown      = 8
	exitFailEntry     = 9
	exitIntr          = 10
	exitInternalError = 17
	exitSystemEvent   = 24

	exitIOIn  = 0 // KVM_EXIT_IO_IN
	exitIOOut = 1 // KVM_EXIT_IO_OUT
)

// Offsets into struct kvm_run (x86_64), checked against the kernel headers.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32 // the per-exit union
	runUnionSize     = 256

	// io
	runIODirection  = runUnion + 0
	runIOSize       = runUnion + 1
	runIOPort       = runUnion + 2
	runIOCount      = runUnion + 4
	runIODataOffset = runUnion + 8
	// mmio
	runMMIOPhysAddr = runUnion + 0
	runMMIOData     = runUnion + 8
	runMMIOLen      = runUnion + 16
	runMMIOIsWrite  = runUnion + 20
	// fail_entry
	runFailReason = runUnion + 0
	runFailCPU    = runUnion + 8
	// internal and emulation_failure
	runInternalSuberror = runUnion + 0
	runInternalNData    = runUnion + 4
	runInternalData     = runUnion + 8
	runEmulationFlags   = runUnion + 8
	runEmulationInsnLen = runUnion + 16
	runEmulationInsn    = runUnion + 17
	// system_event
	runSystemEventType  = runUnion + 0
	runSystemEventNData = runUnion + 4
	runSystemEventData  = runUnion + 8
	// hw (KVM_EXIT_UNKNOWN)
	runHWExitReason = runUnion + 0

	runMinSize = runUnion + runUnionSize // smallest kvm_run mapping Run accepts
)

const (
	maxExitData      = 16     // __u64 data[16] in internal and system_event
	maxInsnBytes     = 15     // emulation_failure.insn_bytes
	internalErrorEmu = 1      // KVM_INTERNAL_ERROR_EMULATION
	emuFlagInsnBytes = 1 << 0 // KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES

	kvmAPIVersion = 12 // KVM_API_VERSION

	memReadonly = 1 << 1 // KVM_MEM_READONLY

	pitSpeakerDummy = 1 // KVM_PIT_SPEAKER_DUMMY

	irqfdFlagDeassign = 1 << 0 // KVM_IRQFD_FLAG_DEASSIGN

	ioeventfdFlagPIO      = 1 << 1 // KVM_IOEVENTFD_FLAG_PIO
	ioeventfdFlagDeassign = 1 << 2 // KVM_IOEVENTFD_FLAG_DEASSIGN

	maxIRQRoutes   = 4096 // KVM_MAX_IRQ_ROUTES
	maxCPUIDs      = 4096 // far above KVM_MAX_CPUID_ENTRIES (256)
	maxMSRsPerCall = 4096 // bound on one GET/SET_MSRS batch
	maxXCRs        = 16   // KVM_MAX_XCRS
	xcrXCR0        = 0    // index of XCR0 in kvm_xcr
)

// userspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// irqLevel mirrors struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// irqfd mirrors struct kvm_irqfd.
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// ioeventfd mirrors struct kvm_ioeventfd.
type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// msi mirrors struct kvm_msi.
type msi struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// pitConfig mirrors struct kvm_pit_config.
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// mpState mirrors struct kvm_mp_state.
type mpState struct {
	MPState uint32
}

// xcr mirrors struct kvm_xcr.
type xcr struct {
	XCR      uint32
	Reserved uint32
	Value    uint64
}

// xcrs mirrors struct kvm_xcrs.
type xcrs struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [maxXCRs]xcr
	_      [16]uint64
}

// Headers of the flexible-array arguments, and the size of each entry.
type (
	// cpuid2Header is struct kvm_cpuid2 without its entries.
	cpuid2Header struct{ Nent, Padding uint32 }
	// msrsHeader is struct kvm_msrs without its entries.
	msrsHeader struct{ NMSRs, Pad uint32 }
	// irqRoutingHeader is struct kvm_irq_routing without its entries.
	irqRoutingHeader struct{ Nr, Flags uint32 }
)

const (
	flexHeaderSize       = 8
	cpuidEntrySize       = 40 // struct kvm_cpuid_entry2
	msrEntrySize         = 16 // struct kvm_msr_entry
	irqRoutingEntrySize  = 48 // struct kvm_irq_routing_entry
	irqRoutingTypeOffset = 4
	irqRoutingUnion      = 16
)
