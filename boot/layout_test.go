package boot

import (
	"sort"
	"testing"
)

// TestLayoutDisjoint checks that the fixed boot structures below 1 MiB do
// not overlap and stay inside usable RAM or the reserved area as intended.
func TestLayoutDisjoint(t *testing.T) {
	type area struct {
		name       string
		start, end uint64
	}
	areas := []area{
		{"GDT", GDTAddr, GDTAddr + GDTEntries*8},
		{"PVH start info", PVHStartInfoAddr, PVHStartInfoAddr + pvhStartInfoSize},
		{"PVH module list", PVHModlistAddr, PVHModlistAddr + pvhModlistEntrySz},
		{"PVH memory map", PVHMemmapAddr, PVHMemmapAddr + PVHMemmapMaxEntries*pvhMemmapEntrySize},
		{"zero page", ZeroPageAddr, ZeroPageAddr + ZeroPageSize},
		{"boot stack", ZeroPageAddr + ZeroPageSize, BootStackPointer + 16},
		{"PML4", PML4Addr, PML4Addr + pageSize},
		{"PDPT", PDPTAddr, PDPTAddr + pageSize},
		{"PDs", PDAddr, PDAddr + PDCount*pageSize},
		{"command line", CmdlineAddr, CmdlineAddr + CmdlineMax},
		{"ACPI", ACPIStart, ACPIEnd},
	}
	sort.Slice(areas, func(i, j int) bool { return areas[i].start < areas[j].start })
	for i, a := range areas {
		if a.end <= a.start {
			t.Errorf("%s is empty", a.name)
		}
		if i > 0 && a.start < areas[i-1].end {
			t.Errorf("%s [%#x, %#x) overlaps %s [%#x, %#x)", a.name, a.start, a.end,
				areas[i-1].name, areas[i-1].start, areas[i-1].end)
		}
		if a.end > KernelLoadAddr {
			t.Errorf("%s reaches the kernel", a.name)
		}
		inReserved := a.start >= EBDAStart
		if a.name == "ACPI" != inReserved {
			t.Errorf("%s: in reserved area = %v", a.name, inReserved)
		}
	}
	if RSDPAddr%16 != 0 || RSDPAddr < 0xe0000 || RSDPAddr >= 0x100000 {
		t.Error("RSDP not where the legacy scan finds it")
	}
	if KVMTSSAddr != KVMIdentityMapAddr+pageSize || KVMTSSAddr+3*pageSize > MMIOHoleEnd ||
		KVMIdentityMapAddr < LAPICAddr+pageSize || PCIMMIOEnd > IOAPICAddr || PCIMMIOStart < LowRAMEnd {
		t.Error("MMIO hole layout inconsistent")
	}
}
