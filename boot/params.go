package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vmm-dev/vmm/memory"
)

// E820 address range types (ACPI "System Address Map Interfaces"), also used
// by the PVH memory map.
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
	E820NVS      = 4
	E820Unusable = 5
)

// E820Entry is one range of the guest's physical memory map.
type E820Entry struct {
	Addr uint64
	Size uint64
	Type uint32
}

// ErrInitrdDoesNotFit: no room for the initrd between the kernel and the
// highest address it may occupy.
var ErrInitrdDoesNotFit = errors.New("boot: initrd does not fit")

// Zero page (struct boot_params) offsets outside the setup header, from
// Documentation/arch/x86/zero-page.rst.
const (
	zpACPIRSDPAddr     = 0x070 // u64
	zpExtRamdiskImage  = 0x0c0 // u32, bits 32..63 of ramdisk_image
	zpExtRamdiskSize   = 0x0c4 // u32, bits 32..63 of ramdisk_size
	zpExtCmdLinePtr    = 0x0c8 // u32, bits 32..63 of cmd_line_ptr
	zpE820Entries      = 0x1e8 // u8
	zpSentinel         = 0x1ef // u8, must stay 0 or the kernel clears ext_*
	zpE820Table        = 0x2d0 // 128 × struct boot_e820_entry
	zpE820EntrySize    = 20
	zpE820MaxEntries   = 128
	typeOfLoaderUndef  = 0xff   // "undefined" boot loader (no assigned ID)
	vidModeNormal      = 0xffff // "normal" VGA mode: ask nothing
	pageSize           = 0x1000
	pvhStartInfoMagic  = 0x336ec578
	pvhStartInfoVer    = 1 // has memmap_paddr/memmap_entries
	pvhStartInfoSize   = 56
	pvhModlistEntrySz  = 32
	pvhMemmapEntrySize = 24
)

// LinuxParams describes the machine to a bzImage kernel.
type LinuxParams struct {
	// CmdlineAddr and CmdlineLen locate the command line written by
	// WriteCmdline (CmdlineLen excludes the NUL). CmdlineAddr 0: none.
	CmdlineAddr uint64
	CmdlineLen  int
	// InitrdAddr and InitrdSize locate the initrd; InitrdSize 0: none.
	InitrdAddr, InitrdSize uint64
	// E820 is the memory map (1..128 entries), usually E820Map's.
	E820 []E820Entry
	// RSDPAddr is the ACPI RSDP's address; 0: none (the kernel then scans
	// 0xE0000..0xFFFFF).
	RSDPAddr uint64
}

