package blk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tempFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

func TestOpenDiskErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDisk(filepath.Join(dir, "missing"), true); err == nil {
		t.Fatal("opened a missing file")
	}
	if _, err := OpenDisk(dir, true); err == nil {
		t.Fatal("opened a directory")
	}
	if _, err := OpenDisk(tempFile(t, "empty", nil), false); err == nil {
		t.Fatal("opened an empty file")
	}
	if _, err := OpenDisk(tempFile(t, "small", make([]byte, 511)), false); err == nil {
		t.Fatal("opened a file smaller than a sector")
	}
	ro := tempFile(t, "ro", make([]byte, 512))
	if err := os.Chmod(ro, 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root may open it for writing anyway
		if _, err := OpenDisk(ro, false); err == nil {
			t.Fatal("opened a read-only file for writing")
		}
	}
	d, err := OpenDisk(ro, true)
	if err != nil {
		t.Fatalf("read-only open of a read-only file: %v", err)
	}
	d.Close()
}

func TestDiskLocks(t *testing.T) {
	path := tempFile(t, "shared.img", make([]byte, 4096))
	open := func(readOnly bool) (*Disk, error) { return OpenDisk(path, readOnly) }

	// Read-only disks share the file.
	r1, err := open(true)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := open(true)
	if err != nil {
		t.Fatalf("second read-only open: %v", err)
	}
	// A writer is refused while a reader holds it.
	if _, err := open(false); !errors.Is(err, ErrInUse) {
		t.Fatalf("writable open beside readers: %v, want ErrInUse", err)
	}
	r1.Close()
	r2.Close()

	// A writer excludes other writers and readers, until it closes.
	w, err := open(false)
	if err != nil {
		t.Fatalf("writable open of a free file: %v", err)
	}
	for _, ro := range []bool{false, true} {
		_, err := open(ro)
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
			t.Errorf("open (readOnly %v) beside a writer: %v, want ErrInUse naming the file", ro, err)
		}
	}
	w.Close()
	w, err = open(false)
	if err != nil {
		t.Fatalf("writable open after the writer closed: %v", err)
	}
	w.Close()
}

func TestDiskCapacityRoundsDown(t *testing.T) {
	content := pattern(3*512 + 100)
	p := tempFile(t, "odd.img", content)
	d, err := OpenDisk(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Sectors() != 3 {
		t.Fatalf("capacity %d sectors, want 3", d.Sectors())
	}
	if d.BlockSize() < SectorSize {
		t.Fatalf("block size %d", d.BlockSize())
	}
}

func TestDiskReadWriteVectored(t *testing.T) {
	const n = 1500 // more buffers than one preadv takes
	p := tempFile(t, "v.img", make([]byte, n*512))
	d, err := OpenDisk(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src := pattern(n * 512)
	var bufs [][]byte
	for i := 0; i < n; i++ {
		bufs = append(bufs, src[i*512:(i+1)*512], nil) // empty buffers are skipped
	}
	if err := d.WriteAt(bufs, 0); err != nil {
		t.Fatal(err)
	}
	if bufs[2] == nil || len(bufs[0]) != 512 {
		t.Fatal("WriteAt modified the caller's slice")
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, src) {
		t.Fatal("file content differs after WriteAt")
	}
	dst := make([]byte, n*512)
	var rbufs [][]byte
	for i := 0; i < n*512; i += 300 {
		rbufs = append(rbufs, dst[i:min(i+300, n*512)])
	}
	if err := d.ReadAt(rbufs, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, src) {
		t.Fatal("ReadAt content differs")
	}
	// Reading past the end of the file is an error, not a short success.
	if err := d.ReadAt([][]byte{make([]byte, 1024)}, uint64(n*512-512)); err == nil {
		t.Fatal("short read succeeded")
	}
}

func TestDiskReadOnly(t *testing.T) {
	content := pattern(4096)
	p := tempFile(t, "ro.img", content)
	d, err := OpenDisk(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.ReadOnly() || d.CanDiscard() {
		t.Fatal("read-only disk claims writes or discard")
	}
	if err := d.WriteAt([][]byte{make([]byte, 512)}, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteAt: %v", err)
	}
	if err := d.Discard(0, 512); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Discard: %v", err)
	}
	if err := d.WriteZeroes(0, 512, false); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("WriteZeroes: %v", err)
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, content) {
		t.Fatal("read-only file changed")
	}
}

func TestDiskZeroing(t *testing.T) {
	const size = 64 << 10
	for _, mode := range []string{"discard", "zero-range", "unmap", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			content := pattern(size)
			p := tempFile(t, "z.img", content)
			d, err := OpenDisk(p, false)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			off, n := uint64(4096), uint64(8192+512)
			switch mode {
			case "discard":
				if !d.CanDiscard() {
					t.Skip("file system cannot punch holes")
				}
				err = d.Discard(off, n)
			case "zero-range":
				err = d.WriteZeroes(off, n, false)
			case "unmap":
				err = d.WriteZeroes(off, n, true)
			case "fallback":
				d.zeroRange.Store(false)
				d.punchHole = false
				err = d.WriteZeroes(off, n, true)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			clear(content[off : off+n])
			if !bytes.Equal(got, content) {
				t.Fatal("wrong content after zeroing")
			}
		})
	}
}

func TestDiskID(t *testing.T) {
	id := diskID("/var/lib/vm/root.img")
	if string(bytes.TrimRight(id[:], "\x00")) != "root.img" {
		t.Fatalf("id %q", id)
	}
	id = diskID("/x/a b\tc\xff")
	if string(bytes.TrimRight(id[:], "\x00")) != "a_b_c_" {
		t.Fatalf("id %q", id)
	}
	long1 := diskID("/a/" + strings.Repeat("x", 30) + "1")
	long2 := diskID("/a/" + strings.Repeat("x", 30) + "2")
	if long1 == long2 {
		t.Fatal("long names collide")
	}
	if !strings.HasPrefix(string(long1[:]), strings.Repeat("x", 11)+"~") || bytes.IndexByte(long1[:], 0) != -1 {
		t.Fatalf("long id %q", long1)
	}
	p := tempFile(t, "serial.img", make([]byte, 512))
	d, err := OpenDisk(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.ID(); string(bytes.TrimRight(got[:], "\x00")) != "serial.img" {
		t.Fatalf("disk id %q", got)
	}
}
