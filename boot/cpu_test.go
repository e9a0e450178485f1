package boot

import (
	"encoding/binary"
	"testing"

	"github.com/vmm-dev/vmm/kvm"
)

// decodeDescriptor decodes an 8-byte GDT entry by the SDM's layout (Vol. 3A,
// 3.4.5 "Segment Descriptors"), independently of the package's encoder.
func decodeDescriptor(b []byte, sel uint16) kvm.Segment {
	limit := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[6]&0x0f)<<16
	base := uint64(b[2]) | uint64(b[3])<<8 | uint64(b[4])<<16 | uint64(b[7])<<24
	access, flags := b[5], b[6]>>4
	s := kvm.Segment{
		Base: base, Selector: sel,
		Type: access & 0xf, S: access >> 4 & 1, DPL: access >> 5 & 3, Present: access >> 7,
		AVL: flags & 1, L: flags >> 1 & 1, DB: flags >> 2 & 1, G: flags >> 3 & 1,
	}
	if s.G == 1 {
		limit = limit<<12 | 0xfff
	}
	s.Limit = limit
	return s
}

func readGDT(t *testing.T) []byte {
	t.Helper()
	mem := newTestMem(t, 1<<20)
	if err := WriteGDT(mem); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, GDTEntries*8)
	if err := mem.ReadAt(b, GDTAddr); err != nil {
		t.Fatal(err)
	}
	return b
}

func checkSeg(t *testing.T, name string, gdt []byte, got kvm.Segment) {
	t.Helper()
	sel := got.Selector
	if int(sel)+8 > len(gdt) || sel&7 != 0 {
		t.Fatalf("%s: selector %#x outside the GDT", name, sel)
	}
	if want := decodeDescriptor(gdt[sel:sel+8], sel); got != want {
		t.Errorf("%s: sregs %+v, GDT entry %+v", name, got, want)
	}
}

func TestLongModeSregs(t *testing.T) {
	gdt := readGDT(t)
	if binary.LittleEndian.Uint64(gdt[0:]) != 0 || binary.LittleEndian.Uint64(gdt[8:]) != 0 {
		t.Error("first two GDT entries not null")
	}
	s := kvm.Sregs{APICBase: 0xfee00900, CR0: 0x60000010}
	LongModeSregs(&s, 0x9000)
	if s.CS.Selector != 0x10 || s.DS.Selector != 0x18 || s.SS.Selector != 0x18 || s.TR.Selector != 0x20 {
		t.Errorf("selectors CS %#x DS %#x SS %#x TR %#x", s.CS.Selector, s.DS.Selector, s.SS.Selector, s.TR.Selector)
	}
	for name, seg := range map[string]kvm.Segment{"CS": s.CS, "DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS, "TR": s.TR} {
		checkSeg(t, name, gdt, seg)
	}
	// 64-bit code: L set, D clear, execute/read; data: writable; TR: busy TSS.
	if s.CS.L != 1 || s.CS.DB != 0 || s.CS.Type != 0xb || s.CS.S != 1 || s.CS.Present != 1 || s.CS.DPL != 0 {
		t.Errorf("CS %+v", s.CS)
	}
	if s.DS.Type != 0x3 || s.DS.Base != 0 || s.DS.Limit != 0xffffffff || s.DS.DB != 1 {
		t.Errorf("DS %+v", s.DS)
	}
	if s.TR.Type != 0xb || s.TR.S != 0 || s.TR.Limit != 0x67 || s.TR.Present != 1 {
		t.Errorf("TR %+v", s.TR)
	}
	if binary.LittleEndian.Uint64(gdt[0x28:]) != 0 {
		t.Error("upper half of the 64-bit TSS descriptor not zero")
	}
	if s.GDT.Base != GDTAddr || s.GDT.Limit != GDTEntries*8-1 {
		t.Errorf("GDTR %+v", s.GDT)
	}
	if s.CR0 != 0x80000011 || s.CR3 != 0x9000 || s.CR4 != 0x20 || s.EFER != 0x500 {
		t.Errorf("CR0 %#x CR3 %#x CR4 %#x EFER %#x", s.CR0, s.CR3, s.CR4, s.EFER)
	}
	if s.APICBase != 0xfee00900 {
		t.Error("APIC base changed")
	}
}

