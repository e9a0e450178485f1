package acpi

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tests against ACPICA's iasl (Debian package acpica-tools), skipped when it
// is not installed.

func iasl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (apt-get install acpica-tools)")
	}
	return p
}

// TestIASLDisassemble has iasl disassemble every table Write produced.
func TestIASLDisassemble(t *testing.T) {
	bin := iasl(t)
	mem := newMem(t, 64<<20)
	rsdp, err := Write(mem, fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	tb := readTables(t, mem, rsdp)
	dir := t.TempDir()
	want := map[string][]string{
		"DSDT": {
			`Name (_S5, Package (0x04)`, `0x05,`,
			`Device (COM1)`, `EisaId ("PNP0501")`, `0x03F8,`, "IRQNoFlags ()\n                    {4}",
			`Device (PEVT)`, `Name (_HID, "QEMU0001")`, `0x0505,`, `Name (_STA, 0x0F)`,
			`Device (VR01)`, `Name (_HID, "LNRO0005")`, `0xD0001000,`, `Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )`,
			`Device (PCI0)`, `EisaId ("PNP0A08")`, `EisaId ("PNP0A03")`, `WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,`,
			`WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,`,
			`DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,`, `0xCFFFFFFF,`,
		},
		"FACP": {"Hardware Reduced (V5) : 1", "Reset Register Supported (V2) : 1", "8042 Present on ports 60/64 (V2) : 0",
			"VGA Not Present (V4) : 1", "CMOS RTC Not Present (V5) : 1", "Address : 0000000000000600",
			"Address : 0000000000000601", "Address : 0000000000000602", "Value to cause reset : 01"},
		"APIC": {"Local Apic Address : FEE00000", "PC-AT Compatibility : 0", "[I/O APIC]", "Address : FEC00000"},
		"XSDT": {fmt.Sprintf("ACPI Table Address   0 : %016X", tb.addr["FACP"]), fmt.Sprintf("ACPI Table Address   1 : %016X", tb.addr["APIC"])},
	}
	for sig, b := range tb.sdts {
		in := filepath.Join(dir, sig+".dat")
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-d", in).CombinedOutput()
		if err != nil {
			t.Errorf("iasl -d %s: %v\n%s", sig, err, out)
			continue
		}
		dsl, err := os.ReadFile(filepath.Join(dir, sig+".dsl"))
		if err != nil {
			t.Fatal(err)
		}
		text := string(dsl)
		for _, bad := range []string{"Error", "Warning", "Unknown", "Invalid"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s: iasl reports %q:\n%s", sig, bad, text)
			}
		}
		for _, w := range want[sig] {
			if !strings.Contains(text, w) {
				t.Errorf("%s: disassembly lacks %q", sig, w)
			}
		}
		if sig == "APIC" {
			if n := strings.Count(text, "[Processor Local APIC]"); n != 4 {
				t.Errorf("APIC: %d local APICs", n)
			}
		}
	}
}

// dsdtASL writes the ASL the DSDT for cfg is meant to be, for iasl to
// compile independently.
func dsdtASL(cfg *Config) string {
	var b strings.Builder
	b.WriteString(`DefinitionBlock ("", "DSDT", 2, "VMMDEV", "VMMDEVTB", 1)
{
    Name (\_S5, Package (0x04) { 0x05, Zero, Zero, Zero })
    Scope (\_SB)
    {
        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501"))
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08) IRQNoFlags () {4} })
        }
        Device (PEVT)
        {
            Name (_HID, "QEMU0001")
            Name (_CRS, ResourceTemplate () { IO (Decode16, 0x0505, 0x0505, 0x01, 0x01) })
            Name (_STA, 0x0F)
        }
`)
	for i, d := range cfg.VirtioMMIO {
		fmt.Fprintf(&b, `        Device (VR%02X)
        {
            Name (_HID, "LNRO0005")
            Name (_UID, %d)
            Name (_CRS, ResourceTemplate () {
                Memory32Fixed (ReadWrite, 0x%08X, 0x%08X)
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { %d }
            })
        }
`, i, i, d.Base, d.Size, d.GSI)
	}
	if p := cfg.PCI; p != nil {
		fmt.Fprintf(&b, `        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_UID, Zero)
            Name (_SEG, Zero)
            Name (_BBN, %d)
            Name (_CRS, ResourceTemplate () {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, %d, %d, 0, %d)
                IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, 0x%X, 0x%X, 0, 0x%X)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, 0x%X, 0x%X, 0, 0x%X)
            })
        }
`, p.BusStart, p.BusStart, p.BusEnd, int(p.BusEnd)-int(p.BusStart)+1,
			p.IOBase, uint32(p.IOBase)+p.IOSize-1, p.IOSize,
			p.Mem32Base, p.Mem32Base+p.Mem32Size-1, p.Mem32Size)
	}
	b.WriteString("    }\n}\n")
	return b.String()
}

// TestIASLCompileMatches compiles the intended ASL with iasl and compares
// its AML with the package's, byte for byte (the header's compiler fields
// and checksum aside). The large configuration needs three-byte
// PkgLengths.
func TestIASLCompileMatches(t *testing.T) {
	bin := iasl(t)
	large := fullConfig()
	for i := range 100 {
		large.VirtioMMIO = append(large.VirtioMMIO, MMIODevice{Base: 0xd100_0000 + uint64(i)*0x1000, Size: 0x200, GSI: uint32(5 + i%16)})
	}
	for name, cfg := range map[string]Config{"minimal": {NumCPUs: 1}, "full": fullConfig(), "large": large} {
		dir := t.TempDir()
		src := filepath.Join(dir, "dsdt.asl")
		if err := os.WriteFile(src, []byte(dsdtASL(&cfg)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-p", filepath.Join(dir, "dsdt"), src).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: iasl: %v\n%s", name, err, out)
		}
		ref, err := os.ReadFile(filepath.Join(dir, "dsdt.aml"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := buildDSDT(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ref) || !bytes.Equal(got[headerSize:], ref[headerSize:]) || !bytes.Equal(got[:9], ref[:9]) {
			t.Errorf("%s: AML differs from iasl's (%d vs %d bytes)", name, len(got), len(ref))
			for i := range min(len(got), len(ref)) {
				if got[i] != ref[i] && i != 9 && (i < 28 || i >= 36) {
					t.Errorf("first difference at %#x: % x vs % x", i, got[i:min(i+16, len(got))], ref[i:min(i+16, len(ref))])
					break
				}
			}
		}
		// Scope (_SB) follows the 13-byte Name (_S5); check which
		// PkgLength form its lead byte has.
		if lead := ref[headerSize+14] >> 6; name == "large" && lead != 2 || name == "full" && lead != 1 {
			t.Errorf("%s: Scope PkgLength lead byte %#x", name, ref[headerSize+14])
		}
	}
}