// WriteBootParams writes the zero page at ZeroPageAddr: the image's setup
// header, patched with what a boot loader must fill in, plus the memory map
// and the RSDP address.
func WriteBootParams(mem *memory.Guest, k *BzImage, p LinuxParams) error {
	if k == nil || len(k.RawHeader) < hdrEnd212-hdrStart || len(k.RawHeader) > hdrMaxEnd-hdrStart {
		return fmt.Errorf("boot: zero page: no valid setup header")
	}
	if len(p.E820) == 0 || len(p.E820) > zpE820MaxEntries {
		return fmt.Errorf("boot: zero page: %d e820 entries (1..%d)", len(p.E820), zpE820MaxEntries)
	}
	if p.CmdlineAddr != 0 {
		if p.CmdlineLen < 0 || uint64(p.CmdlineLen) > uint64(k.CmdlineSize) {
			return fmt.Errorf("boot: zero page: command line of %d bytes, kernel accepts %d", p.CmdlineLen, k.CmdlineSize)
		}
		if !mem.Contains(p.CmdlineAddr, uint64(p.CmdlineLen)+1) {
			return fmt.Errorf("boot: zero page: command line at %#x+%d is not in RAM", p.CmdlineAddr, p.CmdlineLen+1)
		}
	}
	if p.InitrdSize != 0 {
		if !mem.Contains(p.InitrdAddr, p.InitrdSize) {
			return fmt.Errorf("boot: zero page: initrd [%#x+%#x) is not in RAM", p.InitrdAddr, p.InitrdSize)
		}
		last := p.InitrdAddr + p.InitrdSize - 1
		if k.Header.XLoadFlags&XLFCanBeLoadedAbove4G == 0 && last > k.InitrdAddrMax {
			return fmt.Errorf("%w: initrd ends at %#x, above initrd_addr_max %#x", ErrInitrdDoesNotFit, last, k.InitrdAddrMax)
		}
	}

	zp := make([]byte, ZeroPageSize)
	le := binary.LittleEndian
	copy(zp[hdrStart:], k.RawHeader)
	zp[hdrTypeOfLoader] = typeOfLoaderUndef
	zp[hdrLoadFlags] |= LoadFlagLoadedHigh
	zp[hdrLoadFlags] &^= LoadFlagKASLR
	if k.KASLR {
		zp[hdrLoadFlags] |= LoadFlagKASLR
	}
	le.PutUint16(zp[hdrVidMode:], vidModeNormal)
	le.PutUint32(zp[hdrCmdLinePtr:], uint32(p.CmdlineAddr))
	le.PutUint32(zp[zpExtCmdLinePtr:], uint32(p.CmdlineAddr>>32))
	if p.InitrdSize != 0 {
		le.PutUint32(zp[hdrRamdiskImage:], uint32(p.InitrdAddr))
		le.PutUint32(zp[zpExtRamdiskImage:], uint32(p.InitrdAddr>>32))
		le.PutUint32(zp[hdrRamdiskSize:], uint32(p.InitrdSize))
		le.PutUint32(zp[zpExtRamdiskSize:], uint32(p.InitrdSize>>32))
	}
	le.PutUint64(zp[zpACPIRSDPAddr:], p.RSDPAddr)
	zp[zpE820Entries] = uint8(len(p.E820))
	for i, e := range p.E820 {
		b := zp[zpE820Table+i*zpE820EntrySize:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type)
	}
	if err := mem.WriteAt(zp, ZeroPageAddr); err != nil {
		return fmt.Errorf("boot: write zero page: %w", err)
	}
	return nil
}

// PVHParams describes the machine to a kernel started through the PVH entry.
type PVHParams struct {
	// CmdlineAddr is the NUL-terminated command line; 0: none.
	CmdlineAddr uint64
	// InitrdAddr and InitrdSize locate the initrd, passed as the only
	// module; InitrdSize 0: none.
	InitrdAddr, InitrdSize uint64
	// E820 is the memory map (1..PVHMemmapMaxEntries entries).
	E820 []E820Entry
	// RSDPAddr is the ACPI RSDP's address; 0: none.
	RSDPAddr uint64
}

// WritePVHStartInfo writes struct hvm_start_info (version 1) at
// PVHStartInfoAddr with its module list and memory map, following
// xen/include/public/arch-x86/hvm/start_info.h, and returns its address for
// RBX.
func WritePVHStartInfo(mem *memory.Guest, p PVHParams) (startInfoAddr uint64, err error) {
	if len(p.E820) == 0 || len(p.E820) > PVHMemmapMaxEntries {
		return 0, fmt.Errorf("boot: PVH start info: %d memory map entries (1..%d)", len(p.E820), PVHMemmapMaxEntries)
	}
	if p.InitrdSize != 0 && !mem.Contains(p.InitrdAddr, p.InitrdSize) {
		return 0, fmt.Errorf("boot: PVH start info: initrd [%#x+%#x) is not in RAM", p.InitrdAddr, p.InitrdSize)
	}
	if p.CmdlineAddr != 0 && !mem.Contains(p.CmdlineAddr, 1) {
		return 0, fmt.Errorf("boot: PVH start info: command line at %#x is not in RAM", p.CmdlineAddr)
	}
	le := binary.LittleEndian
	mm := make([]byte, len(p.E820)*pvhMemmapEntrySize)
	for i, e := range p.E820 {
		b := mm[i*pvhMemmapEntrySize:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type)
	}
	if err := mem.WriteAt(mm, PVHMemmapAddr); err != nil {
		return 0, fmt.Errorf("boot: write PVH memory map: %w", err)
	}

	si := make([]byte, pvhStartInfoSize)
	le.PutUint32(si[0:], pvhStartInfoMagic)
	le.PutUint32(si[4:], pvhStartInfoVer)
	// flags (8) stay 0.
	if p.InitrdSize != 0 {
		mod := make([]byte, pvhModlistEntrySz)
		le.PutUint64(mod[0:], p.InitrdAddr)
		le.PutUint64(mod[8:], p.InitrdSize)
		if err := mem.WriteAt(mod, PVHModlistAddr); err != nil {
			return 0, fmt.Errorf("boot: write PVH module list: %w", err)
		}
		le.PutUint32(si[12:], 1)
		le.PutUint64(si[16:], PVHModlistAddr)
	}
	le.PutUint64(si[24:], p.CmdlineAddr)
	le.PutUint64(si[32:], p.RSDPAddr)
	le.PutUint64(si[40:], PVHMemmapAddr)
	le.PutUint32(si[48:], uint32(len(p.E820)))
	if err := mem.WriteAt(si, PVHStartInfoAddr); err != nil {
		return 0, fmt.Errorf("boot: write PVH start info: %w", err)
	}
	return PVHStartInfoAddr, nil
}

