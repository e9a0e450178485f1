package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/memory"
)

func newMem(t *testing.T, size uint64) *memory.Guest {
	t.Helper()
	m, err := memory.New(boot.RAMRegions(size))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func fullConfig() Config {
	return Config{
		NumCPUs: 4,
		VirtioMMIO: []MMIODevice{
			{Base: 0xd000_0000, Size: 0x1000, GSI: 5},
			{Base: 0xd000_1000, Size: 0x1000, GSI: 6},
		},
		PCI: &PCIWindow{BusStart: 0, BusEnd: 0xff, IOBase: 0x1000, IOSize: 0xf000,
			Mem32Base: boot.PCIMMIOStart, Mem32Size: 0x1000_0000},
	}
}

// tables reads back what Write produced, following the pointers from the
// RSDP and checking every checksum and length on the way.
type tables struct {
	rsdp []byte
	xsdt []byte
	sdts map[string][]byte // by signature, FADT as "FACP", DSDT included
	addr map[string]uint64
}

func readTables(t *testing.T, mem *memory.Guest, rsdpAddr uint64) *tables {
	t.Helper()
	le := binary.LittleEndian
	rs := make([]byte, 36)
	if err := mem.ReadAt(rs, rsdpAddr); err != nil {
		t.Fatal(err)
	}
	if string(rs[:8]) != "RSD PTR " || rs[15] != 2 || le.Uint32(rs[20:]) != 36 || le.Uint32(rs[16:]) != 0 {
		t.Fatalf("RSDP % x", rs)
	}
	if sum(rs[:20]) != 0 || sum(rs) != 0 {
		t.Errorf("RSDP checksums: %d, %d", sum(rs[:20]), sum(rs))
	}
	tb := &tables{rsdp: rs, sdts: map[string][]byte{}, addr: map[string]uint64{}}
	read := func(addr uint64) []byte {
		h := make([]byte, 36)
		if err := mem.ReadAt(h, addr); err != nil {
			t.Fatal(err)
		}
		n := le.Uint32(h[4:])
		if n < 36 || addr+uint64(n) > boot.ACPIEnd || addr < boot.ACPIStart {
			t.Fatalf("table %q at %#x: length %d", h[:4], addr, n)
		}
		b := make([]byte, n)
		if err := mem.ReadAt(b, addr); err != nil {
			t.Fatal(err)
		}
		if s := sum(b); s != 0 {
			t.Errorf("table %q: bytes sum to %#x", b[:4], s)
		}
		if string(b[10:16]) != "VMMDEV" {
			t.Errorf("table %q: OEM ID %q", b[:4], b[10:16])
		}
		tb.sdts[string(b[:4])] = b
		tb.addr[string(b[:4])] = addr
		return b
	}
	tb.xsdt = read(le.Uint64(rs[24:]))
	if string(tb.xsdt[:4]) != "XSDT" || (len(tb.xsdt)-36)%8 != 0 {
		t.Fatalf("XSDT % x", tb.xsdt[:36])
	}
	for off := 36; off < len(tb.xsdt); off += 8 {
		read(le.Uint64(tb.xsdt[off:]))
	}
	fadt := tb.sdts["FACP"]
	if fadt == nil {
		t.Fatal("no FADT")
	}
	read(le.Uint64(fadt[140:]))
	return tb
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestWrite(t *testing.T) {
	mem := newMem(t, 64<<20)
	// Leftovers in the area must be cleared.
	if err := mem.WriteAt(bytes.Repeat([]byte{0xaa}, boot.ACPIEnd-boot.ACPIStart), boot.ACPIStart); err != nil {
		t.Fatal(err)
	}
	rsdp, err := Write(mem, fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	if rsdp != boot.RSDPAddr {
		t.Errorf("RSDP at %#x", rsdp)
	}
	tb := readTables(t, mem, rsdp)
	for _, sig := range []string{"XSDT", "FACP", "APIC", "DSDT"} {
		if tb.sdts[sig] == nil {
			t.Errorf("no %s", sig)
		}
		if a := tb.addr[sig]; a%8 != 0 {
			t.Errorf("%s at %#x not 8-aligned", sig, a)
		}
	}
	if len(tb.sdts) != 4 || len(tb.xsdt) != 36+2*8 {
		t.Errorf("%d tables, XSDT %d bytes", len(tb.sdts), len(tb.xsdt))
	}
	// Nothing but tables in the area: the 0xaa bytes are gone.
	all := make([]byte, boot.ACPIEnd-boot.ACPIStart)
	if err := mem.ReadAt(all, boot.ACPIStart); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(all, []byte{0xaa, 0xaa, 0xaa, 0xaa}) {
		t.Error("old contents left in the ACPI area")
	}
}

func TestFADT(t *testing.T) {
	mem := newMem(t, 64<<20)
	rsdp, err := Write(mem, Config{NumCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	tb := readTables(t, mem, rsdp)
	f := tb.sdts["FACP"]
	le := binary.LittleEndian
	if len(f) != 276 || f[8] != 6 || f[131] != 0 {
		t.Errorf("FADT length %d revision %d.%d", len(f), f[8], f[131])
	}
	flags := le.Uint32(f[112:])
	if flags&(1<<20) == 0 || flags&(1<<10) == 0 {
		t.Errorf("flags %#x: want HW_REDUCED_ACPI and RESET_REG_SUP", flags)
	}
	if arch := le.Uint16(f[109:]); arch != 1<<2|1<<5 {
		t.Errorf("IAPC_BOOT_ARCH %#x: want VGA and CMOS RTC not present, no 8042, no legacy devices", arch)
	}
	gas := func(off int, port uint64) {
		want := []byte{1, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
		le.PutUint64(want[4:], port)
		if !bytes.Equal(f[off:off+12], want) {
			t.Errorf("GAS at %d: % x, want % x", off, f[off:off+12], want)
		}
	}
	gas(116, 0x602)
	gas(244, 0x600)
	gas(256, 0x601)
	if f[128] != 1 {
		t.Errorf("reset value %#x", f[128])
	}
	if le.Uint64(f[140:]) != tb.addr["DSDT"] || le.Uint32(f[40:]) != 0 || le.Uint32(f[36:]) != 0 || le.Uint64(f[132:]) != 0 {
		t.Error("DSDT/FACS pointers")
	}
	// No fixed-hardware blocks in hardware-reduced mode.
	if !bytes.Equal(f[44:109], make([]byte, 109-44)) || !bytes.Equal(f[148:244], make([]byte, 244-148)) {
		t.Error("fixed-hardware fields set")
	}
	if string(f[268:276]) != "VMMDEV\x00\x00" {
		t.Errorf("hypervisor vendor %q", f[268:276])
	}
}

func TestMADT(t *testing.T) {
	for _, n := range []int{1, 2, 64, MaxCPUs} {
		mem := newMem(t, 64<<20)
		rsdp, err := Write(mem, Config{NumCPUs: n})
		if err != nil {
			t.Fatal(err)
		}
		m := readTables(t, mem, rsdp).sdts["APIC"]
		le := binary.LittleEndian
		if le.Uint32(m[36:]) != 0xfee00000 || le.Uint32(m[40:]) != 0 {
			t.Errorf("LAPIC address %#x flags %#x", le.Uint32(m[36:]), le.Uint32(m[40:]))
		}
		var lapics, ioapics int
		for off := 44; off < len(m); {
			typ, l := m[off], int(m[off+1])
			if l < 2 || off+l > len(m) {
				t.Fatalf("entry at %d: length %d", off, l)
			}
			e := m[off : off+l]
			switch typ {
			case 0:
				if l != 8 || e[2] != byte(lapics) || e[3] != byte(lapics) || le.Uint32(e[4:]) != 1 {
					t.Errorf("LAPIC entry % x", e)
				}
				lapics++
			case 1:
				if l != 12 || e[2] != IOAPICID || le.Uint32(e[4:]) != 0xfec00000 || le.Uint32(e[8:]) != 0 {
					t.Errorf("IOAPIC entry % x", e)
				}
				ioapics++
			default:
				t.Errorf("unexpected entry type %d", typ)
			}
			off += l
		}
		if lapics != n || ioapics != 1 {
			t.Errorf("%d CPUs: %d LAPIC and %d IOAPIC entries", n, lapics, ioapics)
		}
	}
}

func TestDSDTContents(t *testing.T) {
	mem := newMem(t, 64<<20)
	rsdp, err := Write(mem, fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	d := readTables(t, mem, rsdp).sdts["DSDT"]
	if d[8] != 2 {
		t.Errorf("DSDT revision %d", d[8])
	}
	for name, want := range map[string][]byte{
		"_S5_":       {0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0},
		"COM1 _HID":  {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01},
		"COM1 _CRS":  {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00},
		"pvpanic":    append([]byte{0x08, '_', 'H', 'I', 'D', 0x0d}, "QEMU0001\x00"...),
		"pvpanic IO": {0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01, 0x79, 0x00},
		"_STA":       {0x08, '_', 'S', 'T', 'A', 0x0a, 0x0f},
		"VR01":       []byte("VR01"),
		"virtio":     append([]byte{0x0d}, "LNRO0005\x00"...),
		"VR01 CRS":   {0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, 0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0, 0, 0},
		"PCI0 _HID":  {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08},
		"PCI0 _CID":  {0x08, '_', 'C', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03},
	} {
		if !bytes.Contains(d, want) {
			t.Errorf("DSDT lacks %s (% x)", name, want)
		}
	}
	// Without PCI and virtio-mmio, neither appears.
	rsdp, err = Write(mem, Config{NumCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	d = readTables(t, mem, rsdp).sdts["DSDT"]
	if bytes.Contains(d, []byte("PCI0")) || bytes.Contains(d, []byte("LNRO")) {
		t.Error("PCI0 or virtio-mmio without configuration")
	}
}

func TestWriteErrors(t *testing.T) {
	mem := newMem(t, 64<<20)
	bad := []Config{
		{NumCPUs: 0},
		{NumCPUs: 256},
		{NumCPUs: 1, VirtioMMIO: []MMIODevice{{Base: 0x1000, Size: 0x1000, GSI: 5}}},
		{NumCPUs: 1, VirtioMMIO: []MMIODevice{{Base: 0xffff_f000, Size: 0x2000, GSI: 5}}},
		{NumCPUs: 1, VirtioMMIO: []MMIODevice{{Base: 0xd000_0000, Size: 0, GSI: 5}}},
		{NumCPUs: 1, VirtioMMIO: []MMIODevice{{Base: 0xd000_0000, Size: 0x1000, GSI: 24}}},
		{NumCPUs: 1, VirtioMMIO: make([]MMIODevice, 257)},
		{NumCPUs: 1, PCI: &PCIWindow{BusStart: 2, BusEnd: 1}},
		{NumCPUs: 1, PCI: &PCIWindow{IOBase: 0xc00, IOSize: 0x1000}},  // covers 0xCF8
		{NumCPUs: 1, PCI: &PCIWindow{IOBase: 0xf000, IOSize: 0x2000}}, // past 0xFFFF
		{NumCPUs: 1, PCI: &PCIWindow{IOBase: 0, IOSize: 0x10000}},     // all ports
		{NumCPUs: 1, PCI: &PCIWindow{Mem32Base: 0x8000_0000, Mem32Size: 0x1000}},
		{NumCPUs: 1, PCI: &PCIWindow{Mem32Base: 0xfd00_0000, Mem32Size: 0x0200_0000}},
	}
	for _, c := range bad {
		if _, err := Write(mem, c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	// Windows right up to the limits are fine.
	ok := Config{NumCPUs: 1, PCI: &PCIWindow{IOBase: 0xd00, IOSize: 0xf300, Mem32Base: boot.PCIMMIOStart,
		Mem32Size: boot.PCIMMIOEnd - boot.PCIMMIOStart}}
	if _, err := Write(mem, ok); err != nil {
		t.Error(err)
	}
	// RAM that does not reach the ACPI area.
	small := newMem(t, 0x80000)
	if _, err := Write(small, Config{NumCPUs: 1}); err == nil {
		t.Error("no error without RAM at the ACPI area")
	}
	// A table larger than the area.
	a := &area{next: boot.ACPIStart}
	if _, err := a.place("BIG!", make([]byte, boot.ACPIEnd-boot.ACPIStart+1)); !errors.Is(err, ErrNoRoom) {
		t.Errorf("place: %v", err)
	}
	a = &area{next: boot.ACPIEnd - 100}
	if _, err := a.place("BIG!", make([]byte, 97)); !errors.Is(err, ErrNoRoom) {
		t.Errorf("place after alignment: %v", err)
	}
}

func TestLargestConfigFits(t *testing.T) {
	mem := newMem(t, 64<<20)
	cfg := fullConfig()
	cfg.NumCPUs = MaxCPUs
	cfg.VirtioMMIO = nil
	for i := range 256 {
		cfg.VirtioMMIO = append(cfg.VirtioMMIO, MMIODevice{Base: 0xd000_0000 + uint64(i)*0x1000, Size: 0x1000, GSI: uint32(5 + i%16)})
	}
	rsdp, err := Write(mem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb := readTables(t, mem, rsdp)
	if !bytes.Contains(tb.sdts["DSDT"], []byte("VRFF")) {
		t.Error("no VRFF")
	}
}
