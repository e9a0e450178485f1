package machine

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/kvm"
)

func TestResidentBytes(t *testing.T) {
	page := unix.Getpagesize()
	b, err := unix.Mmap(-1, 0, 64*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(b)
	before, err := residentBytes([][]byte{b})
	if err != nil {
		t.Fatalf("residentBytes: %v", err)
	}
	for i := 0; i < 64; i += 4 {
		b[i*page] = 1
	}
	after, err := residentBytes([][]byte{b, nil})
	if err != nil {
		t.Fatalf("residentBytes: %v", err)
	}
	// Transparent huge pages may make more resident than was touched.
	if want := uint64(16 * page); after-before < want {
		t.Fatalf("after touching 16 pages: resident %d -> %d bytes, want at least %d more", before, after, want)
	}
	if after > uint64(len(b)) {
		t.Fatalf("resident %d bytes of a %d-byte mapping", after, len(b))
	}
}

func TestPresentPages(t *testing.T) {
	b := make([]byte, 8*4)
	b[7] = 0x80  // present
	b[15] = 0x40 // swapped, not present
	b[31] = 0x81 // present, other bits
	if n := presentPages(b); n != 2 {
		t.Fatalf("presentPages = %d, want 2", n)
	}
	if n := presentPages(b[:5]); n != 0 {
		t.Fatalf("presentPages of a short buffer = %d, want 0", n)
	}
}

// TestReportJSON checks the hand-written encoder against encoding/json: the
// same bytes for the documents the VMM writes, the same values for any.
func TestReportJSON(t *testing.T) {
	full := Report{StopReason: "poweroff", CPUs: 2, MemoryMiB: 512, StartToEntryMs: 270.125, StartToEntryCPUMs: 314,
		StartToInitMs: 6985.5, EntryToInitMs: 6715.375, ExitsTotal: 487, ExitsToInit: 351,
		VCPUExits: []kvm.ExitCounts{{IO: 486, Interrupted: 1}, {MMIO: 3, HLT: 1, Shutdown: 2, SystemEvent: 4, InternalError: 5, FailEntry: 6, Unknown: 7}},
		MaxRSSKiB: 132400, GuestRSSKiB: 123400}
	reports := []Report{
		{},
		full,
		{StopReason: "user-quit", CPUs: 1, MemoryMiB: 64, StartToEntryMs: 1e-7, StartToEntryCPUMs: 2.5e21, VCPUExits: []kvm.ExitCounts{}},
		{StopReason: "error", StartToEntryMs: 0.000001, StartToEntryCPUMs: 123456789.25, VCPUExits: []kvm.ExitCounts{{IO: math.MaxUint64}}, MaxRSSKiB: -1},
	}
	for i, r := range reports {
		want, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != string(want)+"\n" {
			t.Errorf("report %d:\n got %s\nwant %s", i, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		r := full
		r.StopReason = string([]byte{byte(rng.IntN(256)), '"', '\\', byte(rng.IntN(32)), 'x'})
		r.StartToEntryMs = math.Float64frombits(rng.Uint64())
		if math.IsNaN(r.StartToEntryMs) || math.IsInf(r.StartToEntryMs, 0) {
			continue
		}
		r.StartToInitMs = float64(rng.IntN(1e6)) / 1000
		r.ExitsToInit = rng.Uint64()
		var got, want map[string]any
		if err := json.Unmarshal(r.appendJSON(nil), &got); err != nil {
			t.Fatalf("%+v: %v\n%s", r, err, r.appendJSON(nil))
		}
		b, _ := json.Marshal(r)
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded\n got %v\nwant %v", got, want)
		}
	}
}
