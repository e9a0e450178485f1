package aml

import (
	"bytes"
	"errors"
	"testing"
)

func hexBytes(t *testing.T, got []byte, err error, want []byte, what string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got % x\nwant % x", what, got, want)
	}
}

// TestPkgLength checks each of the 1..4-byte forms at its boundaries
// (ACPI 6.5, 20.2.4). The encoded value counts the PkgLength bytes too.
func TestPkgLength(t *testing.T) {
	for _, c := range []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{10, []byte{0x0b}},
		{62, []byte{0x3f}},                          // 63: largest one-byte form
		{63, []byte{0x41, 0x04}},                    // 65 = 0x041
		{4093, []byte{0x4f, 0xff}},                  // 0xfff: largest two-byte form
		{4094, []byte{0x81, 0x00, 0x01}},            // 0x1001
		{0xffffc, []byte{0x8f, 0xff, 0xff}},         // 0xfffff: largest three-byte form
		{0xffffd, []byte{0xc1, 0x00, 0x00, 0x01}},   // 0x100001
		{0xffffffb, []byte{0xcf, 0xff, 0xff, 0xff}}, // 0xfffffff: the maximum
	} {
		got, err := pkgLength(c.body)
		hexBytes(t, got, err, c.want, "pkgLength")
	}
	for _, n := range []int{0xffffffc, -1} {
		if _, err := pkgLength(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("pkgLength(%#x): %v", n, err)
		}
	}
}

