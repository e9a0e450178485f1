package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmm-dev/vmm/memory"
)

// A crafted kernel proper: two segments (text with the entry; data with a
// bss), and a relocation table with one field of each kind.
const (
	ukBase      = 0x1000000
	ukEntry     = 0x1000040
	uk64Field   = 0x1000100 // holds a kernel address (64-bit relocation)
	ukInvField  = 0x1000200 // holds an offset (inverse 32-bit relocation)
	uk32Field   = 0x1200010 // holds a sign-extended kernel address (32-bit)
	uk64Value   = 0xffffffff81000500
	ukInvValue  = 0x00123456
	uk32Value   = 0x81000040
	ukTextOff   = 0x1000
	ukTextSize  = 0x3000
	ukDataOff   = 0x4000
	ukDataSize  = 0x1000
	ukDataMem   = 0x5000
	ukDataPaddr = 0x1200000
)

// craftedKernel returns the kernel proper's file (ELF, then relocations).
func craftedKernel() []byte {
	text, data := pattern(ukTextSize, 1), pattern(ukDataSize, 2)
	le := binary.LittleEndian
	le.PutUint64(text[uk64Field-ukBase:], uk64Value)
	le.PutUint32(text[ukInvField-ukBase:], ukInvValue)
	le.PutUint32(data[uk32Field-ukDataPaddr:], uk32Value)
	elf := makeELF(0,
		elfSeg{typ: elfPTLoad, off: ukTextOff, paddr: ukBase, filesz: ukTextSize, m: ukTextSize, align: 0x200000, data: text},
		elfSeg{typ: elfPTLoad, off: ukDataOff, paddr: ukDataPaddr, filesz: ukDataSize, m: ukDataMem, align: 0x200000, data: data},
	)
	le.PutUint64(elf[24:], ukEntry)
	addr := func(paddr uint32) uint32 { return paddr + 0x80000000 }
	// In file order: 0, 64-bit entries, 0, inverse entries, 0, 32-bit entries.
	for _, v := range []uint32{0, addr(uk64Field), 0, addr(ukInvField), 0, addr(uk32Field)} {
		elf = le.AppendUint32(elf, v)
	}
	return elf
}

// craftedBzImage wraps a kernel proper's payload in a bzImage whose
// decompressor does or does not carry the KASLR message.
func craftedBzImage(payload []byte, kaslr bool) []byte {
	code := append(pattern(64, 5), payload...)
	if kaslr {
		code = append(code, "...."+kaslrMessage+"...."...)
	}
	o := goodBzOpts()
	o.codeLen = len(code)
	img := makeBzImage(o)
	setup := (int(o.setupSects) + 1) * 512
	copy(img[setup:], code)
	binary.LittleEndian.PutUint32(img[hdrPayloadOffset:], 64)
	binary.LittleEndian.PutUint32(img[hdrPayloadLength:], uint32(len(payload)))
	return img
}

func openCrafted(t *testing.T, img []byte) (*BzImagePayload, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return openBzImageFile(t, path)
}

// openBzImageFile runs OpenBzImage on the file at path; the file and the
// payload are closed when the test ends.
func openBzImageFile(t testing.TB, path string) (*BzImagePayload, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenBzImage(f, st.Size())
	if err == nil {
		t.Cleanup(p.Close)
	}
	return p, err
}

