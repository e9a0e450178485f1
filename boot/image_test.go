package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmm-dev/vmm/memory"
)

// Crafted kernel images: builders for the tests and for the committed bad
// images in testdata/ (regenerate with go test -run TestTestdata -update).

var update = flag.Bool("update", false, "rewrite the images in testdata/")

const testMemSize = 64 << 20

func newTestMem(t testing.TB, size uint64) *memory.Guest {
	t.Helper()
	m, err := memory.New(RAMRegions(size))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// bzOpts are the header fields of a crafted bzImage.
type bzOpts struct {
	setupSects  uint8
	sysSize     uint32 // 0: computed from codeLen
	codeLen     int
	trailer     int // bytes after the protected-mode code (a signature)
	bootFlag    uint16
	magic       uint32
	jumpDisp    uint8
	version     uint16
	loadFlags   uint8
	xloadFlags  uint16
	align       uint32
	relocatable bool
	cmdlineSize uint32
	initrdMax   uint32
	prefAddr    uint64
	initSize    uint32
}

func goodBzOpts() bzOpts {
	return bzOpts{
		setupSects: 4, codeLen: 4096, bootFlag: 0xaa55, magic: 0x53726448, jumpDisp: 0x6a,
		version: 0x020f, loadFlags: LoadFlagLoadedHigh, xloadFlags: XLFKernel64 | XLFCanBeLoadedAbove4G,
		align: 0x200000, relocatable: true, cmdlineSize: 2047, initrdMax: 0x7fffffff,
		prefAddr: 0x1000000, initSize: 0x200000,
	}
}

func makeBzImage(o bzOpts) []byte {
	sects := int(o.setupSects)
	if sects == 0 {
		sects = 4
	}
	setup := (sects + 1) * 512
	b := make([]byte, setup+o.codeLen+o.trailer)
	le := binary.LittleEndian
	b[hdrSetupSects] = o.setupSects
	sys := o.sysSize
	if sys == 0 {
		sys = uint32((o.codeLen + 15) / 16)
	}
	le.PutUint32(b[hdrSysSize:], sys)
	le.PutUint16(b[hdrBootFlag:], o.bootFlag)
	b[hdrJump], b[hdrJump+1] = 0xeb, o.jumpDisp
	le.PutUint32(b[hdrMagic:], o.magic)
	le.PutUint16(b[hdrVersion:], o.version)
	b[hdrLoadFlags] = o.loadFlags
	le.PutUint32(b[hdrCode32Start:], 0x100000)
	le.PutUint32(b[hdrInitrdAddrMax:], o.initrdMax)
	le.PutUint32(b[hdrKernelAlignment:], o.align)
	if o.relocatable {
		b[hdrRelocatable] = 1
	}
	b[hdrMinAlignment] = 21
	le.PutUint16(b[hdrXLoadFlags:], o.xloadFlags)
	le.PutUint32(b[hdrCmdlineSize:], o.cmdlineSize)
	le.PutUint64(b[hdrPrefAddress:], o.prefAddr)
	le.PutUint32(b[hdrInitSize:], o.initSize)
	le.PutUint32(b[hdrKernelInfoOffset:], 0x1234)
	for i := range o.codeLen {
		b[setup+i] = byte(i*7 + 1)
	}
	for i := range o.trailer {
		b[setup+o.codeLen+i] = 0xee
	}
	return b
}

// elfSeg is one program header of a crafted ELF.
type elfSeg struct {
	typ                   uint32
	off, paddr, filesz, m uint64
	align                 uint64
	data                  []byte // placed at off
}

type note struct {
	name string
	typ  uint32
	desc []byte
}

func makeNotes(align int, ns ...note) []byte {
	var b []byte
	pad := func() {
		for len(b)%align != 0 {
			b = append(b, 0)
		}
	}
	for _, n := range ns {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(n.name)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(n.desc)))
		b = binary.LittleEndian.AppendUint32(b, n.typ)
		b = append(b, n.name...)
		pad()
		b = append(b, n.desc...)
		pad()
	}
	return b
}