// WriteCmdline writes cmdline and its terminating NUL at addr. max is the
// room at addr, NUL included: for a bzImage min(CmdlineMax,
// BzImage.CmdlineSize+1). A command line with a NUL byte is rejected.
func WriteCmdline(mem *memory.Guest, addr uint64, cmdline string, max int) error {
	if strings.IndexByte(cmdline, 0) >= 0 {
		return fmt.Errorf("boot: command line contains a NUL byte")
	}
	if max < 1 || len(cmdline) > max-1 {
		return fmt.Errorf("boot: command line of %d bytes exceeds the %d bytes allowed", len(cmdline), max-1)
	}
	b := make([]byte, len(cmdline)+1)
	copy(b, cmdline)
	if err := mem.WriteAt(b, addr); err != nil {
		return fmt.Errorf("boot: write command line: %w", err)
	}
	return nil
}

// E820Map describes guest RAM to the kernel: RAM below EBDAStart usable,
// [EBDAStart, 1 MiB) reserved (the ACPI tables live there), RAM from 1 MiB
// usable, plus the pages KVM uses for its TSS and identity map reserved.
// Entries come sorted by address.
func E820Map(regions []memory.Region) []E820Entry {
	var m []E820Entry
	add := func(start, end uint64, typ uint32) {
		if end > start {
			m = append(m, E820Entry{Addr: start, Size: end - start, Type: typ})
		}
	}
	for _, r := range regions {
		start, end := r.Base, r.End()
		add(start, min(end, EBDAStart), E820RAM)
		add(max(start, EBDAStart), min(end, HighMemStart), E820Reserved)
		add(max(start, HighMemStart), end, E820RAM)
	}
	add(KVMIdentityMapAddr, KVMTSSAddr+kvmTSSPages*pageSize, E820Reserved)
	slices.SortFunc(m, func(a, b E820Entry) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	return m
}

// kvmTSSPages is the size of KVM's TSS area at KVMTSSAddr.
const kvmTSSPages = 3

// PlaceInitrd returns where to put an initrd of size bytes: the highest
// page-aligned address such that it ends at or below min(initrdAddrMax+1,
// the top of the RAM region holding kernelEnd, LowRAMEnd) and starts at or
// above kernelEnd.
func PlaceInitrd(regions []memory.Region, kernelEnd, initrdAddrMax, size uint64) (uint64, error) {
	if size == 0 {
		return 0, fmt.Errorf("%w: empty initrd", ErrInitrdDoesNotFit)
	}
	var top uint64
	found := false
	for _, r := range regions {
		if kernelEnd >= r.Base && kernelEnd <= r.End() {
			top, found = r.End(), true
			break
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: kernel end %#x is not in RAM", ErrInitrdDoesNotFit, kernelEnd)
	}
	top = min(top, LowRAMEnd)
	if initrdAddrMax < top {
		top = initrdAddrMax + 1 // no overflow: initrdAddrMax < top <= LowRAMEnd
	}
	if size > top {
		return 0, fmt.Errorf("%w: %d bytes below %#x", ErrInitrdDoesNotFit, size, top)
	}
	addr := (top - size) &^ (pageSize - 1)
	if addr < kernelEnd {
		return 0, fmt.Errorf("%w: %d bytes between the kernel end %#x and %#x", ErrInitrdDoesNotFit, size, kernelEnd, top)
	}
	return addr, nil
}