// randomWords is a random source that yields the given 64-bit words.
func randomWords(v ...uint64) *bytes.Reader {
	var b []byte
	for _, w := range v {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return bytes.NewReader(b)
}

func TestUnpackBzImage(t *testing.T) {
	kernel := craftedKernel()
	// Small chunks: segments and the relocation table straddle them.
	payload := lz4LegacyFrame(kernel, 0x1800)
	const physPick, virtPick = 5, 300
	for _, tc := range []struct {
		name              string
		kaslr, randomize  bool
		wantPhys, wantOff uint64
	}{
		{"kaslr", true, true, ukBase + physPick*0x200000, virtPick * 0x200000},
		{"nokaslr", true, false, ukBase, 0},
		{"built without kaslr", false, true, ukBase, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := openCrafted(t, craftedBzImage(payload, tc.kaslr))
			if err != nil {
				t.Fatal(err)
			}
			// The span is the kernel with its bss in 2 MiB pages: 4 MiB.
			if p.Span() != 0x400000 || p.MinAddr() != ukBase || p.KASLR() != tc.kaslr {
				t.Fatalf("span %#x, min %#x, kaslr %v", p.Span(), p.MinAddr(), p.KASLR())
			}
			mem := newTestMem(t, testMemSize)
			// 64 MiB of RAM: 23 physical slots from 16 MiB; 503 virtual.
			k, err := p.Load(mem, Placement{Limit: testMemSize, Randomize: tc.randomize, Rand: randomWords(23*1000+physPick, 503*7+virtPick)})
			if err != nil {
				t.Fatal(err)
			}
			if k.LoadAddr != tc.wantPhys || k.VirtOffset != tc.wantOff || k.KASLR != (tc.wantOff != 0) {
				t.Fatalf("loaded at %#x, virtual offset %#x, KASLR %v", k.LoadAddr, k.VirtOffset, k.KASLR)
			}
			if k.Entry64 != k.LoadAddr+ukEntry-ukBase || k.End != k.LoadAddr+0x400000 {
				t.Fatalf("entry %#x, end %#x", k.Entry64, k.End)
			}
			// Segments where they go, relocated by the virtual offset.
			text, data := make([]byte, ukTextSize), make([]byte, ukDataMem)
			mustRead(t, mem, text, k.LoadAddr)
			mustRead(t, mem, data, k.LoadAddr+ukDataPaddr-ukBase)
			want := craftedKernel()
			le := binary.LittleEndian
			wantText, wantData := want[ukTextOff:ukTextOff+ukTextSize], want[ukDataOff:ukDataOff+ukDataSize]
			le.PutUint64(wantText[uk64Field-ukBase:], uk64Value+tc.wantOff)
			le.PutUint32(wantText[ukInvField-ukBase:], ukInvValue-uint32(tc.wantOff))
			le.PutUint32(wantData[uk32Field-ukDataPaddr:], uk32Value+uint32(tc.wantOff))
			if !bytes.Equal(text, wantText) {
				t.Error("text segment differs")
			}
			if !bytes.Equal(data[:ukDataSize], wantData) || !bytes.Equal(data[ukDataSize:], make([]byte, ukDataMem-ukDataSize)) {
				t.Error("data segment or its bss differs")
			}
			// The zero page says whether the kernel was randomized.
			if err := WriteBootParams(mem, k, LinuxParams{E820: E820Map(mem.Regions())}); err != nil {
				t.Fatal(err)
			}
			flags, _ := mem.Uint8(ZeroPageAddr + hdrLoadFlags)
			if (flags&LoadFlagKASLR != 0) != k.KASLR {
				t.Fatalf("loadflags %#x, KASLR %v", flags, k.KASLR)
			}
		})
	}
}

func mustRead(t *testing.T, mem interface{ ReadAt([]byte, uint64) error }, b []byte, addr uint64) {
	t.Helper()
	if err := mem.ReadAt(b, addr); err != nil {
		t.Fatal(err)
	}
}

