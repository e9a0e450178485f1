package boot

import "github.com/vmm-dev/vmm/memory"

// Guest-physical layout of an x86-64 guest. Every fixed address used by the
// loaders, the firmware tables and the machine is named here.
//
// Below 1 MiB (all in RAM, see E820Map for what the guest is told):
//
//	0x0000_0500  GDT (GDTEntries × 8 bytes)
//	0x0000_6000  PVH start info, its module list and memory map
//	0x0000_7000  Linux zero page (struct boot_params, 4 KiB)
//	0x0000_8ff0  initial stack pointer, growing down into 0x8000..0x8ff0
//	0x0000_9000  PML4, PDPT at 0xA000, four PDs at 0xB000..0xEFFF
//	0x0002_0000  kernel command line (CmdlineMax bytes)
//	0x0009_fc00  EBDA start: reserved from here to 1 MiB
//	0x000e_0000  ACPI tables (RSDP first) up to 0xF_0000
//	0x000f_fff0  reset vector stub (WriteResetVector)
//
// From 1 MiB: the kernel (bzImage protected-mode code or PVH segments), then
// free RAM; the initrd goes at the top of low RAM (PlaceInitrd).
//
// MMIO hole below 4 GiB, never RAM:
//
//	0xC000_0000..0xFE00_0000  PCI 32-bit BAR window
//	0xFEC0_0000               IOAPIC
//	0xFEE0_0000               LAPIC
//	0xFFFB_C000               KVM identity-map page (KVM_SET_IDENTITY_MAP_ADDR)
//	0xFFFB_D000               KVM TSS, 3 pages (KVM_SET_TSS_ADDR)
//
// RAM beyond LowRAMEnd continues at MMIOHoleEnd (4 GiB).
const (
	// GDTAddr is where WriteGDT puts the boot GDT.
	GDTAddr = 0x500
	// GDTEntries is the number of 8-byte GDT slots written at GDTAddr.
	GDTEntries = 7

	// PVHStartInfoAddr holds struct hvm_start_info (56 bytes).
	PVHStartInfoAddr = 0x6000
	// PVHModlistAddr holds the hvm_modlist_entry array (one entry: the initrd).
	PVHModlistAddr = 0x6040
	// PVHMemmapAddr holds the hvm_memmap_table_entry array (24 bytes each).
	PVHMemmapAddr = 0x6100
	// PVHMemmapMaxEntries bounds the PVH memory map so it ends below
	// ZeroPageAddr. Linux appends one entry of its own to the map (the ISA
	// hole) and keeps at most 128, hence 127.
	PVHMemmapMaxEntries = 127

	// ZeroPageAddr holds the Linux boot_params ("zero page").
	ZeroPageAddr = 0x7000
	// ZeroPageSize is the size of struct boot_params.
	ZeroPageSize = 0x1000

	// BootStackPointer is the initial RSP/RBP; the stack grows down towards
	// ZeroPageAddr+ZeroPageSize.
	BootStackPointer = 0x8ff0

	// PML4Addr, PDPTAddr and PDAddr hold the boot page tables: one PML4,
	// one PDPT and PDCount page directories of 2 MiB pages identity-mapping
	// [0, 4 GiB).
	PML4Addr = 0x9000
	PDPTAddr = 0xa000
	PDAddr   = 0xb000
	PDCount  = 4

	// CmdlineAddr holds the NUL-terminated kernel command line.
	CmdlineAddr = 0x20000
	// CmdlineMax is the room at CmdlineAddr, terminating NUL included.
	CmdlineMax = 4096

	// EBDAStart is where the (empty) Extended BIOS Data Area would begin;
	// [EBDAStart, HighMemStart) is reported reserved.
	EBDAStart = 0x9fc00

	// ACPIStart and ACPIEnd bound the area for the ACPI tables; the RSDP
	// comes first, at RSDPAddr, on the 16-byte boundary the legacy scan of
	// 0xE0000..0xFFFFF would find.
	ACPIStart = 0xe0000
	ACPIEnd   = 0xf0000
	RSDPAddr  = ACPIStart

	// ResetVectorAddr is where a CPU reset, or Linux's "BIOS" reboot
	// (real mode, far jump to F000:FFF0), starts executing.
	ResetVectorAddr = 0xffff0

	// HighMemStart is the first byte above the legacy 1 MiB area.
	HighMemStart = 0x100000
	// KernelLoadAddr is where the bzImage protected-mode code is copied
	// (boot protocol: "loaded at 0x100000"); PVH segments must lie at or
	// above it.
	KernelLoadAddr = HighMemStart

	// LowRAMEnd is the end of RAM below 4 GiB and the start of the MMIO hole.
	LowRAMEnd = 0xc000_0000
	// MMIOHoleEnd is the end of the MMIO hole, where high RAM resumes.
	MMIOHoleEnd = 1 << 32

	// PCIMMIOStart and PCIMMIOEnd bound the 32-bit PCI BAR window.
	PCIMMIOStart = 0xc000_0000
	PCIMMIOEnd   = 0xfe00_0000

	// IOAPICAddr is the in-kernel IOAPIC's MMIO base; LAPICAddr the LAPICs'.
	IOAPICAddr = 0xfec0_0000
	LAPICAddr  = 0xfee0_0000

	// KVMIdentityMapAddr is passed to KVM_SET_IDENTITY_MAP_ADDR (one page);
	// KVMTSSAddr to KVM_SET_TSS_ADDR (three pages).
	KVMIdentityMapAddr = 0xfffb_c000
	KVMTSSAddr         = 0xfffb_d000
)

