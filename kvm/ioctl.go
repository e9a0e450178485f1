package kvm

// Linux ioctl request encoding (include/uapi/asm-generic/ioctl.h, which x86
// uses): bits 0-7 number, 8-15 type, 16-29 argument size, 30-31 direction.
const (
	iocNRBits   = 8
	iocTypeBits = 8
	iocSizeBits = 14

	iocNRShift   = 0
	iocTypeShift = iocNRShift + iocNRBits
	iocSizeShift = iocTypeShift + iocTypeBits
	iocDirShift  = iocSizeShift + iocSizeBits

	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	// kvmIO is KVMIO, the ioctl type byte of every KVM request.
	kvmIO = 0xAE
)

// ioc builds a KVM request number the way the kernel's _IOC macro does.
func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | size<<iocSizeShift | kvmIO<<iocTypeShift | nr<<iocNRShift
}

// io is _IO(KVMIO, nr): no argument or an integer argument.
func io(nr uintptr) uintptr { return ioc(iocNone, nr, 0) }

// ior is _IOR(KVMIO, nr, T) for an argument of size bytes the kernel fills.
func ior(nr, size uintptr) uintptr { return ioc(iocRead, nr, size) }

// iow is _IOW(KVMIO, nr, T) for an argument of size bytes the kernel reads.
func iow(nr, size uintptr) uintptr { return ioc(iocWrite, nr, size) }

// iowr is _IOWR(KVMIO, nr, T) for an argument read and written by the kernel.
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }

// reqSize extracts the argument size encoded in a request number.
func reqSize(req uintptr) uintptr { return req >> iocSizeShift & (1<<iocSizeBits - 1) }

// Request numbers (the nr byte of each KVM ioctl; linux/kvm.h). The full
// request is built at the call site from the direction and the Go type of the
// argument, so its size field always matches what is passed.
const (
	nrGetAPIVersion       = 0x00 // KVM_GET_API_VERSION, _IO
	nrCreateVM            = 0x01 // KVM_CREATE_VM, _IO
	nrCheckExtension      = 0x03 // KVM_CHECK_EXTENSION, _IO
	nrGetVCPUMmapSize     = 0x04 // KVM_GET_VCPU_MMAP_SIZE, _IO
	nrGetSupportedCPUID   = 0x05 // KVM_GET_SUPPORTED_CPUID, _IOWR kvm_cpuid2
	nrCreateVCPU          = 0x41 // KVM_CREATE_VCPU, _IO
	nrSetUserMemoryRegion = 0x46 // KVM_SET_USER_MEMORY_REGION, _IOW kvm_userspace_memory_region
	nrSetTSSAddr          = 0x47 // KVM_SET_TSS_ADDR, _IO
	nrSetIdentityMapAddr  = 0x48 // KVM_SET_IDENTITY_MAP_ADDR, _IOW __u64
	nrCreateIRQChip       = 0x60 // KVM_CREATE_IRQCHIP, _IO
	nrIRQLine             = 0x61 // KVM_IRQ_LINE, _IOW kvm_irq_level
	nrSetGSIRouting       = 0x6a // KVM_SET_GSI_ROUTING, _IOW kvm_irq_routing
	nrIRQFD               = 0x76 // KVM_IRQFD, _IOW kvm_irqfd
	nrCreatePIT2          = 0x77 // KVM_CREATE_PIT2, _IOW kvm_pit_config
	nrIOEventFD           = 0x79 // KVM_IOEVENTFD, _IOW kvm_ioeventfd
	nrRun                 = 0x80 // KVM_RUN, _IO
	nrGetRegs             = 0x81 // KVM_GET_REGS, _IOR kvm_regs
	nrSetRegs             = 0x82 // KVM_SET_REGS, _IOW kvm_regs
	nrGetSregs            = 0x83 // KVM_GET_SREGS, _IOR kvm_sregs
	nrSetSregs            = 0x84 // KVM_SET_SREGS, _IOW kvm_sregs
	nrGetMSRs             = 0x88 // KVM_GET_MSRS, _IOWR kvm_msrs
	nrSetMSRs             = 0x89 // KVM_SET_MSRS, _IOW kvm_msrs
	nrGetFPU              = 0x8c // KVM_GET_FPU, _IOR kvm_fpu
	nrSetFPU              = 0x8d // KVM_SET_FPU, _IOW kvm_fpu
	nrGetLAPIC            = 0x8e // KVM_GET_LAPIC, _IOR kvm_lapic_state
	nrSetLAPIC            = 0x8f // KVM_SET_LAPIC, _IOW kvm_lapic_state
	nrSetCPUID2           = 0x90 // KVM_SET_CPUID2, _IOW kvm_cpuid2
	nrGetMPState          = 0x98 // KVM_GET_MP_STATE, _IOR kvm_mp_state
	nrSetMPState          = 0x99 // KVM_SET_MP_STATE, _IOW kvm_mp_state
	nrSignalMSI           = 0xa5 // KVM_SIGNAL_MSI, _IOW kvm_msi
	nrGetXCRS             = 0xa6 // KVM_GET_XCRS, _IOR kvm_xcrs
	nrSetXCRS             = 0xa7 // KVM_SET_XCRS, _IOW kvm_xcrs
	nrGetStatsFD          = 0xce // KVM_GET_STATS_FD, _IO
)