// TestUnpackParallel loads the crafted kernel with its chunks decoded at
// once, as packed evenly and unevenly, and compares guest memory with the
// chunk-by-chunk load.
func TestUnpackParallel(t *testing.T) {
	kernel := craftedKernel()
	const stride = 0x1800
	frame := func(chunks ...int) []byte {
		le := binary.LittleEndian
		b := le.AppendUint32(nil, lz4LegacyMagic)
		rest := kernel
		for _, n := range chunks {
			n = min(n, len(rest))
			block := lz4Literals(rest[:n])
			b = append(le.AppendUint32(b, uint32(len(block))), block...)
			rest = rest[n:]
		}
		if len(rest) != 0 {
			t.Fatalf("%d bytes left over", len(rest))
		}
		return le.AppendUint32(b, uint32(len(kernel)))
	}
	load := func(t *testing.T, f []byte, workers int) ([]byte, *BzImagePayload) {
		p, err := openCrafted(t, craftedBzImage(f, true))
		if err != nil {
			t.Fatal(err)
		}
		p.workers, p.stride = workers, stride
		mem := newTestMem(t, testMemSize)
		k, err := p.Load(mem, Placement{Limit: testMemSize, Randomize: true, Rand: randomWords(7, 11)})
		if err != nil {
			t.Fatal(err)
		}
		img, err := mem.Slice(k.LoadAddr, p.Span())
		if err != nil {
			t.Fatal(err)
		}
		return img, p
	}
	even := frame(stride, stride, stride, stride)
	want, p := load(t, even, 1)
	if !p.evenChunks() || len(p.chunks) != 4 {
		t.Fatalf("%d chunks, even %v", len(p.chunks), p.evenChunks())
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"even", even},
		// The second chunk is short and the third long: four chunks, the
		// right total, but not where the stride puts them.
		{"uneven", frame(stride, stride-0x800, stride+0x800, stride)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, p := load(t, tc.frame, 3)
			if !p.evenChunks() {
				t.Fatal("not taken for even chunks: the parallel decoder was not tried")
			}
			if !bytes.Equal(got, want) {
				t.Fatal("guest memory differs from the chunk-by-chunk load")
			}
		})
	}
}

