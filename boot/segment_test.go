package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/memory"
)

// sparseELF has segments with all-zero pages in the file (a gap between
// two runs of data, a zero page straddling unaligned offsets) and a large
// zero-filled tail, at file offsets that are not page-aligned.
func sparseELF() (img, text, data []byte) {
	text = make([]byte, 5*loadPage+0x123)
	copy(text, pattern(0x800, 1))                      // data, then zeros to the next page
	copy(text[3*loadPage+0x10:], pattern(loadPage, 7)) // data straddling two pages
	text[len(text)-1] = 0x5a                           // the last, partial page
	data = append(make([]byte, loadPage), pattern(0x300, 4)...)
	notes := makeNotes(4, entryNote(0x100240, 4))
	img = makeELF(0,
		elfSeg{typ: elfPTLoad, off: 0x1200, paddr: 0x100200, filesz: uint64(len(text)), m: uint64(len(text)), align: 0x1000, data: text},
		elfSeg{typ: elfPTLoad, off: 0x8000, paddr: 0x300000, filesz: uint64(len(data)), m: 0x120000, align: 0x1000, data: data},
		elfSeg{typ: elfPTNote, off: 0x9800, filesz: uint64(len(notes)), align: 4, data: notes},
	)
	return img, text, data
}

// TestLoadPVHFromFile loads kernels from a file (mapped, zero pages
// skipped) and from a bytes.Reader into memory dirtied beforehand, and
// expects the segments copied and zero-filled, and nothing else changed.
func TestLoadPVHFromFile(t *testing.T) {
	const dirty, span = 0xcc, 8 << 20
	sparse, text, data := sparseELF()
	want := bytes.Repeat([]byte{dirty}, span)
	copy(want[0x100200:], text)
	clear(want[0x300000 : 0x300000+0x120000])
	copy(want[0x300000:], data)
	f := writeAndOpen(t, filepath.Join(t.TempDir(), "vmlinux"), sparse)
	for name, r := range map[string]interface {
		ReadAt([]byte, int64) (int, error)
	}{"file": f, "reader": bytes.NewReader(sparse)} {
		mem := newTestMem(t, testMemSize)
		if err := mem.WriteAt(bytes.Repeat([]byte{dirty}, span), 0); err != nil {
			t.Fatal(err)
		}
		k, err := LoadPVH(mem, r, int64(len(sparse)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k.Entry32 != 0x100240 || k.Start != 0x100200 || k.End != 0x420000 {
			t.Errorf("%s: %+v", name, k)
		}
		got := make([]byte, span)
		if err := mem.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Errorf("%s: guest byte %#x is %#x, want %#x", name, i, got[i], want[i])
		}
	}
}

// writeAndOpen writes data to path and opens it for reading until the
// test ends.
func writeAndOpen(t testing.TB, path string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// openEnvFile opens the file the environment variable env names, for the
// tests and benchmarks that load a real kernel, and returns it with its
// size; without the variable the test is skipped.
func openEnvFile(tb testing.TB, env string) (*os.File, int64) {
	tb.Helper()
	path := os.Getenv(env)
	if path == "" {
		tb.Skip(env + " not set")
	}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return f, st.Size()
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestCopyNonZeroSkipsZeroPages checks that all-zero source pages leave
// the destination alone (on fresh memory: untouched) and that the rest is
// copied, for unaligned destinations.
func TestCopyNonZeroSkipsZeroPages(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	const addr = 0x200800
	if err := mem.WriteAt(bytes.Repeat([]byte{0xcc}, 4*loadPage), 0x200000); err != nil {
		t.Fatal(err)
	}
	src := make([]byte, 3*loadPage)
	src[loadPage-0x800] = 1 // in the second guest page [0x201000, 0x202000)
	if err := copyNonZero(mem, addr, src); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4*loadPage)
	if err := mem.ReadAt(got, 0x200000); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		a := 0x200000 + i
		want := byte(0xcc) // outside src, or in a zero page of src: left alone
		if a >= 0x201000 && a < 0x202000 {
			want = 0 // the page with data is written whole
			if a == addr+loadPage-0x800 {
				want = 1
			}
		}
		if b != want {
			t.Fatalf("byte at %#x is %#x, want %#x", a, b, want)
		}
	}
}

// TestLoadSegmentFileCutShort: a file shorter than its mapping faults when
// read past its end; the load fails with an error instead of crashing.
func TestLoadSegmentFileCutShort(t *testing.T) {
	f := writeAndOpen(t, filepath.Join(t.TempDir(), "short"), pattern(loadPage, 3))
	mem := newTestMem(t, testMemSize)
	// Three pages from a one-page file: LoadPVH would refuse this
	// (checkInFile); the file shrinking after that check looks the same.
	err := loadSegment(mem, f, 0, 0x100000, 3*loadPage)
	if err == nil || !strings.Contains(err.Error(), "file changed while loading") {
		t.Fatalf("loadSegment past the end of the file: %v", err)
	}
	got := make([]byte, loadPage)
	if err := mem.ReadAt(got, 0x100000); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern(loadPage, 3)) {
		t.Error("the page before the end was not copied")
	}
}

