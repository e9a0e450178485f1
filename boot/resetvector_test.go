package boot

import (
	"bytes"
	"testing"

	"github.com/vmm-dev/vmm/memory"
)

func TestResetVectorPulsesI8042Reset(t *testing.T) {
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 2 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := WriteResetVector(mem); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16)
	if err := mem.ReadAt(got, ResetVectorAddr); err != nil {
		t.Fatal(err)
	}
	want := []byte{0xB0, 0xFE, 0xE6, 0x64, 0xF4, 0xEB, 0xFD}
	if !bytes.HasPrefix(got, want) {
		t.Fatalf("reset vector % x, want % x", got, want)
	}
	if ResetVectorAddr < ACPIEnd || ResetVectorAddr+16 > HighMemStart {
		t.Fatalf("reset vector %#x overlaps the ACPI area or leaves the BIOS area", ResetVectorAddr)
	}
}