// I/O ports and interrupt lines of the platform devices.
const (
	// COM1Port is the 16550 UART at 0x3F8..0x3FF on GSI COM1GSI.
	COM1Port    = 0x3f8
	COM1PortLen = 8
	COM1GSI     = 4

	// I8042DataPort and I8042CommandPort are the keyboard controller, used
	// only for the reset command I8042ResetCommand written to the command
	// port. Its GSI is I8042GSI.
	I8042DataPort     = 0x60
	I8042CommandPort  = 0x64
	I8042GSI          = 1
	I8042ResetCommand = 0xfe

	// ACPISleepControlPort is the hardware-reduced ACPI sleep control
	// register (1 byte). A write with ACPISleepEnable set and SLP_TYP (bits
	// 2..4) equal to ACPISleepTypeS5 requests S5 (poweroff).
	ACPISleepControlPort = 0x600
	// ACPISleepStatusPort is the sleep status register (1 byte). Before
	// entering a sleep state Linux writes ACPIWakeStatus to it to clear
	// WAK_STS, then writes the sleep control register, then polls this
	// register until WAK_STS is set; for S5 the VMM stops the VM at the
	// control write instead.
	ACPISleepStatusPort = 0x601
	// ACPIWakeStatus is WAK_STS in the sleep status register.
	ACPIWakeStatus = 1 << 7
	// ACPIResetPort is the FADT reset register (1 byte); writing
	// ACPIResetValue reboots.
	ACPIResetPort  = 0x602
	ACPIResetValue = 0x01
	// ACPISleepEnable is SLP_EN in the sleep control register.
	ACPISleepEnable = 1 << 5
	// ACPISleepTypeShift and ACPISleepTypeMask locate SLP_TYP in the sleep
	// control register.
	ACPISleepTypeShift = 2
	ACPISleepTypeMask  = 0x7 << ACPISleepTypeShift
	// ACPISleepTypeS5 is the SLP_TYP value the DSDT's \_S5_ object gives.
	ACPISleepTypeS5 = 5

	// PVPanicPort is the pvpanic device (1 byte). Reads return
	// PVPanicEvents; a write sets PVPanicPanicked and/or PVPanicCrashLoaded.
	PVPanicPort        = 0x505
	PVPanicPanicked    = 1 << 0
	PVPanicCrashLoaded = 1 << 1
	PVPanicEvents      = PVPanicPanicked | PVPanicCrashLoaded

	// BootMarkerPort is the debug port (1 byte) the guest init writes to;
	// the VMM timestamps each write.
	BootMarkerPort = 0x440

	// PCIConfigAddressPort and PCIConfigDataPort are PCI configuration
	// mechanism #1 (0xCF8..0xCFF).
	PCIConfigAddressPort = 0xcf8
	PCIConfigDataPort    = 0xcfc
	PCIConfigPortLen     = 8
)

// RAMRegions splits memSize bytes of guest RAM around the MMIO hole: up to
// LowRAMEnd from address 0, the rest from MMIOHoleEnd. memSize should be a
// multiple of the page size (memory.New rejects it otherwise); zero yields no
// regions.
func RAMRegions(memSize uint64) []memory.RegionSpec {
	switch {
	case memSize == 0:
		return nil
	case memSize <= LowRAMEnd:
		return []memory.RegionSpec{{Base: 0, Size: memSize}}
	default:
		return []memory.RegionSpec{
			{Base: 0, Size: LowRAMEnd},
			{Base: MMIOHoleEnd, Size: memSize - LowRAMEnd},
		}
	}
}