func TestDataObjects(t *testing.T) {
	for _, c := range []struct {
		o    Object
		want []byte
	}{
		{Integer(0), []byte{0x00}},
		{Integer(1), []byte{0x01}},
		{Integer(2), []byte{0x0a, 0x02}},
		{Integer(0xff), []byte{0x0a, 0xff}},
		{Integer(0x100), []byte{0x0b, 0x00, 0x01}},
		{Integer(0x3f8), []byte{0x0b, 0xf8, 0x03}},
		{Integer(0x10000), []byte{0x0c, 0x00, 0x00, 0x01, 0x00}},
		{Integer(0xfec00000), []byte{0x0c, 0x00, 0x00, 0xc0, 0xfe}},
		{Integer(0x1_0000_0000), []byte{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
		{String("QEMU0001"), []byte{0x0d, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0}},
		{String(""), []byte{0x0d, 0}},
		{EISAID("PNP0A03"), []byte{0x0c, 0x41, 0xd0, 0x0a, 0x03}},
		{EISAID("PNP0A08"), []byte{0x0c, 0x41, 0xd0, 0x0a, 0x08}},
		{EISAID("PNP0501"), []byte{0x0c, 0x41, 0xd0, 0x05, 0x01}},
		{EISAID("PNP0C02"), []byte{0x0c, 0x41, 0xd0, 0x0c, 0x02}},
		{Buffer{1, 2, 3}, []byte{0x11, 0x06, 0x0a, 0x03, 1, 2, 3}},
		{Buffer{}, []byte{0x11, 0x02, 0x00}},
		{Package(Integer(5), Integer(0), Integer(0), Integer(0)), []byte{0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0}},
		{Package(), []byte{0x12, 0x02, 0x00}},
	} {
		got, err := Encode(c.o)
		hexBytes(t, got, err, c.want, "object")
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct {
		path string
		want []byte
	}{
		{"_SB_", []byte("_SB_")},
		{"_SB", []byte("_SB_")},
		{"_S5", []byte("_S5_")},
		{`\_SB`, []byte(`\_SB_`)},
		{`\_SB.PCI0`, append([]byte{'\\', 0x2e}, "_SB_PCI0"...)},
		{"_SB.PCI0.S08", append([]byte{0x2f, 3}, "_SB_PCI0S08_"...)},
		{"^^COM1", []byte("^^COM1")},
		{`\`, []byte{'\\', 0}},
		{"A1", []byte("A1__")},
	} {
		got, err := appendNameString(nil, c.path)
		hexBytes(t, got, err, c.want, c.path)
	}
	for _, bad := range []string{"", "TOOLONG", "a", "1ABC", "A.", ".A", "A..B", "A-B", `\^A`, "_SB_.X%"} {
		if _, err := appendNameString(nil, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestTerms(t *testing.T) {
	got, err := Encode(Name("_S5", Package(Integer(5), Integer(0), Integer(0), Integer(0))))
	hexBytes(t, got, err, []byte{0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00}, "Name(_S5)")

	got, err = Encode(Method("_STA", 0, false, Return(Integer(0x0f))))
	hexBytes(t, got, err, []byte{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f}, "Method(_STA)")

	got, err = Encode(Method("FOO", 2, true))
	hexBytes(t, got, err, []byte{0x14, 0x06, 'F', 'O', 'O', '_', 0x0a}, "Method(FOO, 2, Serialized)")

	got, err = Encode(Scope(`\_SB`, Device("COM1", Name("_UID", Integer(0)))))
	// PkgLength counts itself: Device body 4+6 = 10 -> 0x0b; Scope body
	// 5+13 = 18 -> 0x13.
	want := []byte{0x10, 0x13, '\\', '_', 'S', 'B', '_',
		0x5b, 0x82, 0x0b, 'C', 'O', 'M', '1', 0x08, '_', 'U', 'I', 'D', 0x00}
	hexBytes(t, got, err, want, "Scope/Device")

	// A device whose body needs a two-byte PkgLength: 4 (name) + 20 × 9.
	var names []Object
	for range 20 {
		names = append(names, Name("_UID", String("ab")))
	}
	got, err = Encode(Device("DEV0", names...))
	if err != nil {
		t.Fatal(err)
	}
	if body := 4 + 20*9; got[2] != 0x40|byte((body+2)&0xf) || got[3] != byte((body+2)>>4) || len(got) != 2+2+body {
		t.Errorf("Device PkgLength % x, %d bytes", got[:4], len(got))
	}
}

func TestResources(t *testing.T) {
	for _, c := range []struct {
		r    Resource
		want []byte
	}{
		{IO{Min: 0x3f8, Max: 0x3f8, Align: 0, Len: 8}, []byte{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08}},
		{IO{Min: 0xcf8, Max: 0xcf8, Align: 1, Len: 8}, []byte{0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08}},
		{IRQNoFlags{IRQs: []uint8{4}}, []byte{0x22, 0x10, 0x00}},
		{IRQNoFlags{IRQs: []uint8{1, 12}}, []byte{0x22, 0x02, 0x10}},
		{Memory32Fixed{ReadWrite: true, Base: 0xd000_0000, Len: 0x1000},
			[]byte{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00}},
		{Memory32Fixed{Base: 0xfed00000, Len: 0x400},
			[]byte{0x86, 0x09, 0x00, 0x00, 0x00, 0x00, 0xd0, 0xfe, 0x00, 0x04, 0x00, 0x00}},
		{Interrupt{Edge: true, GSIs: []uint32{5}}, []byte{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00}},
		{Interrupt{ActiveLow: true, Shared: true, GSIs: []uint32{16, 17}},
			[]byte{0x89, 0x0a, 0x00, 0x0d, 0x02, 0x10, 0, 0, 0, 0x11, 0, 0, 0}},
		{WordBusNumber{Min: 0, Max: 0xff},
			[]byte{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01}},
		{WordIO{Min: 0x1000, Max: 0xffff},
			[]byte{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x10, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf0}},
		{DWordMemory{Min: 0xc000_0000, Max: 0xfdff_ffff},
			[]byte{0x87, 0x17, 0x00, 0x00, 0x0c, 0x01,
				0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x3e}},
		{QWordMemory{Cacheable: true, Min: 0x1_0000_0000, Max: 0x1_ffff_ffff},
			append([]byte{0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x03,
				0, 0, 0, 0, 0, 0, 0, 0,
				0, 0, 0, 0, 1, 0, 0, 0,
				0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0,
				0, 0, 0, 0, 0, 0, 0, 0},
				0, 0, 0, 0, 1, 0, 0, 0)},
	} {
		got, err := c.r.appendResource(nil)
		hexBytes(t, got, err, c.want, "resource")
	}
	got, err := Encode(ResourceTemplate(IO{Min: 0x505, Max: 0x505, Align: 1, Len: 1}))
	hexBytes(t, got, err, []byte{0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01, 0x79, 0x00}, "ResourceTemplate")

	for _, r := range []Resource{
		IO{Min: 2, Max: 1},
		IRQNoFlags{IRQs: []uint8{16}},
		Memory32Fixed{Base: 0xffff_f000, Len: 0x2000},
		Interrupt{},
		WordBusNumber{Min: 3, Max: 2},
		WordIO{Min: 0, Max: 0xffff}, // length 0x10000 does not fit
		DWordMemory{Min: 0, Max: 0xffff_ffff},
		QWordMemory{Min: 5, Max: 4},
	} {
		if _, err := Encode(ResourceTemplate(r)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

func TestInvalid(t *testing.T) {
	elems := make([]Object, 256)
	for i := range elems {
		elems[i] = Integer(0)
	}
	for _, o := range []Object{
		String("caf\xc3\xa9"),
		String("a\x00b"),
		EISAID("PNP0A0"),
		EISAID("pnp0A03"),
		EISAID("PNP0a03"),
		Package(elems...),
		Name("_HID", nil),
		Method("_STA", 8, false),
		Return(nil),
		Device("BAD!"),
		Scope(`\_SB`, Device("OK", Name("1X", Integer(0)))), // error from deep inside
		nil,
	} {
		if _, err := Encode(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%#v: %v", o, err)
		}
	}
}
