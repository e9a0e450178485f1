package memory

import (
	"errors"
	"testing"
)

func newTestGuest(t *testing.T) *Guest {
	t.Helper()
	g, err := New([]RegionSpec{{Base: 0, Size: 1 << 20}, {Base: 4 << 30, Size: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestBoundsChecked(t *testing.T) {
	g := newTestGuest(t)
	cases := []struct {
		addr, n uint64
		ok      bool
	}{
		{0, 1 << 20, true},
		{1<<20 - 4, 4, true},
		{1<<20 - 3, 4, false}, // straddles end of first region
		{1 << 20, 1, false},   // in the hole
		{4 << 30, 64 << 10, true},
		{4<<30 + 1, 64 << 10, false},
		{^uint64(0) - 1, 4, false}, // overflow
		{0, ^uint64(0), false},
	}
	for _, c := range cases {
		_, err := g.Slice(c.addr, c.n)
		if (err == nil) != c.ok {
			t.Errorf("Slice(%#x, %#x) err=%v, want ok=%v", c.addr, c.n, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Slice(%#x, %#x) err=%v, want ErrOutOfRange", c.addr, c.n, err)
		}
	}
}

func TestLittleEndian(t *testing.T) {
	g := newTestGuest(t)
	if err := g.PutUint64(0x100, 0x1122334455667788); err != nil {
		t.Fatal(err)
	}
	b, _ := g.Uint8(0x100)
	w, _ := g.Uint16(0x100)
	d, _ := g.Uint32(0x104)
	if b != 0x88 || w != 0x7788 || d != 0x11223344 {
		t.Fatalf("got %#x %#x %#x", b, w, d)
	}
	if err := g.StoreUint32Atomic(0x200, 0xdeadbeef); err != nil {
		t.Fatal(err)
	}
	if v, _ := g.LoadUint32Atomic(0x200); v != 0xdeadbeef {
		t.Fatalf("atomic got %#x", v)
	}
	if _, err := g.LoadUint32Atomic(0x202); err == nil {
		t.Fatal("unaligned atomic access accepted")
	}
}

func TestNewRejectsBadLayouts(t *testing.T) {
	for _, specs := range [][]RegionSpec{
		nil,
		{{Base: 0, Size: 100}},
		{{Base: 0, Size: 8192}, {Base: 4096, Size: 4096}},
	} {
		if g, err := New(specs); err == nil {
			g.Close()
			t.Errorf("New(%v) succeeded", specs)
		}
	}
}

func TestZero(t *testing.T) {
	g, err := New([]RegionSpec{{Base: 0, Size: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	host := g.Regions()[0].Host()
	for _, c := range []struct{ addr, n uint64 }{
		{0x10, 0x20},             // inside one page: cleared
		{0x1003, 0x10000},        // just under releaseMin of whole pages
		{0x2345, 3<<20 - 0x1000}, // unaligned both ends, pages released
		{1 << 20, 2 << 20},       // aligned both ends
		{4<<20 - 0x1001, 0x1001}, // to the region's end
	} {
		for i := range host {
			host[i] = 0xa5
		}
		if err := g.Zero(c.addr, c.n); err != nil {
			t.Fatalf("Zero(%#x, %#x): %v", c.addr, c.n, err)
		}
		for i, b := range host {
			inside := uint64(i) >= c.addr && uint64(i) < c.addr+c.n
			if want := byte(0xa5); inside {
				want = 0
				if b != want {
					t.Fatalf("Zero(%#x, %#x): byte %#x is %#x, want 0", c.addr, c.n, i, b)
				}
			} else if b != want {
				t.Fatalf("Zero(%#x, %#x): byte %#x outside the range is %#x, want %#x", c.addr, c.n, i, b, want)
			}
		}
	}
	if err := g.Zero(4<<20-1, 2); err == nil {
		t.Error("Zero past the end succeeded")
	}
}

func TestDiscard(t *testing.T) {
	g, err := New([]RegionSpec{{Base: 0, Size: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	host := g.Regions()[0].Host()
	for _, c := range []struct{ addr, n, lo, hi uint64 }{
		{0x10, 0x20, 0, 0},                   // inside one page: nothing
		{0x1003, 0x1ffc, 0, 0},               // no whole page
		{0x1003, 0x3000, 0x2000, 0x4000},     // one whole page in the middle
		{2 << 20, 2 << 20, 2 << 20, 4 << 20}, // a huge page's worth, to the end
		{0x2345, 1 << 20, 0x3000, 0x102000},  // unaligned both ends
	} {
		for i := range host {
			host[i] = 0xa5
		}
		got, err := g.Discard(c.addr, c.n)
		if err != nil || got != c.hi-c.lo {
			t.Fatalf("Discard(%#x, %#x) = %#x, %v; want %#x", c.addr, c.n, got, err, c.hi-c.lo)
		}
		for i, b := range host {
			want := byte(0xa5)
			if uint64(i) >= c.lo && uint64(i) < c.hi {
				want = 0
			}
			if b != want {
				t.Fatalf("Discard(%#x, %#x): byte %#x is %#x, want %#x", c.addr, c.n, i, b, want)
			}
		}
	}
	for _, c := range [][2]uint64{{4 << 20, 4096}, {4<<20 - 4096, 8192}, {^uint64(0) - 10, 20}} {
		if _, err := g.Discard(c[0], c[1]); err == nil {
			t.Errorf("Discard(%#x, %#x) outside memory accepted", c[0], c[1])
		}
	}
}