func TestUnpackBzImageErrors(t *testing.T) {
	le := binary.LittleEndian
	kernel := craftedKernel()
	good := lz4LegacyFrame(kernel, 0x1800)
	t.Run("not lz4", func(t *testing.T) {
		gz := append([]byte{0x1f, 0x8b, 8, 0}, make([]byte, 60)...)
		if _, err := openCrafted(t, craftedBzImage(gz, true)); !errors.Is(err, ErrNotUnpackable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("too many chunks", func(t *testing.T) {
		// Over 5000 chunks of 5 bytes: valid, but not what a kernel build makes.
		if _, err := openCrafted(t, craftedBzImage(lz4LegacyFrame(kernel, 5), true)); !errors.Is(err, ErrNotUnpackable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("declared size wrong", func(t *testing.T) {
		bad := bytes.Clone(good)
		le.PutUint32(bad[len(bad)-4:], uint32(len(kernel)+1))
		p, err := openCrafted(t, craftedBzImage(bad, true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Load(newTestMem(t, testMemSize), Placement{Limit: testMemSize}); !errors.Is(err, ErrMalformedKernel) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("corrupt chunk", func(t *testing.T) {
		bad := bytes.Clone(good)
		// The second chunk's token asks for more literals than it has.
		second := 4 + 4 + int(le.Uint32(bad[4:]))
		bad[second+4] = 0xf0
		bad[second+5] = 0xfe
		// Open decodes the first 64 KiB for the ELF headers and finds it.
		if _, err := openCrafted(t, craftedBzImage(bad, true)); !errors.Is(err, ErrMalformedKernel) {
			t.Fatalf("got %v", err)
		}
	})
	// loadRandomized opens and loads a kernel proper, placed at random.
	loadRandomized := func(t *testing.T, k []byte) error {
		p, err := openCrafted(t, craftedBzImage(lz4LegacyFrame(k, 0x1800), true))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Load(newTestMem(t, testMemSize), Placement{Limit: testMemSize, Randomize: true, Rand: randomWords(1, 1)})
		return err
	}
	t.Run("relocation outside the kernel", func(t *testing.T) {
		k := bytes.Clone(kernel)
		le.PutUint32(k[len(k)-4:], 0x80000000+0x3000000)
		if err := loadRandomized(t, k); !errors.Is(err, ErrMalformedKernel) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("relocation table without terminators", func(t *testing.T) {
		k := bytes.Clone(kernel)
		for i := len(k) - 24; i < len(k); i += 4 {
			le.PutUint32(k[i:], 0x80000000+uk64Field)
		}
		// The table then runs into the section headers and segments; the
		// first word there that is no field of the kernel is refused.
		if err := loadRandomized(t, k); !errors.Is(err, ErrMalformedKernel) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no room", func(t *testing.T) {
		p, err := openCrafted(t, craftedBzImage(good, true))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Load(newTestMem(t, testMemSize), Placement{Limit: ukBase + 0x200000})
		if !errors.Is(err, ErrKernelDoesNotFit) {
			t.Fatalf("got %v", err)
		}
		_, err = p.Load(newTestMem(t, testMemSize), Placement{Limit: ukBase + 0x200000, Randomize: true, Rand: randomWords(1, 1)})
		if !errors.Is(err, ErrKernelDoesNotFit) {
			t.Fatalf("randomized: got %v", err)
		}
	})
	t.Run("entry outside the segments", func(t *testing.T) {
		k := bytes.Clone(kernel)
		le.PutUint64(k[24:], ukDataPaddr+ukDataSize+8) // in the bss
		if _, err := openCrafted(t, craftedBzImage(lz4LegacyFrame(k, 0x1800), true)); !errors.Is(err, ErrMalformedKernel) {
			t.Fatalf("got %v", err)
		}
	})
	for _, workers := range []int{1, 2} {
		// With 2, the chunks are decoded on other goroutines, which must
		// turn the fault into an error too.
		t.Run(fmt.Sprintf("file cut short, %d decoders", workers), func(t *testing.T) {
			img := craftedBzImage(good, true)
			path := filepath.Join(t.TempDir(), "bzImage")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p, err := OpenBzImage(f, int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.workers, p.stride = workers, 0x1800
			if err := os.Truncate(path, 2048); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Load(newTestMem(t, testMemSize), Placement{Limit: testMemSize}); err == nil {
				t.Fatal("loaded a truncated file")
			}
		})
	}
}

func TestRandomBelowIsUniformOverItsRange(t *testing.T) {
	// A draw in the biased top end is rejected and the next one used.
	top := ^uint64(0) - 2
	v, err := randomBelow(randomWords(top, 7), 10)
	if err != nil || v != 7 {
		t.Fatalf("got %d, %v", v, err)
	}
	if _, err := randomBelow(bytes.NewReader(nil), 10); err == nil {
		t.Fatal("empty source accepted")
	}
}

func TestNeedsGuestDecompress(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyS0 quiet":                "",
		"console=ttyS0 mem=256M":             "mem=256M",
		"memmap=100M$0x10000000 quiet":       "memmap=100M$0x10000000",
		"hugepagesz=1G hugepages=2":          "hugepagesz=1G",
		"memory=1 memmapx=2":                 "",
		"console=ttyS0 -- mem=256M":          "",
		"efi_fake_mem=2G@4G:0x10000 nokaslr": "efi_fake_mem=2G@4G:0x10000",
	} {
		if got := NeedsGuestDecompress(cmdline); got != want {
			t.Errorf("%q: got %q, want %q", cmdline, got, want)
		}
	}
}

func TestHasCmdlineWord(t *testing.T) {
	for cmdline, want := range map[string]bool{
		"console=ttyS0 nokaslr":   true,
		"nokaslr":                 true,
		"console=ttyS0\tnokaslr ": true,
		"nokaslr=1":               false,
		"xnokaslr":                false,
		"":                        false,
	} {
		if HasCmdlineWord(cmdline, "nokaslr") != want {
			t.Errorf("%q: want %v", cmdline, want)
		}
	}
}

// TestUnpackRealBzImage unpacks VMM_TEST_BZIMAGE (e.g. Debian's vmlinuz)
// and, without KASLR, compares guest memory with VMM_TEST_VMLINUX (the same
// kernel's vmlinux) loaded by LoadPVH; then loads it once more at random.
func TestUnpackRealBzImage(t *testing.T) {
	bz, vmlinux := os.Getenv("VMM_TEST_BZIMAGE"), os.Getenv("VMM_TEST_VMLINUX")
	if bz == "" {
		t.Skip("VMM_TEST_BZIMAGE not set")
	}
	p, err := openBzImageFile(t, bz)
	if err != nil {
		t.Fatal(err)
	}
	mem := newTestMem(t, 512<<20)
	k, err := p.Load(mem, Placement{Limit: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("span %#x, kaslr %v, entry %#x", p.Span(), p.KASLR(), k.Entry64)
	if vmlinux != "" {
		v, err := os.Open(vmlinux)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		vs, _ := v.Stat()
		ref := newTestMem(t, 512<<20)
		if _, err := LoadPVH(ref, v, vs.Size()); err != nil {
			t.Fatal(err)
		}
		a, _ := mem.Slice(k.LoadAddr, p.Span())
		b, _ := ref.Slice(ukBase, p.Span())
		if !bytes.Equal(a, b) {
			t.Fatal("unpacked kernel differs from the vmlinux loaded by LoadPVH")
		}
	}
	p2, err := openBzImageFile(t, bz)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := p2.Load(newTestMem(t, 512<<20), Placement{Limit: 512 << 20, Randomize: true, Rand: randomWords(11, 222)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("randomized: physical %#x, virtual offset %#x", k2.LoadAddr, k2.VirtOffset)
}

// FuzzUnpackKernel feeds OpenBzImage and Load a kernel proper (ELF header,
// program headers, segments, relocation table) of the fuzzer's choosing,
// packed as the kernel build packs it, in chunks of its choosing, and
// placed at random by its numbers. Whatever loads must lie where it says.
func FuzzUnpackKernel(f *testing.F) {
	f.Add(craftedKernel(), uint16(0x1800), uint64(5), uint64(300))
	f.Add(craftedKernel(), uint16(0), uint64(0), uint64(0))
	mem := newTestMem(f, testMemSize)
	f.Fuzz(func(t *testing.T, kernel []byte, chunk uint16, physPick, virtPick uint64) {
		if len(kernel) > 64<<10 {
			return
		}
		frame := lz4LegacyFrame(kernel, int(chunk)+1)
		// A file of its own (t.TempDir): fuzzing workers are processes of
		// their own.
		p, err := openCrafted(t, craftedBzImage(frame, true))
		if err != nil {
			return
		}
		// Half the time, chunks decoded at once, to their strides.
		p.workers, p.stride = 1+int(physPick&1), uint64(chunk)+1
		k, err := p.Load(mem, Placement{Limit: testMemSize, Randomize: true, Rand: randomWords(physPick, virtPick)})
		if err != nil {
			return
		}
		if k.LoadAddr < p.MinAddr() || k.End != k.LoadAddr+p.Span() || k.End > testMemSize ||
			k.Entry64 < k.LoadAddr || k.Entry64 >= k.End || k.LoadAddr%minKernelAlign != 0 {
			t.Fatalf("loaded inconsistently: %+v (span %#x)", k, p.Span())
		}
	})
}

// BenchmarkUnpackRealBzImage loads VMM_TEST_BZIMAGE into fresh guest
// memory, as vmm does at every start: open, decode, place, fault in.
func BenchmarkUnpackRealBzImage(b *testing.B) {
	bz := os.Getenv("VMM_TEST_BZIMAGE")
	if bz == "" {
		b.Skip("VMM_TEST_BZIMAGE not set")
	}
	for _, workers := range []int{1, maxLoadWorkers} {
		b.Run(fmt.Sprintf("decoders=%d", workers), func(b *testing.B) {
			for b.Loop() {
				p, err := openBzImageFile(b, bz)
				if err != nil {
					b.Fatal(err)
				}
				p.workers = min(p.workers, workers)
				mem, err := memory.New(RAMRegions(512 << 20))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Load(mem, Placement{Limit: 512 << 20}); err != nil {
					b.Fatal(err)
				}
				mem.Close()
				p.Close()
			}
		})
	}
}