func entryNote(entry uint64, size int) note {
	d := make([]byte, 8)
	binary.LittleEndian.PutUint64(d, entry)
	return note{name: "Xen\x00", typ: XenElfnotePhys32Entry, desc: d[:size]}
}

// makeELF builds an ELF64 x86-64 executable with the given program headers
// at offset 64; size is the file size (at least what the segments need).
func makeELF(size int, segs ...elfSeg) []byte {
	need := 64 + 56*len(segs)
	for _, s := range segs {
		if len(s.data) > 0 {
			need = max(need, int(s.off)+len(s.data))
		}
	}
	b := make([]byte, max(size, need))
	le := binary.LittleEndian
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1
	le.PutUint16(b[16:], 2)
	le.PutUint16(b[18:], 62)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], 0xffffffff81000000)
	le.PutUint64(b[32:], 64)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], uint16(len(segs)))
	for i, s := range segs {
		p := b[64+56*i:]
		le.PutUint32(p[0:], s.typ)
		le.PutUint32(p[4:], 5)
		le.PutUint64(p[8:], s.off)
		le.PutUint64(p[16:], s.paddr+0xffffffff80000000)
		le.PutUint64(p[24:], s.paddr)
		le.PutUint64(p[32:], s.filesz)
		le.PutUint64(p[40:], s.m)
		le.PutUint64(p[48:], s.align)
		if len(s.data) > 0 {
			copy(b[s.off:], s.data)
		}
	}
	return b
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)*3 + seed
	}
	return p
}

// goodELF: a text segment at 1 MiB holding the entry, a data segment with
// a zero-filled tail, and a note segment with an unrelated note before the
// Xen one.
func goodELF(descSize int) []byte {
	notes := makeNotes(4, note{name: "GNU\x00", typ: 3, desc: pattern(20, 9)}, entryNote(0x100040, descSize))
	return makeELF(0,
		elfSeg{typ: elfPTLoad, off: 0x200, paddr: 0x100000, filesz: 0x400, m: 0x400, align: 0x200, data: pattern(0x400, 1)},
		elfSeg{typ: elfPTLoad, off: 0x600, paddr: 0x200000, filesz: 0x100, m: 0x3000, align: 0x200, data: pattern(0x100, 2)},
		elfSeg{typ: elfPTNote, off: 0x700, filesz: uint64(len(notes)), align: 4, data: notes},
	)
}

// badImage is a committed bad kernel image and the error loading it gives.
type badImage struct {
	name string
	data []byte
	want error
}

func badBzImages() []badImage {
	mod := func(f func(*bzOpts)) []byte {
		o := goodBzOpts()
		f(&o)
		return makeBzImage(o)
	}
	good := makeBzImage(goodBzOpts())
	return []badImage{
		{"truncated_header.bin", good[:0x220], ErrMalformedKernel},
		{"truncated_setup.bin", good[:0x300], ErrMalformedKernel},
		{"truncated_code.bin", good[:len(good)-100], ErrMalformedKernel},
		{"tiny.bin", good[:0x100], ErrNotBzImage},
		{"bad_magic.bin", mod(func(o *bzOpts) { o.magic = 0x53726449 }), ErrNotBzImage},
		{"bad_boot_flag.bin", mod(func(o *bzOpts) { o.bootFlag = 0x55aa }), ErrNotBzImage},
		{"old_version.bin", mod(func(o *bzOpts) { o.version = 0x020a }), ErrUnsupportedKernel},
		{"no_kernel64.bin", mod(func(o *bzOpts) { o.xloadFlags = 0 }), ErrUnsupportedKernel},
		{"not_loaded_high.bin", mod(func(o *bzOpts) { o.loadFlags = 0 }), ErrUnsupportedKernel},
		{"huge_setup_sects.bin", func() []byte {
			b := makeBzImage(goodBzOpts())
			b[hdrSetupSects] = 255
			return b
		}(), ErrMalformedKernel},
		{"zero_syssize.bin", func() []byte {
			b := makeBzImage(goodBzOpts())
			binary.LittleEndian.PutUint32(b[hdrSysSize:], 0)
			return b
		}(), ErrMalformedKernel},
		{"huge_syssize.bin", mod(func(o *bzOpts) { o.sysSize = 0x10000000 }), ErrMalformedKernel},
		{"short_header_jump.bin", mod(func(o *bzOpts) { o.jumpDisp = 0x10 }), ErrMalformedKernel},
		{"negative_header_jump.bin", mod(func(o *bzOpts) { o.jumpDisp = 0x80 }), ErrMalformedKernel},
		{"bad_alignment.bin", mod(func(o *bzOpts) { o.align = 0x300000 }), ErrMalformedKernel},
		{"zero_cmdline_size.bin", mod(func(o *bzOpts) { o.cmdlineSize = 0 }), ErrMalformedKernel},
		{"huge_init_size.bin", mod(func(o *bzOpts) { o.initSize = 0xffffffff }), ErrKernelDoesNotFit},
		{"huge_pref_address.bin", mod(func(o *bzOpts) { o.prefAddr = 0xffffffff_fff00000 }), ErrMalformedKernel},
		{"fixed_pref_address_outside_ram.bin", mod(func(o *bzOpts) {
			o.relocatable = false
			o.prefAddr = 0xffffffff_fff00000
		}), ErrKernelDoesNotFit},
	}
}

