package boot

import (
	"bytes"
	"testing"
)

func TestLoadPVH(t *testing.T) {
	for _, descSize := range []int{4, 8} {
		mem := newTestMem(t, testMemSize)
		// Dirty the data segment's tail to see it zero-filled.
		if err := mem.WriteAt(bytes.Repeat([]byte{0xcc}, 0x3000), 0x200000); err != nil {
			t.Fatal(err)
		}
		img := goodELF(descSize)
		k, err := LoadPVH(mem, bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("desc %d: %v", descSize, err)
		}
		if k.Entry32 != 0x100040 || k.Start != 0x100000 || k.End != 0x203000 {
			t.Errorf("desc %d: %+v", descSize, k)
		}
		text := make([]byte, 0x400)
		if err := mem.ReadAt(text, 0x100000); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(text, pattern(0x400, 1)) {
			t.Error("text segment not copied")
		}
		data := make([]byte, 0x3000)
		if err := mem.ReadAt(data, 0x200000); err != nil {
			t.Fatal(err)
		}
		want := append(pattern(0x100, 2), make([]byte, 0x2f00)...)
		if !bytes.Equal(data, want) {
			t.Error("data segment not copied and zero-filled")
		}
	}
}

func TestLoadPVHNotesAligned8(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	n := makeNotes(8, note{name: "GNU\x00\x00", typ: 5, desc: pattern(12, 0)}, entryNote(0x100010, 8))
	img := makeELF(0,
		elfSeg{typ: elfPTLoad, off: 0x200, paddr: 0x100000, filesz: 0x100, m: 0x100, data: pattern(0x100, 1)},
		elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 8, data: n})
	k, err := LoadPVH(mem, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if k.Entry32 != 0x100010 {
		t.Errorf("entry %#x", k.Entry32)
	}
}

func TestLoadPVHFewReads(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	img := goodELF(8)
	cr := &countingReader{r: bytes.NewReader(img)}
	if _, err := LoadPVH(mem, cr, int64(len(img))); err != nil {
		t.Fatal(err)
	}
	// ELF header, program headers, one note segment, two PT_LOADs.
	if cr.calls != 5 {
		t.Errorf("%d ReadAt calls", cr.calls)
	}
}

// TestLoadRealPVH loads the vmlinux named by VMM_TEST_VMLINUX, if set.
func TestLoadRealPVH(t *testing.T) {
	f, size := openEnvFile(t, "VMM_TEST_VMLINUX")
	mem := newTestMem(t, 256<<20)
	cr := &countingReader{r: f}
	k, err := LoadPVH(mem, cr, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entry32 %#x, segments [%#x, %#x), %d reads", k.Entry32, k.Start, k.End, cr.calls)
	// The same from the file itself (mapped, zero pages skipped).
	mapped := newTestMem(t, 256<<20)
	if _, err := LoadPVH(mapped, f, size); err != nil {
		t.Fatal(err)
	}
	a, _ := mem.Slice(k.Start, k.End-k.Start)
	b, _ := mapped.Slice(k.Start, k.End-k.Start)
	if !bytes.Equal(a, b) {
		t.Error("loading from the file gave other guest memory than reading it")
	}
}

func FuzzLoadPVH(f *testing.F) {
	f.Add(goodELF(4))
	f.Add(goodELF(8))
	for _, img := range badELFs() {
		f.Add(img.data)
	}
	mem := newTestMem(f, testMemSize)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := LoadPVH(mem, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if k.Start < KernelLoadAddr || k.End <= k.Start || k.Entry32 < k.Start || k.Entry32 >= k.End {
			t.Fatalf("inconsistent kernel: %+v", k)
		}
	})
}