func TestProtectedModeSregs(t *testing.T) {
	gdt := readGDT(t)
	s := kvm.Sregs{CR3: 0x1234, CR4: 0x20, EFER: 0x500, CR0: 0x80000011}
	ProtectedModeSregs(&s)
	for name, seg := range map[string]kvm.Segment{"CS": s.CS, "DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS, "TR": s.TR} {
		checkSeg(t, name, gdt, seg)
	}
	// PVH ABI: 32-bit flat code and data, TSS base 0 limit 0x67.
	if s.CS.L != 0 || s.CS.DB != 1 || s.CS.Base != 0 || s.CS.Limit != 0xffffffff || s.CS.Type != 0xb {
		t.Errorf("CS %+v", s.CS)
	}
	if s.SS.DB != 1 || s.SS.Limit != 0xffffffff || s.SS.Type != 3 {
		t.Errorf("SS %+v", s.SS)
	}
	if s.TR.Base != 0 || s.TR.Limit != 0x67 || s.TR.Type != 0xb {
		t.Errorf("TR %+v", s.TR)
	}
	if s.CR0&1 != 1 || s.CR0&0x80000000 != 0 || s.CR3 != 0 || s.CR4 != 0 || s.EFER != 0 {
		t.Errorf("CR0 %#x CR3 %#x CR4 %#x EFER %#x", s.CR0, s.CR3, s.CR4, s.EFER)
	}
}

// translate walks the 4-level tables in guest memory for a virtual address.
func translate(t *testing.T, read func(uint64) uint64, cr3, va uint64) (uint64, bool) {
	const addrMask = 0x000f_ffff_ffff_f000
	pml4e := read(cr3&addrMask + (va>>39&511)*8)
	if pml4e&1 == 0 {
		return 0, false
	}
	pdpte := read(pml4e&addrMask + (va>>30&511)*8)
	if pdpte&1 == 0 {
		return 0, false
	}
	if pdpte&0x80 != 0 {
		t.Fatalf("unexpected 1 GiB page for %#x", va)
	}
	pde := read(pdpte&addrMask + (va>>21&511)*8)
	if pde&1 == 0 || pde&2 == 0 {
		return 0, false
	}
	if pde&0x80 == 0 {
		t.Fatalf("expected a 2 MiB page for %#x", va)
	}
	return pde&0x000f_ffff_ffe0_0000 | va&0x1f_ffff, true
}

func TestWritePageTables(t *testing.T) {
	mem := newTestMem(t, 1<<20)
	cr3, err := WritePageTables(mem)
	if err != nil {
		t.Fatal(err)
	}
	if cr3 != 0x9000 {
		t.Errorf("cr3 %#x", cr3)
	}
	read := func(a uint64) uint64 {
		v, err := mem.Uint64(a)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for va := uint64(0); va < 1<<32; va += 0x1f_f001 { // walks every 2 MiB page, various offsets
		if pa, ok := translate(t, read, cr3, va); !ok || pa != va {
			t.Fatalf("%#x -> %#x, %v", va, pa, ok)
		}
	}
	for _, va := range []uint64{0, 0x7000, 0x100200, LAPICAddr, IOAPICAddr, 0xffff_ffff} {
		if pa, ok := translate(t, read, cr3, va); !ok || pa != va {
			t.Errorf("%#x -> %#x, %v", va, pa, ok)
		}
	}
	if _, ok := translate(t, read, cr3, 1<<32); ok {
		t.Error("4 GiB is mapped")
	}
	// The tables lie below the command line and above the zero page and stack.
	if PDAddr+PDCount*0x1000 > CmdlineAddr || PML4Addr < ZeroPageAddr+ZeroPageSize || BootStackPointer >= PML4Addr {
		t.Error("page tables overlap other boot structures")
	}
}

func TestRegs(t *testing.T) {
	r := LinuxRegs(0x100200, ZeroPageAddr)
	if r.RIP != 0x100200 || r.RSI != 0x7000 || r.RFLAGS != 2 || r.RSP != BootStackPointer || r.RBP != BootStackPointer {
		t.Errorf("%+v", r)
	}
	r = PVHRegs(0x1000850, PVHStartInfoAddr)
	if r.RIP != 0x1000850 || r.RBX != PVHStartInfoAddr || r.RFLAGS != 2 || r.RSI != 0 {
		t.Errorf("%+v", r)
	}
}
