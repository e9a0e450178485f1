package kvm

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

func statValue(t *testing.T, stats []Stat, name string) uint64 {
	t.Helper()
	for _, s := range stats {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("no counter %q in %d counters", name, len(stats))
	return 0
}

// TestStats reads a vCPU's counters around a guest that exits to user
// space four times: KVM counts those exits, and every other one it
// handled itself, in "exits". (Which exits also count as "io_exits" is up
// to the vendor module: the emulating backend counts none.)
func TestStats(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	code := []byte{
		0xb9, 0x03, 0x00, // mov cx, 3
		0xba, 0xf8, 0x03, // 1: mov dx, 0x3f8
		0xee,       // out dx, al
		0xe2, 0xfa, // loop 1b
		0xf4, // hlt
	}
	vm, _ := testVM(t, 1<<16, code)
	if n, err := vm.CheckExtension(CapBinaryStatsFD); err != nil || n == 0 {
		t.Skipf("KVM_CAP_BINARY_STATS_FD: %d, %v", n, err)
	}
	c := realModeVCPU(t, vm)
	s, err := c.OpenStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	before, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		wantIO(t, run(t, c), 0x3f8, 1, true)
	}
	wantHLT(t, run(t, c))
	after, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if exits := statValue(t, after, "exits") - statValue(t, before, "exits"); exits < 4 {
		t.Errorf("%d exits, want at least 4", exits)
	}
	statValue(t, after, "io_exits")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// statsDesc encodes one descriptor: flags, size, offset, a nameSize-byte name.
func statsDesc(flags uint32, size uint16, offset uint32, name string, nameSize int) []byte {
	d := make([]byte, statsDescFixed+nameSize)
	binary.LittleEndian.PutUint32(d[0:], flags)
	binary.LittleEndian.PutUint16(d[6:], size)
	binary.LittleEndian.PutUint32(d[8:], offset)
	copy(d[statsDescFixed:], name)
	return d
}

func TestParseStatsDescs(t *testing.T) {
	const nameSize = 48
	var b []byte
	b = append(b, statsDesc(0, 1, 0, "exits", nameSize)...)
	b = append(b, statsDesc(3, 32, 8, "halt_poll_hist", nameSize)...) // a histogram: skipped
	b = append(b, statsDesc(1, 1, 8+32*8, "guest_mode", nameSize)...)
	b = append(b, statsDesc(2, 1, 4, "misaligned", nameSize)...) // skipped
	s, err := parseStatsDescs(b, 4, nameSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.names) != 2 || s.names[0] != "exits" || s.names[1] != "guest_mode" || s.offsets[1] != 8+32*8 {
		t.Errorf("counters %q at %v", s.names, s.offsets)
	}
	if s.dataLen != 8+33*8 {
		t.Errorf("data spans %d bytes, want %d", s.dataLen, 8+33*8)
	}
	for _, bad := range []struct {
		name     string
		b        []byte
		n, nsize int
	}{
		{"short", b[:len(b)-1], 4, nameSize},
		{"no name", b, 4, 0},
		{"too many", b, maxStatsDescs + 1, nameSize},
		{"beyond 1 MiB", statsDesc(0, 1, maxStatsFileBytes, "far", nameSize), 1, nameSize},
	} {
		if _, err := parseStatsDescs(bad.b, bad.n, bad.nsize); !errors.Is(err, errStatsLayout) {
			t.Errorf("%s: %v, want errStatsLayout", bad.name, err)
		}
	}
}

func FuzzParseStatsDescs(f *testing.F) {
	f.Add(statsDesc(0, 1, 0, "exits", 8), 1, 8)
	f.Add(append(statsDesc(0, 1, 0, "exits", 8), statsDesc(4, 0xffff, 0xfffffff8, "h", 8)...), 2, 8)
	f.Fuzz(func(t *testing.T, b []byte, n, nameSize int) {
		s, err := parseStatsDescs(b, n, nameSize)
		if err != nil {
			return
		}
		for i, off := range s.offsets {
			if int(off)+8 > s.dataLen || s.names[i] == "" {
				t.Fatalf("counter %q at %d outside %d bytes", s.names[i], off, s.dataLen)
			}
		}
	})
}
