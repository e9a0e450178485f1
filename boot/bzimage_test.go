package boot

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"
)

func TestLoadBzImage(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	o := goodBzOpts()
	o.trailer = 300 // a signature after syssize: not loaded
	img := makeBzImage(o)
	// Dirty the bytes just after the code, to see the trailer is not copied.
	if err := mem.WriteAt(bytes.Repeat([]byte{0x5a}, 512), KernelLoadAddr+uint64(o.codeLen)); err != nil {
		t.Fatal(err)
	}
	k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if k.LoadAddr != 0x100000 || k.Entry64 != 0x100200 {
		t.Errorf("LoadAddr %#x Entry64 %#x", k.LoadAddr, k.Entry64)
	}
	// pref_address 16 MiB is above the load address and 2 MiB-aligned.
	if k.RuntimeStart != 0x1000000 || k.End != 0x1200000 {
		t.Errorf("RuntimeStart %#x End %#x", k.RuntimeStart, k.End)
	}
	if k.InitrdAddrMax != 0x7fffffff || k.CmdlineSize != 2047 {
		t.Errorf("InitrdAddrMax %#x CmdlineSize %d", k.InitrdAddrMax, k.CmdlineSize)
	}
	h := k.Header
	if h.Version != 0x020f || h.SetupSects != 4 || h.KernelAlignment != 0x200000 || !h.RelocatableKernel ||
		h.XLoadFlags != 3 || h.PrefAddress != 0x1000000 || h.InitSize != 0x200000 || h.KernelInfoOffset != 0x1234 ||
		h.SysSize != 256 || h.BootFlag != 0xaa55 || h.MinAlignment != 21 {
		t.Errorf("header %+v", h)
	}
	if len(k.RawHeader) != 0x26c-0x1f1 || !bytes.Equal(k.RawHeader, img[0x1f1:0x26c]) {
		t.Errorf("raw header: %d bytes", len(k.RawHeader))
	}
	got := make([]byte, o.codeLen+16)
	if err := mem.ReadAt(got, KernelLoadAddr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:o.codeLen], img[5*512:5*512+o.codeLen]) {
		t.Error("protected-mode code not copied")
	}
	if !bytes.Equal(got[o.codeLen:], bytes.Repeat([]byte{0x5a}, 16)) {
		t.Error("bytes after syssize were loaded")
	}
}

func TestLoadBzImageVariants(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	for _, tc := range []struct {
		name      string
		mod       func(*bzOpts)
		wantStart uint64
		wantCode  int
	}{
		// setup_sects 0 means 4.
		{"setup_sects_0", func(o *bzOpts) { o.setupSects = 0 }, 0x1000000, 4096},
		{"setup_sects_1", func(o *bzOpts) { o.setupSects = 1 }, 0x1000000, 4096},
		// pref_address below the load address: align the load address up.
		{"low_pref", func(o *bzOpts) { o.prefAddr = 0 }, 0x200000, 4096},
		{"not_relocatable", func(o *bzOpts) { o.relocatable = false; o.prefAddr = 0x400000 }, 0x400000, 4096},
		// syssize rounds the code size up to 16 bytes.
		{"unrounded_code", func(o *bzOpts) { o.codeLen = 4090 }, 0x1000000, 4090},
		{"protocol_2_12", func(o *bzOpts) { o.version = 0x020c; o.jumpDisp = 0x66 }, 0x1000000, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := goodBzOpts()
			tc.mod(&o)
			img := makeBzImage(o)
			k, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if k.RuntimeStart != tc.wantStart || k.End != tc.wantStart+uint64(o.initSize) {
				t.Errorf("RuntimeStart %#x End %#x", k.RuntimeStart, k.End)
			}
			sects := max(int(o.setupSects), 0)
			if sects == 0 {
				sects = 4
			}
			got := make([]byte, tc.wantCode)
			if err := mem.ReadAt(got, KernelLoadAddr); err != nil {
				t.Fatal(err)
			}
			if off := (sects + 1) * 512; !bytes.Equal(got, img[off:off+tc.wantCode]) {
				t.Error("code not copied")
			}
		})
	}
}

