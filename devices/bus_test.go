package devices

import (
	"errors"
	"math"
	"sync"
	"testing"
)

// recorder is a Device that remembers the last access and reads back a
// fixed byte.
type recorder struct {
	mu      sync.Mutex
	fill    byte
	lastOff uint64
	lastLen int
	writes  int
}

func (r *recorder) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOff, r.lastLen = offset, len(data)
	for i := range data {
		data[i] = r.fill
	}
}

func (r *recorder) Write(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOff, r.lastLen = offset, len(data)
	r.writes++
}

func TestBusRegisterRejects(t *testing.T) {
	b := NewBus("pio")
	d := &recorder{}
	if err := b.Register(0x3F8, 8, d); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		base, size uint64
		dev        Device
		overlap    bool
	}{
		{"nil device", 0x100, 1, nil, false},
		{"zero size", 0x100, 0, d, false},
		{"wraps", math.MaxUint64 - 1, 3, d, false},
		{"wraps far", 2, math.MaxUint64, d, false},
		{"same window", 0x3F8, 8, d, true},
		{"overlaps start", 0x3F0, 9, d, true},
		{"overlaps end", 0x3FF, 1, d, true},
		{"inside", 0x3FA, 2, d, true},
		{"covers", 0x300, 0x200, d, true},
	}
	for _, c := range cases {
		err := b.Register(c.base, c.size, c.dev)
		if err == nil {
			t.Errorf("%s: Register(%#x, %#x) succeeded", c.name, c.base, c.size)
			continue
		}
		if got := errors.Is(err, ErrOverlap); got != c.overlap {
			t.Errorf("%s: errors.Is(%v, ErrOverlap) = %v", c.name, err, got)
		}
	}
	// Adjacent windows on both sides are fine, as is one ending at 2^64.
	for _, w := range []struct{ base, size uint64 }{{0x3F0, 8}, {0x400, 1}, {math.MaxUint64, 1}, {0, 1}, {math.MaxUint64 - 0xF, 0xF}} {
		if err := b.Register(w.base, w.size, d); err != nil {
			t.Errorf("Register(%#x, %#x): %v", w.base, w.size, err)
		}
	}
}

func TestBusLookup(t *testing.T) {
	b := NewBus("mmio")
	a, c, e := &recorder{fill: 0xAA}, &recorder{fill: 0xCC}, &recorder{fill: 0xEE}
	// Register out of order to exercise the sorted insert.
	for _, r := range []struct {
		base, size uint64
		d          *recorder
	}{{0x2000, 0x100, c}, {0x1000, 0x10, a}, {math.MaxUint64 - 7, 8, e}} {
		if err := b.Register(r.base, r.size, r.d); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		addr uint64
		n    int
		dev  *recorder
		off  uint64
	}{
		{0x1000, 1, a, 0},
		{0x100F, 1, a, 0xF},
		{0x100C, 4, a, 0xC},
		{0x1008, 8, a, 8},
		{0x1010, 1, nil, 0}, // one past the end
		{0x0FFF, 1, nil, 0}, // one before
		{0x0FFF, 2, nil, 0}, // starts before the window
		{0x100F, 2, nil, 0}, // straddles the end
		{0x100D, 4, nil, 0}, // straddles the end
		{0x1009, 8, nil, 0}, // straddles the end
		{0x1000, 3, nil, 0}, // odd size
		{0x1000, 0, nil, 0}, // empty
		{0x1000, 16, nil, 0},
		{0x20FC, 4, c, 0xFC},
		{0x2100, 1, nil, 0},
		{0, 1, nil, 0},
		{math.MaxUint64, 1, e, 7},
		{math.MaxUint64 - 7, 8, e, 0},
		{math.MaxUint64 - 1, 4, nil, 0}, // would wrap
		{math.MaxUint64, 8, nil, 0},     // would wrap
	}
	for _, k := range cases {
		buf := make([]byte, k.n)
		for i := range buf {
			buf[i] = 0x11
		}
		ok := b.Read(k.addr, buf)
		if (k.dev != nil) != ok {
			t.Errorf("Read(%#x, %d) = %v", k.addr, k.n, ok)
			continue
		}
		if !ok {
			for _, v := range buf {
				if v != 0x11 {
					t.Errorf("Read(%#x, %d) refused but touched data", k.addr, k.n)
					break
				}
			}
			if b.Write(k.addr, buf) {
				t.Errorf("Write(%#x, %d) accepted", k.addr, k.n)
			}
			continue
		}
		if k.dev.lastOff != k.off || k.dev.lastLen != k.n {
			t.Errorf("Read(%#x, %d): device saw offset %#x len %d, want %#x %d", k.addr, k.n, k.dev.lastOff, k.dev.lastLen, k.off, k.n)
		}
		for _, v := range buf {
			if v != k.dev.fill {
				t.Errorf("Read(%#x, %d) = % x", k.addr, k.n, buf)
				break
			}
		}
		w := k.dev.writes
		if !b.Write(k.addr, buf) || k.dev.writes != w+1 || k.dev.lastOff != k.off {
			t.Errorf("Write(%#x, %d) not dispatched to offset %#x", k.addr, k.n, k.off)
		}
	}
}

func TestBusUnregister(t *testing.T) {
	b := NewBus("mmio")
	d := &recorder{}
	if err := b.Register(0x1000, 0x1000, d); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unregister(0x1001); err == nil {
		t.Error("Unregister at a non-base address succeeded")
	}
	got, err := b.Unregister(0x1000)
	if err != nil || got != Device(d) {
		t.Fatalf("Unregister = %v, %v", got, err)
	}
	if b.Read(0x1000, make([]byte, 1)) {
		t.Error("read reached an unregistered device")
	}
	// The window can be registered again elsewhere (a BAR moving).
	if err := b.Register(0x8000, 0x1000, d); err != nil {
		t.Fatal(err)
	}
	if !b.Read(0x8FFF, make([]byte, 1)) {
		t.Error("moved device not found")
	}
}

func TestBusLookupAllocatesNothing(t *testing.T) {
	b := NewBus("pio")
	for i := range uint64(64) {
		if err := b.Register(i*0x10, 8, Discard{}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 4)
	allocs := testing.AllocsPerRun(1000, func() {
		b.Read(0x1F4, buf)
		b.Write(0x3F0, buf)
		b.Read(0x1F9, buf) // a miss
	})
	if allocs != 0 {
		t.Errorf("lookups allocate %v times per run", allocs)
	}
}

// TestBusConcurrent runs lookups while the bus changes; with -race it checks
// that lookups need no lock.
func TestBusConcurrent(t *testing.T) {
	b := NewBus("mmio")
	d := &recorder{fill: 1}
	if err := b.Register(0, 0x100, d); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			buf := make([]byte, 8)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !b.Read(0x10, buf) {
					t.Error("stable device vanished")
					return
				}
				b.Write(0x1000, buf)
			}
		})
	}
	for range 200 {
		if err := b.Register(0x1000, 0x100, d); err != nil {
			t.Error(err)
		}
		if _, err := b.Unregister(0x1000); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
