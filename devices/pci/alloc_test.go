package pci

import "testing"

func TestAllocatorNaturalAlignment(t *testing.T) {
	a, err := NewAllocator(0xC000_0000, 0xFE00_0000)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct{ size, want uint64 }{
		{0x1000, 0xC000_0000},
		{0x10_0000, 0xC010_0000}, // skips to 1 MiB alignment
		{0x4000, 0xC000_4000},    // reuses the hole
		{0x2000, 0xC000_2000},
		{0x1000, 0xC000_1000},
		{0x1000, 0xC000_8000},
	}
	for _, s := range steps {
		got, err := a.Allocate(s.size)
		if err != nil || got != s.want {
			t.Fatalf("Allocate(%#x) = %#x, %v; want %#x", s.size, got, err, s.want)
		}
	}
	for _, bad := range []uint64{0, 3, 0x1800} {
		if _, err := a.Allocate(bad); err == nil {
			t.Fatalf("Allocate(%#x) succeeded", bad)
		}
	}
	if _, err := a.Allocate(0x8000_0000); err == nil {
		t.Fatal("2 GiB BAR fit in a 992 MiB window")
	}
	if _, err := a.Allocate(1 << 63); err == nil {
		t.Fatal("huge BAR fit")
	}
}

func TestAllocatorExhaustion(t *testing.T) {
	a, err := NewAllocator(0x1000, 0x3000)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{0x1000, 0x2000} {
		if got, err := a.Allocate(0x1000); err != nil || got != want {
			t.Fatalf("Allocate = %#x, %v", got, err)
		}
	}
	if _, err := a.Allocate(0x10); err == nil {
		t.Fatal("allocation from a full window")
	}
	if _, err := NewAllocator(5, 5); err == nil {
		t.Fatal("empty window accepted")
	}
	b, _ := NewAllocator(0xFFFF_FFFF_FFFF_F000, 0xFFFF_FFFF_FFFF_FFFF)
	if _, err := b.Allocate(0x2000); err == nil {
		t.Fatal("allocation whose alignment overflows succeeded")
	}
}