func TestLoadBzImageSmallGuest(t *testing.T) {
	// 16 MiB of RAM cannot hold a kernel running at 16 MiB.
	mem := newTestMem(t, 16<<20)
	img := makeBzImage(goodBzOpts())
	if _, err := LoadBzImage(mem, bytes.NewReader(img), int64(len(img))); !errors.Is(err, ErrKernelDoesNotFit) {
		t.Fatalf("got %v", err)
	}
}

// countingReader counts ReadAt calls.
type countingReader struct {
	r     io.ReaderAt
	calls int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	return c.r.ReadAt(p, off)
}

func TestLoadBzImageFewReads(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	o := goodBzOpts()
	o.codeLen = 1 << 20
	img := makeBzImage(o)
	cr := &countingReader{r: bytes.NewReader(img)}
	if _, err := LoadBzImage(mem, cr, int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if cr.calls > 2 {
		t.Errorf("%d ReadAt calls", cr.calls)
	}
}

func TestLoadBzImageShortReader(t *testing.T) {
	// The size given is larger than what the reader has.
	mem := newTestMem(t, testMemSize)
	img := makeBzImage(goodBzOpts())
	_, err := LoadBzImage(mem, bytes.NewReader(img[:len(img)-10]), int64(len(img)))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
}

// TestLoadRealBzImage loads the kernel named by VMM_TEST_BZIMAGE (e.g. the
// Debian cloud kernel's vmlinuz), if set.
func TestLoadRealBzImage(t *testing.T) {
	f, size := openEnvFile(t, "VMM_TEST_BZIMAGE")
	mem := newTestMem(t, 256<<20)
	k, err := LoadBzImage(mem, f, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: protocol %#x, setup_sects %d, syssize %#x, init_size %#x, pref %#x, align %#x, xloadflags %#x, cmdline_size %d, runtime [%#x, %#x)",
		filepath.Base(f.Name()), k.Header.Version, k.Header.SetupSects, k.Header.SysSize, k.Header.InitSize,
		k.Header.PrefAddress, k.Header.KernelAlignment, k.Header.XLoadFlags, k.CmdlineSize, k.RuntimeStart, k.End)
	if k.Header.Version < 0x020f {
		t.Errorf("protocol %#x", k.Header.Version)
	}
	// The rest of the boot sequence, with a 16 MiB initrd.
	regions := mem.Regions()
	initrd, err := PlaceInitrd(regions, k.End, k.InitrdAddrMax, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	cmdline := "console=ttyS0 panic=-1"
	if err := WriteCmdline(mem, CmdlineAddr, cmdline, min(CmdlineMax, int(k.CmdlineSize)+1)); err != nil {
		t.Fatal(err)
	}
	err = WriteBootParams(mem, k, LinuxParams{
		CmdlineAddr: CmdlineAddr, CmdlineLen: len(cmdline),
		InitrdAddr: initrd, InitrdSize: 16 << 20, E820: E820Map(regions), RSDPAddr: RSDPAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initrd at %#x", initrd)
}

func FuzzLoadBzImage(f *testing.F) {
	f.Add(makeBzImage(goodBzOpts()))
	for _, img := range badBzImages() {
		f.Add(img.data)
	}
	mem := newTestMem(f, testMemSize)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := LoadBzImage(mem, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		// Whatever loads must describe itself consistently.
		if k.End <= k.RuntimeStart || k.End > LowRAMEnd || !mem.Contains(k.RuntimeStart, k.End-k.RuntimeStart) {
			t.Fatalf("inconsistent image: %+v", k)
		}
		if err := WriteBootParams(mem, k, LinuxParams{E820: E820Map(mem.Regions())}); err != nil {
			t.Fatalf("boot params for a loaded image: %v", err)
		}
	})
}