func badELFs() []badImage {
	good := goodELF(4)
	text := func(m func(*elfSeg)) elfSeg {
		s := elfSeg{typ: elfPTLoad, off: 0x200, paddr: 0x100000, filesz: 0x100, m: 0x100, data: pattern(0x100, 1)}
		if m != nil {
			m(&s)
		}
		return s
	}
	notes := makeNotes(4, entryNote(0x100010, 4))
	noteSeg := elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(notes)), align: 4, data: notes}
	with := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	le := binary.LittleEndian
	return []badImage{
		{"elf_truncated_header.elf", good[:40], ErrNotELF},
		{"elf_bad_magic.elf", with(func(b []byte) { b[1] = 'X' }), ErrNotELF},
		{"elf_class32.elf", with(func(b []byte) { b[4] = 1 }), ErrNotELF},
		{"elf_big_endian.elf", with(func(b []byte) { b[5] = 2 }), ErrNotELF},
		{"elf_wrong_machine.elf", with(func(b []byte) { le.PutUint16(b[18:], 3) }), ErrNotELF},
		{"elf_bad_phentsize.elf", with(func(b []byte) { le.PutUint16(b[54:], 32) }), ErrMalformedKernel},
		{"elf_no_phdrs.elf", with(func(b []byte) { le.PutUint16(b[56:], 0) }), ErrMalformedKernel},
		{"elf_too_many_phdrs.elf", with(func(b []byte) { le.PutUint16(b[56:], 0xffff) }), ErrMalformedKernel},
		{"elf_phdrs_outside_file.elf", with(func(b []byte) { le.PutUint64(b[32:], 0xffffffff_ffffffc0) }), ErrMalformedKernel},
		{"elf_truncated_phdrs.elf", good[:64+56+10], ErrMalformedKernel},
		{"elf_segment_outside_file.elf", makeELF(0, text(func(s *elfSeg) { s.filesz = 0x10000; s.m = 0x10000 }), noteSeg), ErrMalformedKernel},
		{"elf_segment_offset_overflow.elf", makeELF(0, text(func(s *elfSeg) { s.off = 0xffffffff_ffffff00; s.data = nil }), noteSeg), ErrMalformedKernel},
		{"elf_filesz_above_memsz.elf", makeELF(0, text(func(s *elfSeg) { s.m = 0x80 }), noteSeg), ErrMalformedKernel},
		{"elf_huge_segment.elf", makeELF(0, text(func(s *elfSeg) { s.m = 1 << 40 }), noteSeg), ErrKernelDoesNotFit},
		{"elf_paddr_overflow.elf", makeELF(0, text(func(s *elfSeg) { s.paddr = 0xffffffff_fffff000; s.m = 0x2000 }), noteSeg), ErrMalformedKernel},
		{"elf_low_paddr.elf", makeELF(0, text(func(s *elfSeg) { s.paddr = 0x7000 }), noteSeg), ErrKernelDoesNotFit},
		{"elf_in_mmio_hole.elf", makeELF(0, text(func(s *elfSeg) { s.paddr = LowRAMEnd }), noteSeg), ErrKernelDoesNotFit},
		{"elf_overlapping_segments.elf", makeELF(0, text(nil),
			elfSeg{typ: elfPTLoad, off: 0x300, paddr: 0x1000f0, filesz: 0x10, m: 0x10, data: pattern(0x10, 3)}, noteSeg), ErrMalformedKernel},
		{"elf_no_load.elf", makeELF(0, noteSeg), ErrMalformedKernel},
		{"elf_no_note.elf", makeELF(0, text(nil)), ErrUnsupportedKernel},
		{"elf_other_notes_only.elf", func() []byte {
			n := makeNotes(4, note{name: "Linux\x00", typ: 6, desc: pattern(4, 0)}, note{name: "Xen\x00", typ: 1, desc: pattern(8, 0)})
			return makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 4, data: n})
		}(), ErrUnsupportedKernel},
		{"elf_note_huge_namesz.elf", func() []byte {
			n := bytes.Clone(notes)
			le.PutUint32(n[0:], 0xfffffff0)
			return makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 4, data: n})
		}(), ErrMalformedKernel},
		{"elf_note_huge_descsz.elf", func() []byte {
			n := bytes.Clone(notes)
			le.PutUint32(n[4:], 0xffffffff)
			return makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 4, data: n})
		}(), ErrMalformedKernel},
		{"elf_note_truncated.elf", makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: 8, align: 4, data: notes}), ErrMalformedKernel},
		{"elf_note_bad_desc_size.elf", func() []byte {
			n := makeNotes(4, note{name: "Xen\x00", typ: XenElfnotePhys32Entry, desc: []byte{1, 2}})
			return makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 4, data: n})
		}(), ErrMalformedKernel},
		{"elf_note_segment_outside_file.elf", makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: 0x100000, align: 4, data: notes}), ErrMalformedKernel},
		{"elf_entry_outside_segments.elf", func() []byte {
			n := makeNotes(4, entryNote(0x500000, 4))
			return makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 4, data: n})
		}(), ErrMalformedKernel},
		{"elf_entry_above_4g.elf", func() []byte {
			n := makeNotes(4, entryNote(0x1_0000_0000, 8))
			return makeELF(0, text(nil), elfSeg{typ: elfPTNote, off: 0x400, filesz: uint64(len(n)), align: 4, data: n})
		}(), ErrMalformedKernel},
	}
}