// TestLoadSegmentsFileCutShort: the same with the windows copied on
// several goroutines, each of which must turn its fault into an error.
func TestLoadSegmentsFileCutShort(t *testing.T) {
	f := writeAndOpen(t, filepath.Join(t.TempDir(), "short"), pattern(loadPage, 3))
	mem := newTestMem(t, testMemSize)
	loads := []elfPhdr{
		{Type: elfPTLoad, Offset: 0, Paddr: 0x100000, Filesz: 3 * loadPage, Memsz: 3 * loadPage},
		{Type: elfPTLoad, Offset: loadPage, Paddr: 0x400000, Filesz: 2 * loadWindow, Memsz: 2 * loadWindow},
	}
	err := loadSegments(mem, f, loads)
	if err == nil || !strings.Contains(err.Error(), "file changed while loading") {
		t.Fatalf("loadSegments past the end of the file: %v", err)
	}
}

// FuzzLoadPVHFile loads each input from a file (mapped, zero pages
// skipped) and from a bytes.Reader into memory dirtied the same way, and
// requires the same outcome and the same guest memory.
func FuzzLoadPVHFile(f *testing.F) {
	f.Add(goodELF(4))
	sparse, _, _ := sparseELF()
	f.Add(sparse)
	for _, img := range badELFs() {
		f.Add(img.data)
	}
	const span = 8 << 20
	dirty := bytes.Repeat([]byte{0xcc}, span)
	memFile, memReader := newTestMem(f, testMemSize), newTestMem(f, testMemSize)
	path := filepath.Join(f.TempDir(), "vmlinux")
	f.Fuzz(func(t *testing.T, data []byte) {
		file := writeAndOpen(t, path, data)
		for _, m := range []interface{ WriteAt([]byte, uint64) error }{memFile, memReader} {
			if err := m.WriteAt(dirty, 0); err != nil {
				t.Fatal(err)
			}
		}
		kf, errFile := LoadPVH(memFile, file, int64(len(data)))
		kr, errReader := LoadPVH(memReader, bytes.NewReader(data), int64(len(data)))
		if (errFile == nil) != (errReader == nil) {
			t.Fatalf("from the file: %v; from the reader: %v", errFile, errReader)
		}
		if errFile != nil {
			return
		}
		if *kf != *kr {
			t.Fatalf("from the file %+v, from the reader %+v", kf, kr)
		}
		// Both memories have seen the same loads, so they must agree
		// beyond the dirtied span too.
		n := max(span, kf.End)
		a, _ := memFile.Slice(0, n)
		b, _ := memReader.Slice(0, n)
		if i := firstDiff(a, b); i >= 0 {
			t.Fatalf("guest byte %#x: %#x from the file, %#x from the reader", i, a[i], b[i])
		}
	})
}

// BenchmarkLoadRealPVH loads VMM_TEST_VMLINUX into fresh guest memory, as
// vmm does at every start with a vmlinux.
func BenchmarkLoadRealPVH(b *testing.B) {
	f, size := openEnvFile(b, "VMM_TEST_VMLINUX")
	for b.Loop() {
		mem, err := memory.New(RAMRegions(512 << 20))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := LoadPVH(mem, f, size); err != nil {
			b.Fatal(err)
		}
		mem.Close()
	}
}
