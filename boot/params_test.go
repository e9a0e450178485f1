package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/memory"
)

func loadTestImage(t *testing.T, mem *memory.Guest, o bzOpts) *BzImage {
	t.Helper()
	img := makeBzImage(o)
	k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestWriteBootParams reads the zero page back at the offsets given in
// Documentation/arch/x86/boot.rst and zero-page.rst (written out literally
// here, not taken from the package's constants).
func TestWriteBootParams(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	k := loadTestImage(t, mem, goodBzOpts())
	e820 := E820Map(mem.Regions())
	p := LinuxParams{
		CmdlineAddr: CmdlineAddr, CmdlineLen: 11,
		InitrdAddr: 0x3000000, InitrdSize: 0x123456,
		E820: e820, RSDPAddr: RSDPAddr,
	}
	if err := WriteCmdline(mem, CmdlineAddr, "console=x y", CmdlineMax); err != nil {
		t.Fatal(err)
	}
	// Garbage in the zero page must be cleared.
	if err := mem.WriteAt(bytes.Repeat([]byte{0xff}, ZeroPageSize), ZeroPageAddr); err != nil {
		t.Fatal(err)
	}
	if err := WriteBootParams(mem, k, p); err != nil {
		t.Fatal(err)
	}
	zp := make([]byte, 4096)
	if err := mem.ReadAt(zp, 0x7000); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for _, c := range []struct {
		name string
		off  int
		size int
		want uint64
	}{
		{"acpi_rsdp_addr", 0x070, 8, 0xe0000},
		{"ext_ramdisk_image", 0x0c0, 4, 0},
		{"ext_ramdisk_size", 0x0c4, 4, 0},
		{"ext_cmd_line_ptr", 0x0c8, 4, 0},
		{"e820_entries", 0x1e8, 1, uint64(len(e820))},
		{"sentinel", 0x1ef, 1, 0},
		{"setup_sects", 0x1f1, 1, 4},
		{"vid_mode", 0x1fa, 2, 0xffff},
		{"boot_flag", 0x1fe, 2, 0xaa55},
		{"jump", 0x200, 2, 0x6aeb},
		{"header", 0x202, 4, 0x53726448},
		{"version", 0x206, 2, 0x020f},
		{"type_of_loader", 0x210, 1, 0xff},
		{"loadflags", 0x211, 1, 0x01},
		{"ramdisk_image", 0x218, 4, 0x3000000},
		{"ramdisk_size", 0x21c, 4, 0x123456},
		{"cmd_line_ptr", 0x228, 4, 0x20000},
		{"initrd_addr_max", 0x22c, 4, 0x7fffffff},
		{"kernel_alignment", 0x230, 4, 0x200000},
		{"relocatable_kernel", 0x234, 1, 1},
		{"xloadflags", 0x236, 2, 3},
		{"cmdline_size", 0x238, 4, 2047},
		{"pref_address", 0x258, 8, 0x1000000},
		{"init_size", 0x260, 4, 0x200000},
		{"kernel_info_offset", 0x268, 4, 0x1234},
		{"edd_mbr_sig_buffer", 0x290, 8, 0},
		{"e820_table[0].addr", 0x2d0, 8, 0},
		{"e820_table[0].size", 0x2d8, 8, EBDAStart},
		{"e820_table[0].type", 0x2e0, 4, 1},
		{"e820_table[1].addr", 0x2e4, 8, EBDAStart},
		{"e820_table[1].type", 0x2f4, 4, 2},
		{"e820_table[2].addr", 0x2f8, 8, 0x100000},
		{"e820_table[2].size", 0x300, 8, testMemSize - 0x100000},
		{"e820_table[3].type", 0x31c, 4, 2},
		{"e820_table[4]", 0x320, 8, 0},
	} {
		var got uint64
		switch c.size {
		case 1:
			got = uint64(zp[c.off])
		case 2:
			got = uint64(le.Uint16(zp[c.off:]))
		case 4:
			got = uint64(le.Uint32(zp[c.off:]))
		case 8:
			got = le.Uint64(zp[c.off:])
		}
		if got != c.want {
			t.Errorf("%s at %#x: %#x, want %#x", c.name, c.off, got, c.want)
		}
	}
	// Nothing beyond the header and the e820 table is set.
	if !bytes.Equal(zp[0x2d0+20*len(e820):], make([]byte, 4096-0x2d0-20*len(e820))) {
		t.Error("bytes after the e820 table are not zero")
	}
	if cl := make([]byte, 12); mem.ReadAt(cl, 0x20000) != nil || string(cl) != "console=x y\x00" {
		t.Errorf("command line %q", cl)
	}
}

func TestWriteBootParamsHigh(t *testing.T) {
	// An initrd and command line above 4 GiB go through the ext_ fields.
	mem := newTestMem(t, LowRAMEnd+64<<20)
	o := goodBzOpts()
	k := loadTestImage(t, mem, o)
	p := LinuxParams{
		CmdlineAddr: 0x1_0000_1000, CmdlineLen: 0,
		InitrdAddr: 0x1_0200_0000, InitrdSize: 0x1000,
		E820: E820Map(mem.Regions()),
	}
	if err := WriteBootParams(mem, k, p); err != nil {
		t.Fatal(err)
	}
	zp := make([]byte, 4096)
	if err := mem.ReadAt(zp, ZeroPageAddr); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(zp[0x218:]) != 0x0200_0000 || le.Uint32(zp[0x0c0:]) != 1 ||
		le.Uint32(zp[0x228:]) != 0x1000 || le.Uint32(zp[0x0c8:]) != 1 || le.Uint32(zp[0x21c:]) != 0x1000 {
		t.Error("ext_ fields not set")
	}
	// Without XLF_CAN_BE_LOADED_ABOVE_4G the initrd must stay below
	// initrd_addr_max.
	o.xloadFlags = XLFKernel64
	k = loadTestImage(t, mem, o)
	if err := WriteBootParams(mem, k, p); !errors.Is(err, ErrInitrdDoesNotFit) {
		t.Errorf("got %v", err)
	}
}

func TestWriteBootParamsErrors(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	k := loadTestImage(t, mem, goodBzOpts())
	e820 := E820Map(mem.Regions())
	for _, tc := range []struct {
		name string
		k    *BzImage
		p    LinuxParams
	}{
		{"no image", nil, LinuxParams{E820: e820}},
		{"no e820", k, LinuxParams{}},
		{"too many e820", k, LinuxParams{E820: make([]E820Entry, 129)}},
		{"cmdline too long", k, LinuxParams{E820: e820, CmdlineAddr: CmdlineAddr, CmdlineLen: 2048}},
		{"negative cmdline", k, LinuxParams{E820: e820, CmdlineAddr: CmdlineAddr, CmdlineLen: -1}},
		{"cmdline outside RAM", k, LinuxParams{E820: e820, CmdlineAddr: testMemSize - 4, CmdlineLen: 10}},
		{"initrd outside RAM", k, LinuxParams{E820: e820, InitrdAddr: testMemSize - 0x1000, InitrdSize: 0x2000}},
		{"initrd overflow", k, LinuxParams{E820: e820, InitrdAddr: ^uint64(0) - 10, InitrdSize: 0x2000}},
	} {
		if err := WriteBootParams(mem, tc.k, tc.p); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	// Exactly 128 entries is fine.
	if err := WriteBootParams(mem, k, LinuxParams{E820: make([]E820Entry, 128)}); err != nil {
		t.Error(err)
	}
}

func TestWritePVHStartInfo(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	e820 := E820Map(mem.Regions())
	addr, err := WritePVHStartInfo(mem, PVHParams{
		CmdlineAddr: CmdlineAddr, InitrdAddr: 0x3000000, InitrdSize: 0x4321, E820: e820, RSDPAddr: RSDPAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if addr != PVHStartInfoAddr {
		t.Errorf("address %#x", addr)
	}
	// struct hvm_start_info, start_info.h.
	si := make([]byte, 56)
	if err := mem.ReadAt(si, addr); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(si[0:]) != 0x336ec578 || le.Uint32(si[4:]) != 1 || le.Uint32(si[8:]) != 0 ||
		le.Uint32(si[12:]) != 1 || le.Uint64(si[24:]) != CmdlineAddr || le.Uint64(si[32:]) != 0xe0000 ||
		le.Uint32(si[48:]) != uint32(len(e820)) || le.Uint32(si[52:]) != 0 {
		t.Errorf("start info % x", si)
	}
	mod := make([]byte, 32)
	if err := mem.ReadAt(mod, le.Uint64(si[16:])); err != nil {
		t.Fatal(err)
	}
	if le.Uint64(mod[0:]) != 0x3000000 || le.Uint64(mod[8:]) != 0x4321 || le.Uint64(mod[16:]) != 0 {
		t.Errorf("module % x", mod)
	}
	mm := le.Uint64(si[40:])
	for i, e := range e820 {
		b := make([]byte, 24)
		if err := mem.ReadAt(b, mm+uint64(24*i)); err != nil {
			t.Fatal(err)
		}
		if got := (E820Entry{le.Uint64(b), le.Uint64(b[8:]), le.Uint32(b[16:])}); got != e || le.Uint32(b[20:]) != 0 {
			t.Errorf("memmap[%d] = %+v, want %+v", i, got, e)
		}
	}
	// The memory map must end below the zero page.
	if PVHMemmapAddr+PVHMemmapMaxEntries*24 > ZeroPageAddr || PVHModlistAddr+32 > PVHMemmapAddr ||
		PVHStartInfoAddr+56 > PVHModlistAddr {
		t.Error("PVH structures overlap")
	}

	// Without initrd: no modules.
	if _, err := WritePVHStartInfo(mem, PVHParams{E820: e820}); err != nil {
		t.Fatal(err)
	}
	if err := mem.ReadAt(si, addr); err != nil {
		t.Fatal(err)
	}
	if le.Uint32(si[12:]) != 0 || le.Uint64(si[16:]) != 0 || le.Uint64(si[24:]) != 0 {
		t.Errorf("start info without initrd % x", si)
	}
	for _, p := range []PVHParams{
		{},
		{E820: make([]E820Entry, PVHMemmapMaxEntries+1)},
		{E820: e820, InitrdAddr: testMemSize, InitrdSize: 1},
		{E820: e820, CmdlineAddr: testMemSize},
	} {
		if _, err := WritePVHStartInfo(mem, p); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

func TestWriteCmdline(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	long := strings.Repeat("a", 2047)
	if err := WriteCmdline(mem, CmdlineAddr, long, 2048); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2048)
	if err := mem.ReadAt(got, CmdlineAddr); err != nil {
		t.Fatal(err)
	}
	if string(got) != long+"\x00" {
		t.Error("command line not NUL-terminated")
	}
	for _, tc := range []struct {
		s    string
		max  int
		addr uint64
	}{
		{long + "b", 2048, CmdlineAddr},
		{"a\x00b", 100, CmdlineAddr},
		{"", 0, CmdlineAddr},
		{"abc", 100, testMemSize - 2},
	} {
		if err := WriteCmdline(mem, tc.addr, tc.s, tc.max); err == nil {
			t.Errorf("%q max %d at %#x: no error", tc.s, tc.max, tc.addr)
		}
	}
	if err := WriteCmdline(mem, CmdlineAddr, "", 1); err != nil {
		t.Error(err)
	}
}

func TestE820Map(t *testing.T) {
	kvm := E820Entry{KVMIdentityMapAddr, 0x4000, E820Reserved}
	for _, tc := range []struct {
		name string
		size uint64
		want []E820Entry
	}{
		{"512 KiB", 0x80000, []E820Entry{{0, 0x80000, E820RAM}, kvm}},
		{"ends inside the EBDA area", 0xc0000, []E820Entry{{0, EBDAStart, E820RAM}, {EBDAStart, 0xc0000 - EBDAStart, E820Reserved}, kvm}},
		{"1 MiB", 0x100000, []E820Entry{{0, EBDAStart, E820RAM}, {EBDAStart, 0x100000 - EBDAStart, E820Reserved}, kvm}},
		{"128 MiB", 128 << 20, []E820Entry{
			{0, EBDAStart, E820RAM}, {EBDAStart, 0x100000 - EBDAStart, E820Reserved},
			{0x100000, 127 << 20, E820RAM}, kvm}},
		{"exactly low RAM", LowRAMEnd, []E820Entry{
			{0, EBDAStart, E820RAM}, {EBDAStart, 0x100000 - EBDAStart, E820Reserved},
			{0x100000, LowRAMEnd - 0x100000, E820RAM}, kvm}},
		{"4 GiB", 4 << 30, []E820Entry{
			{0, EBDAStart, E820RAM}, {EBDAStart, 0x100000 - EBDAStart, E820Reserved},
			{0x100000, LowRAMEnd - 0x100000, E820RAM}, kvm, {1 << 32, 1 << 30, E820RAM}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newTestMem(t, tc.size)
			if got := E820Map(mem.Regions()); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRAMRegions(t *testing.T) {
	if r := RAMRegions(0); r != nil {
		t.Errorf("0: %+v", r)
	}
	if r := RAMRegions(1 << 30); !reflect.DeepEqual(r, []memory.RegionSpec{{Base: 0, Size: 1 << 30}}) {
		t.Errorf("1 GiB: %+v", r)
	}
	if r := RAMRegions(LowRAMEnd); !reflect.DeepEqual(r, []memory.RegionSpec{{Base: 0, Size: LowRAMEnd}}) {
		t.Errorf("3 GiB: %+v", r)
	}
	want := []memory.RegionSpec{{Base: 0, Size: LowRAMEnd}, {Base: 1 << 32, Size: 5<<30 - LowRAMEnd}}
	if r := RAMRegions(5 << 30); !reflect.DeepEqual(r, want) {
		t.Errorf("5 GiB: %+v", r)
	}
}

func TestPlaceInitrd(t *testing.T) {
	small := newTestMem(t, 64<<20).Regions()
	big := newTestMem(t, 8<<30).Regions()
	const top = 64 << 20
	for _, tc := range []struct {
		name              string
		regions           []memory.Region
		kernelEnd, maxAdr uint64
		size              uint64
		want              uint64
		ok                bool
	}{
		{"top of RAM", small, 0x2000000, 0x7fffffff, 0x100000, top - 0x100000, true},
		{"page-aligned down", small, 0x2000000, 0x7fffffff, 0x1001, top - 0x2000, true},
		{"below initrd_addr_max", small, 0x2000000, 0x2ffffff, 0x1000, 0x2fff000, true},
		{"initrd_addr_max not page-aligned", small, 0x2000000, 0x2fff7ff, 0x1000, 0x2ffe000, true},
		{"exactly fits", small, top - 0x3000, 0x7fffffff, 0x3000, top - 0x3000, true},
		{"one byte too big", small, top - 0x3000, 0x7fffffff, 0x3001, 0, false},
		{"larger than RAM", small, 0x2000000, 0x7fffffff, top + 1, 0, false},
		{"empty", small, 0x2000000, 0x7fffffff, 0, 0, false},
		{"kernel end outside RAM", small, top + 0x1000, 0x7fffffff, 0x1000, 0, false},
		{"kernel end at top", small, top, 0x7fffffff, 0x1000, 0, false},
		{"max below kernel", small, 0x2000000, 0x1ffffff, 0x1000, 0, false},
		{"stays below the MMIO hole", big, 0x2000000, 0xffffffff, 0x100000, LowRAMEnd - 0x100000, true},
		{"max all ones", big, 0x2000000, ^uint64(0), 0x1000, LowRAMEnd - 0x1000, true},
	} {
		got, err := PlaceInitrd(tc.regions, tc.kernelEnd, tc.maxAdr, tc.size)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: got %#x, %v; want %#x ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInitrdDoesNotFit) {
			t.Errorf("%s: %v is not ErrInitrdDoesNotFit", tc.name, err)
		}
	}
}