// TestTestdata checks that the committed bad images are what the builders
// produce (or rewrites them with -update) and that each fails as expected.
func TestTestdata(t *testing.T) {
	mem := newTestMem(t, testMemSize)
	check := func(dir string, imgs []badImage, load func([]byte) error) {
		for _, img := range imgs {
			path := filepath.Join("testdata", dir, img.name)
			if len(img.data) >= 16<<10 {
				t.Errorf("%s: %d bytes, keep test images under 16 KiB", img.name, len(img.data))
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, img.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%v (run go test -run TestTestdata -update)", err)
				continue
			}
			if !bytes.Equal(data, img.data) {
				t.Errorf("%s differs from what the builder makes (run go test -run TestTestdata -update)", path)
			}
			if err := load(data); !errors.Is(err, img.want) {
				t.Errorf("%s: got %v, want %v", img.name, err, img.want)
			} else {
				t.Logf("%s: %v", img.name, err)
			}
		}
	}
	check("bzimage", badBzImages(), func(b []byte) error {
		_, err := LoadBzImage(mem, bytes.NewReader(b), int64(len(b)))
		return err
	})
	check("elf", badELFs(), func(b []byte) error {
		_, err := LoadPVH(mem, bytes.NewReader(b), int64(len(b)))
		return err
	})
}
