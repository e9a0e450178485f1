package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// Boot GDT selectors. The 64-bit boot protocol (boot.rst, "64-bit BOOT
// PROTOCOL") requires __BOOT_CS = 0x10 and __BOOT_DS = 0x18; the PVH entry
// needs a flat 32-bit code segment, which sits after the 16-byte TSS
// descriptor.
const (
	SelectorCode64 = 0x10
	SelectorData   = 0x18
	SelectorTSS    = 0x20 // 16 bytes in long mode: slots 0x20 and 0x28
	SelectorCode32 = 0x30
)

// Descriptor flag words: access byte in bits 0..7, AVL/L/D/G in bits 12..15.
const (
	descCode64 = 0xa09b // G, L; present, DPL 0, code execute/read, accessed
	descCode32 = 0xc09b // G, D; present, DPL 0, code execute/read, accessed
	descData   = 0xc093 // G, B; present, DPL 0, data read/write, accessed
	descTSS    = 0x008b // present, DPL 0, system, busy 32/64-bit TSS
	tssLimit   = 0x67   // a TSS without I/O bitmap
)

// Control register and EFER bits.
const (
	cr0PE    = 1 << 0
	cr0ET    = 1 << 4
	cr0PG    = 1 << 31
	cr4PAE   = 1 << 5
	eferLME  = 1 << 8
	eferLMA  = 1 << 10
	rflagsR1 = 1 << 1 // reserved bit 1, always set

	pteP  = 1 << 0
	pteRW = 1 << 1
	ptePS = 1 << 7
)

// gdt returns the boot GDT's descriptors, indexed by selector/8.
func gdt() [GDTEntries]uint64 {
	return [GDTEntries]uint64{
		0,                                  // 0x00 null
		0,                                  // 0x08 unused
		descriptor(descCode64, 0, 0xfffff), // 0x10 __BOOT_CS
		descriptor(descData, 0, 0xfffff),   // 0x18 __BOOT_DS
		descriptor(descTSS, 0, tssLimit),   // 0x20 TSS, low half
		0,                                  // 0x28 TSS, high half (base 63:32 = 0)
		descriptor(descCode32, 0, 0xfffff), // 0x30 PVH 32-bit code
	}
}

// descriptor encodes a segment descriptor from its flag word, base and
// 20-bit limit.
func descriptor(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<32 |
		uint64(flags&0xf0ff)<<40 |
		uint64(limit&0xf0000)<<32 |
		uint64(base&0xffffff)<<16 |
		uint64(limit&0xffff)
}

// segment decodes descriptor d, loaded with selector sel, into the form KVM
// takes. The limit is expanded to bytes when G is set.
func segment(sel uint16, d uint64) kvm.Segment {
	limit := uint32(d&0xffff | (d>>32)&0xf0000)
	g := uint8(d >> 55 & 1)
	if g == 1 {
		limit = limit<<12 | 0xfff
	}
	return kvm.Segment{
		Base:     d>>16&0xffffff | d>>32&0xff000000,
		Limit:    limit,
		Selector: sel,
		Type:     uint8(d >> 40 & 0xf),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  uint8(d >> 47 & 1),
		AVL:      uint8(d >> 52 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        g,
	}
}

// WriteGDT writes the boot GDT at GDTAddr: null, unused, 64-bit code (0x10),
// data (0x18), TSS (0x20, 16 bytes) and 32-bit code (0x30).
func WriteGDT(mem *memory.Guest) error {
	var b [GDTEntries * 8]byte
	for i, d := range gdt() {
		binary.LittleEndian.PutUint64(b[i*8:], d)
	}
	if err := mem.WriteAt(b[:], GDTAddr); err != nil {
		return fmt.Errorf("boot: write GDT: %w", err)
	}
	return nil
}

// WritePageTables writes page tables at PML4Addr identity-mapping [0, 4 GiB)
// with 2 MiB pages (one PML4, one PDPT, PDCount page directories) and
// returns the value for CR3.
func WritePageTables(mem *memory.Guest) (cr3 uint64, err error) {
	le := binary.LittleEndian
	pml4 := make([]byte, pageSize)
	le.PutUint64(pml4, PDPTAddr|pteP|pteRW)
	pdpt := make([]byte, pageSize)
	pds := make([]byte, PDCount*pageSize)
	for i := range uint64(PDCount) {
		le.PutUint64(pdpt[i*8:], (PDAddr+i*pageSize)|pteP|pteRW)
		for j := range uint64(512) {
			le.PutUint64(pds[i*pageSize+j*8:], (i<<30|j<<21)|pteP|pteRW|ptePS)
		}
	}
	for _, t := range []struct {
		addr uint64
		b    []byte
	}{{PML4Addr, pml4}, {PDPTAddr, pdpt}, {PDAddr, pds}} {
		if err := mem.WriteAt(t.b, t.addr); err != nil {
			return 0, fmt.Errorf("boot: write page tables at %#x: %w", t.addr, err)
		}
	}
	return PML4Addr, nil
}

func gdtr() kvm.DTable { return kvm.DTable{Base: GDTAddr, Limit: GDTEntries*8 - 1} }

// LongModeSregs sets s up for the 64-bit Linux entry: segments from the boot
// GDT (CS 0x10, DS/ES/FS/GS/SS 0x18, TR 0x20), paging with the tables at
// cr3, PAE, EFER.LME|LMA. The IDT is empty: interrupts stay disabled until
// the kernel loads its own. Other fields (APIC base, LDT) are left as they
// are.
func LongModeSregs(s *kvm.Sregs, cr3 uint64) {
	g := gdt()
	data := segment(SelectorData, g[SelectorData/8])
	s.CS = segment(SelectorCode64, g[SelectorCode64/8])
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = segment(SelectorTSS, g[SelectorTSS/8])
	s.GDT = gdtr()
	s.IDT = kvm.DTable{}
	s.CR0 = cr0PE | cr0ET | cr0PG
	s.CR3 = cr3
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
}

// ProtectedModeSregs sets s up for the PVH entry (xen docs/misc/pvh.pandoc):
// flat 32-bit code (0x30) and data (0x18) segments, TR a 32-bit TSS with
// limit 0x67, CR0.PE only (paging off), CR4 and EFER clear.
func ProtectedModeSregs(s *kvm.Sregs) {
	g := gdt()
	data := segment(SelectorData, g[SelectorData/8])
	s.CS = segment(SelectorCode32, g[SelectorCode32/8])
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = segment(SelectorTSS, g[SelectorTSS/8])
	s.GDT = gdtr()
	s.IDT = kvm.DTable{}
	s.CR0 = cr0PE | cr0ET
	s.CR3 = 0
	s.CR4 = 0
	s.EFER = 0
}

// LinuxRegs returns the registers for the 64-bit Linux entry: RIP at entry,
// RSI the zero page, RSP/RBP the boot stack, interrupts disabled.
func LinuxRegs(entry, bootParams uint64) kvm.Regs {
	return kvm.Regs{
		RIP:    entry,
		RSI:    bootParams,
		RSP:    BootStackPointer,
		RBP:    BootStackPointer,
		RFLAGS: rflagsR1,
	}
}

// PVHRegs returns the registers for the PVH entry: RIP at entry32, RBX the
// start info, interrupts disabled. The ABI gives no stack.
func PVHRegs(entry32, startInfo uint64) kvm.Regs {
	return kvm.Regs{
		RIP:    entry32,
		RBX:    startInfo,
		RFLAGS: rflagsR1,
	}
}
