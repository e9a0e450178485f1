package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/memory"
)

// Unpacking a bzImage on the host. A bzImage is a small decompressor with
// the kernel proper (vmlinux, an ELF file, followed by its relocation
// table) compressed inside it; booted as it is, the guest spends the first
// part of its boot decompressing and placing that kernel. OpenBzImage and
// BzImagePayload.Load do the decompressor's work in the VMM instead and
// start the guest at the kernel proper's 64-bit entry, as the decompressor
// would (arch/x86/boot/compressed/misc.c: extract_kernel, parse_elf,
// handle_relocations; kaslr.c: choose_random_location):
//
//   - the payload (payload_offset, payload_length) is decoded: LZ4, the
//     format Debian and Ubuntu build their kernels with; any other format
//     is ErrNotUnpackable and the guest decompresses as before;
//   - each PT_LOAD segment goes to the load address plus its p_paddr's
//     distance from LOAD_PHYSICAL_ADDR (pref_address), its bss zeroed;
//   - KASLR is done as the decompressor does it, when the kernel was built
//     with it (its decompressor carries kaslr.c, found by a message only
//     that file has) and the command line has no "nokaslr": a random
//     physical load address among the kernel_alignment slots of RAM from
//     LOAD_PHYSICAL_ADDR up (below the initrd), a random virtual offset in
//     the 1 GiB kernel mapping, the relocations applied for the latter, and
//     KASLR_FLAG set in loadflags so that the kernel also randomizes its
//     memory regions. The random numbers come from the caller (crypto/rand
//     in vmm). Unlike the decompressor, the physical address is chosen
//     below 3 GiB only.
//
// What the kernel proper is entered with is what the decompressor hands
// over: long mode, the boot page tables identity-mapping the kernel, the
// zero page in RSI. One difference remains: the decompressor may switch to
// 5-level paging first, and vmm starts the kernel in 4-level paging (as
// PVH and every ELF loader do).

// ErrNotUnpackable: a valid bzImage that OpenBzImage does not unpack
// (compression format, layout); the kernel can still decompress itself.
var ErrNotUnpackable = errors.New("boot: bzImage not unpackable by vmm")

const (
	// startKernelMap is __START_KERNEL_map: the kernel's virtual address
	// of physical 0 in its own link map.
	startKernelMap = 0xffff_ffff_8000_0000
	// kernelImageSizeKASLR is KERNEL_IMAGE_SIZE of an x86-64 kernel built
	// with CONFIG_RANDOMIZE_BASE: the span of the kernel text mapping.
	kernelImageSizeKASLR = 1 << 30
	// minKernelAlign is MIN_KERNEL_ALIGN: the kernel proper runs at a
	// 2 MiB (PMD) aligned physical and virtual address.
	minKernelAlign = 2 << 20
	// maxUnpackedSize bounds the size the payload declares.
	maxUnpackedSize = kernelImageSizeKASLR
	// maxRelocTail bounds the bytes kept after the last loaded byte: the
	// section headers and the relocation table (about 0.8 MB for Debian).
	maxRelocTail = 16 << 20
	// lz4Window is the decoder's window: what the VMM holds of the
	// decoded kernel at any time, besides the relocation table.
	lz4Window = 256 << 10
	// headerBytes of the decoded kernel are read for its ELF headers.
	headerBytes = 64 << 10
	// maxChunks bounds the chunks of a payload (and what vmm keeps of
	// them): the kernel build makes every chunk but the last decode to
	// 8 MiB, so 1 GiB of kernel needs 128.
	maxChunks = 4096

	// LoadFlagKASLR (KASLR_FLAG): the kernel was placed at random.
	LoadFlagKASLR = 1 << 1
)

// kaslrMessage is printed only by arch/x86/boot/compressed/kaslr.c, which
// is built into the decompressor exactly when CONFIG_RANDOMIZE_BASE is set.
const kaslrMessage = "KASLR disabled: 'nokaslr' on cmdline."

// BzImagePayload is a bzImage whose kernel proper OpenBzImage has found and
// checked, nothing yet written to guest memory. Close releases its buffers.
type BzImagePayload struct {
	header SetupHeader
	raw    []byte

	mapping []byte   // the file from the page holding the protected-mode code
	code    []byte   // the protected-mode code, in mapping
	chunks  [][]byte // the payload's LZ4 blocks, in code
	offsets []uint64 // where each chunk starts in mapping
	window  []byte   // the LZ4 decoder's window
	tail    []byte   // decoded bytes from tailStart on (Load fills it)

	size      uint64    // decoded size the payload declares
	base      uint64    // LOAD_PHYSICAL_ADDR: pref_address, the lowest p_paddr
	entry     uint64    // e_entry, a physical address in the link map
	loads     []elfPhdr // PT_LOAD segments with bytes in memory
	tailStart uint64    // first decoded byte after every segment's file bytes
	span      uint64    // memory the kernel claims from its load address
	kaslr     bool      // built with CONFIG_RANDOMIZE_BASE

	// workers is how many chunks Load decodes at once, and stride the
	// bytes it expects each chunk but the last to decode to (see
	// decodeParallel).
	workers int
	stride  uint64
}

// maxLoadWorkers bounds the goroutines that load a kernel at once:
// decoding a bzImage's chunks or copying a vmlinux's segments.
const maxLoadWorkers = 4

// errUnevenChunks: decodeParallel could not place the chunks on its own
// (a chunk but the last did not decode to exactly the stride, or one did
// not decode at all). decode then goes chunk by chunk, in order, which
// places uneven chunks and has the last word on a corrupt one.
var errUnevenChunks = errors.New("lz4: chunks not decodable independently")

// OpenBzImage checks the bzImage in f (size bytes), decodes the first
// 64 KiB of its payload and checks the kernel proper's ELF headers there.
// ErrNotUnpackable means the image may well boot the way it always did, by
// decompressing itself.
func OpenBzImage(f *os.File, size int64) (*BzImagePayload, error) {
	h, raw, codeOff, codeLen, err := readSetupHeader(f, size)
	if err != nil {
		return nil, err
	}
	po, pl := uint64(h.PayloadOffset), uint64(h.PayloadLength)
	if pl == 0 || po > codeLen || pl > codeLen-po {
		return nil, fmt.Errorf("%w: payload [%#x+%#x) outside the %d bytes of protected-mode code", ErrNotUnpackable, po, pl, codeLen)
	}
	// The code is mapped from its page; a file cut short under the mapping
	// faults, which the panic-on-fault in every reader of it turns into an
	// error.
	page := uint64(os.Getpagesize())
	mapOff := codeOff &^ (page - 1)
	m, err := unix.Mmap(int(f.Fd()), int64(mapOff), int(codeOff-mapOff+codeLen), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil { // a file system without mmap: the guest can still decompress
		return nil, fmt.Errorf("%w: map the kernel file: %w", ErrNotUnpackable, err)
	}
	p := &BzImagePayload{header: h, raw: raw, mapping: m, code: m[codeOff-mapOff:],
		workers: min(runtime.GOMAXPROCS(0), maxLoadWorkers), stride: lz4LegacyChunkMax}
	if err := p.open(po, pl, codeOff-mapOff); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// open finds the chunks, decodes the first headerBytes and checks the ELF
// headers in them.
func (p *BzImagePayload) open(po, pl, codeAt uint64) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	payload := p.code[po : po+pl]
	if !isLZ4Legacy(payload) {
		return fmt.Errorf("%w: payload is not LZ4 (starts % x)", ErrNotUnpackable, payload[:min(len(payload), 4)])
	}
	p.kaslr = bytes.Contains(p.code[:po], []byte(kaslrMessage)) || bytes.Contains(p.code[po+pl:], []byte(kaslrMessage))
	p.size, err = lz4LegacyChunks(payload, func(block []byte, at uint64) error {
		if len(p.chunks) == maxChunks {
			return fmt.Errorf("%w: more than %d chunks in the payload", ErrNotUnpackable, maxChunks)
		}
		p.chunks = append(p.chunks, block)
		p.offsets = append(p.offsets, codeAt+po+at)
		return nil
	})
	if errors.Is(err, ErrNotUnpackable) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: payload: %w", ErrMalformedKernel, err)
	}
	if p.size < elfHeaderSize || p.size > maxUnpackedSize || len(p.chunks) == 0 {
		return fmt.Errorf("%w: payload declares %d bytes in %d chunks", ErrMalformedKernel, p.size, len(p.chunks))
	}
	p.window, err = unix.Mmap(-1, 0, lz4Window, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("boot: decode window: %w", err)
	}
	// The ELF headers are in the first bytes: decode until there are
	// headerBytes of them (or the payload ends).
	var head []byte
	enough := errors.New("enough")
	z := lz4Decoder{win: p.window, emit: func(b []byte) error {
		head = append(head, b[:min(len(b), headerBytes-len(head))]...)
		if len(head) == headerBytes {
			return enough
		}
		return nil
	}}
	var decoded uint64
	for i := 0; i < len(p.chunks) && err == nil && decoded < p.size; i++ {
		var n int
		n, err = z.block(p.chunks[i], int(min(lz4LegacyChunkMax, p.size-decoded)))
		decoded += uint64(n)
	}
	if err == nil {
		err = z.flush()
	}
	if err != nil && err != enough {
		return fmt.Errorf("%w: payload: %w", ErrMalformedKernel, err)
	}
	return p.parseKernel(head)
}

// parseKernel checks the kernel proper's ELF header and program headers,
// which must lie in its first decoded bytes b (at most headerBytes).
func (p *BzImagePayload) parseKernel(b []byte) error {
	if len(b) < elfHeaderSize {
		return fmt.Errorf("%w: the %d decoded bytes hold no ELF header", ErrNotUnpackable, len(b))
	}
	phdrs, err := parseELF(b[:elfHeaderSize], bytes.NewReader(b), uint64(len(b)))
	if err != nil {
		return fmt.Errorf("%w: kernel proper: %w", ErrNotUnpackable, err)
	}
	p.entry = binary.LittleEndian.Uint64(b[24:])
	p.base = p.header.PrefAddress
	if p.base%minKernelAlign != 0 {
		return fmt.Errorf("%w: pref_address %#x is not 2 MiB aligned", ErrNotUnpackable, p.base)
	}
	var memEnd uint64
	entryInside := false
	for i, ph := range phdrs {
		if ph.Type != elfPTLoad || ph.Memsz == 0 {
			continue
		}
		if err := checkInFile(ph, p.size); err != nil {
			return fmt.Errorf("%w: kernel segment %d: %w", ErrMalformedKernel, i, err)
		}
		end := ph.Paddr + ph.Memsz
		switch {
		case ph.Filesz > ph.Memsz:
			return fmt.Errorf("%w: kernel segment %d: p_filesz %#x > p_memsz %#x", ErrMalformedKernel, i, ph.Filesz, ph.Memsz)
		case ph.Align%minKernelAlign != 0:
			return fmt.Errorf("%w: kernel segment %d: p_align %#x is not a multiple of 2 MiB", ErrNotUnpackable, i, ph.Align)
		case ph.Paddr < p.base || end < ph.Paddr || end-p.base > maxUnpackedSize:
			return fmt.Errorf("%w: kernel segment %d: [%#x+%#x) is not within 1 GiB above pref_address %#x",
				ErrNotUnpackable, i, ph.Paddr, ph.Memsz, p.base)
		}
		for _, o := range p.loads {
			if ph.Paddr < o.Paddr+o.Memsz && o.Paddr < end {
				return fmt.Errorf("%w: kernel segment %d [%#x, %#x) overlaps segment [%#x, %#x)",
					ErrMalformedKernel, i, ph.Paddr, end, o.Paddr, o.Paddr+o.Memsz)
			}
		}
		if p.entry >= ph.Paddr && p.entry < ph.Paddr+ph.Filesz {
			entryInside = true
		}
		memEnd = max(memEnd, end)
		p.tailStart = max(p.tailStart, ph.Offset+ph.Filesz)
		p.loads = append(p.loads, ph)
	}
	if len(p.loads) == 0 {
		return fmt.Errorf("%w: kernel proper has no loadable segment", ErrMalformedKernel)
	}
	if !entryInside {
		return fmt.Errorf("%w: kernel entry %#x is not in a loaded segment", ErrMalformedKernel, p.entry)
	}
	if p.size-p.tailStart > maxRelocTail {
		return fmt.Errorf("%w: %d bytes after the kernel's segments (at most %d)", ErrNotUnpackable, p.size-p.tailStart, maxRelocTail)
	}
	// The decompressor's needed_size: the decoded image or the kernel with
	// its bss, whichever is larger, in whole 2 MiB pages.
	p.span = alignUp(max(p.size, memEnd-p.base), minKernelAlign)
	return nil
}

// Span is the RAM the kernel occupies from its load address, and MinAddr
// the lowest load address (LOAD_PHYSICAL_ADDR); Load places the kernel at
// MinAddr or, with KASLR, anywhere above it.
func (p *BzImagePayload) Span() uint64    { return p.span }
func (p *BzImagePayload) MinAddr() uint64 { return p.base }

// InitrdAddrMax is the highest address the initrd may occupy.
func (p *BzImagePayload) InitrdAddrMax() uint64 { return uint64(p.header.InitrdAddrMax) }

// KASLR reports whether the kernel's own decompressor would randomize its
// placement (built with CONFIG_RANDOMIZE_BASE, relocatable).
func (p *BzImagePayload) KASLR() bool { return p.kaslr && p.header.RelocatableKernel }

// Placement says where Load may put the kernel.
type Placement struct {
	// Limit: the kernel ends at or below it (the initrd's address, or
	// LowRAMEnd).
	Limit uint64
	// Randomize asks for KASLR (the command line has no "nokaslr"); it
	// applies only to a kernel built for it (KASLR).
	Randomize bool
	// Rand supplies the random numbers; required with Randomize.
	Rand io.Reader
}

// Load decodes the kernel proper into guest memory where pl allows, applies
// its relocations, and returns the kernel described as WriteBootParams and
// LinuxRegs need it: Entry64 is the kernel proper's entry.
func (p *BzImagePayload) Load(mem *memory.Guest, pl Placement) (k *BzImage, err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	randomize := pl.Randomize && p.KASLR()
	phys, virt := p.base, p.base
	if p.header.RelocatableKernel {
		align := max(uint64(p.header.KernelAlignment), minKernelAlign)
		if align > maxKernelAlignment || bits.OnesCount64(align) != 1 {
			return nil, fmt.Errorf("%w: kernel_alignment %#x", ErrMalformedKernel, align)
		}
		if randomize {
			if pl.Rand == nil {
				return nil, fmt.Errorf("boot: KASLR without a random source")
			}
			if phys, err = randomPhysAddr(mem.Regions(), p.base, p.span, align, min(pl.Limit, LowRAMEnd), pl.Rand); err != nil {
				return nil, err
			}
			if virt, err = randomVirtAddr(p.base, p.span, align, pl.Rand); err != nil {
				return nil, err
			}
		}
	}
	if phys+p.span < phys || phys+p.span > pl.Limit || !mem.Contains(phys, p.span) {
		return nil, fmt.Errorf("%w: kernel needs [%#x, %#x) below %#x", ErrKernelDoesNotFit, phys, phys+p.span, pl.Limit)
	}
	if err := mem.Zero(phys, p.span); err != nil {
		return nil, fmt.Errorf("boot: zero kernel memory: %w", err)
	}
	if err := p.decode(mem, phys); err != nil {
		return nil, err
	}
	if virt != p.base {
		img, err := mem.Slice(phys, p.span)
		if err != nil {
			return nil, err
		}
		if err := relocate(img, p.tail, p.base, p.loads, virt-p.base); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformedKernel, err)
		}
	}
	return &BzImage{
		Header:        p.header,
		RawHeader:     p.raw,
		LoadAddr:      phys,
		Entry64:       phys + (p.entry - p.base),
		RuntimeStart:  phys,
		End:           phys + p.span,
		InitrdAddrMax: uint64(p.header.InitrdAddrMax),
		CmdlineSize:   p.header.CmdlineSize,
		KASLR:         randomize,
		VirtOffset:    virt - p.base,
	}, nil
}

// decode decodes every chunk and writes each segment's bytes to guest
// memory at phys plus its distance from base, leaving out all-zero pages
// (the memory was zeroed), and keeps the bytes after the segments in tail.
func (p *BzImagePayload) decode(mem *memory.Guest, phys uint64) error {
	tailLen := p.size - p.tailStart
	var err error
	if p.tail, err = unix.Mmap(-1, 0, int(max(tailLen, 1)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return fmt.Errorf("boot: relocation buffer: %w", err)
	}
	p.tail = p.tail[:tailLen]
	if p.evenChunks() && p.workers > 1 {
		err := p.decodeParallel(mem, phys)
		if !errors.Is(err, errUnevenChunks) {
			return err
		}
		// Not packed as the lz4 tool packs: start over, chunk by chunk.
		if err := mem.Zero(phys, p.span); err != nil {
			return fmt.Errorf("boot: zero kernel memory: %w", err)
		}
		clear(p.tail)
	}
	var pos uint64 // bytes handed to scatter
	z := lz4Decoder{win: p.window, emit: func(b []byte) error {
		if err := p.scatter(mem, phys, pos, b); err != nil {
			return err
		}
		pos += uint64(len(b))
		return nil
	}}
	var decoded uint64
	for i, block := range p.chunks {
		if decoded == p.size {
			return fmt.Errorf("%w: payload chunk %d past the declared %d bytes", ErrMalformedKernel, i, p.size)
		}
		n, err := z.block(block, int(min(lz4LegacyChunkMax, p.size-decoded)))
		if err != nil {
			return fmt.Errorf("%w: payload chunk %d: %w", ErrMalformedKernel, i, err)
		}
		decoded += uint64(n)
		// The chunk's file pages are not needed again.
		dropPages(p.mapping, p.offsets[i], uint64(len(block)))
	}
	if err := z.flush(); err != nil {
		return err
	}
	if decoded != p.size {
		return fmt.Errorf("%w: payload decodes to %d bytes, declares %d", ErrMalformedKernel, decoded, p.size)
	}
	return nil
}

// evenChunks reports whether the declared size fits the chunks as the lz4
// tool packs them: every chunk but the last decodes to stride bytes.
func (p *BzImagePayload) evenChunks() bool {
	n := uint64(len(p.chunks))
	return n > 1 && p.stride > 0 && (n-1)*p.stride < p.size && p.size <= n*p.stride
}

// decodeParallel decodes the chunks on p.workers goroutines, each through
// a window of its own, every chunk straight to its place: LZ4 legacy chunks
// depend on no other, and with even chunks (evenChunks) chunk i's bytes
// start at i*stride. A chunk that does not decode to its stride ends it
// with errUnevenChunks, and what was written is to be discarded.
func (p *BzImagePayload) decodeParallel(mem *memory.Guest, phys uint64) error {
	errs := inParallel(p.workers, len(p.chunks), func(next func() (int, bool)) error {
		return p.decodeChunks(mem, phys, next)
	})
	var first error
	for _, err := range errs {
		if errors.Is(err, errUnevenChunks) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// decodeChunks decodes the chunks next hands out, until none is left or
// another worker failed. A fault on the file's mapping is an error here
// too: the setting is per goroutine.
func (p *BzImagePayload) decodeChunks(mem *memory.Guest, phys uint64, next func() (int, bool)) (err error) {
	defer catchFault(&err, debug.SetPanicOnFault(true))
	win, err := unix.Mmap(-1, 0, lz4Window, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("boot: decode window: %w", err)
	}
	defer unix.Munmap(win)
	for i, ok := next(); ok; i, ok = next() {
		pos := uint64(i) * p.stride
		want := min(p.stride, p.size-pos)
		z := lz4Decoder{win: win, emit: func(b []byte) error {
			if err := p.scatter(mem, phys, pos, b); err != nil {
				return err
			}
			pos += uint64(len(b))
			return nil
		}}
		n, err := z.block(p.chunks[i], int(want))
		if err != nil {
			return fmt.Errorf("%w: chunk %d: %w", errUnevenChunks, i, err)
		}
		if uint64(n) != want {
			return fmt.Errorf("%w: chunk %d decodes to %d bytes, not %d", errUnevenChunks, i, n, want)
		}
		if err := z.flush(); err != nil {
			return err
		}
		dropPages(p.mapping, p.offsets[i], uint64(len(p.chunks[i])))
	}
	return nil
}

// scatter places decoded bytes [pos, pos+len(b)) of the kernel file: the
// parts inside a segment's file bytes into guest memory, the part from
// tailStart on into tail.
func (p *BzImagePayload) scatter(mem *memory.Guest, phys, pos uint64, b []byte) error {
	end := pos + uint64(len(b))
	for _, ph := range p.loads {
		lo, hi := max(pos, ph.Offset), min(end, ph.Offset+ph.Filesz)
		if lo >= hi {
			continue
		}
		addr := phys + (ph.Paddr - p.base) + (lo - ph.Offset)
		if err := copyNonZero(mem, addr, b[lo-pos:hi-pos]); err != nil {
			return fmt.Errorf("boot: write kernel segment at %#x: %w", addr, err)
		}
	}
	if end > p.tailStart {
		lo := max(pos, p.tailStart)
		copy(p.tail[lo-p.tailStart:], b[lo-pos:])
	}
	return nil
}

// Close releases the mappings; the payload cannot be loaded after it.
func (p *BzImagePayload) Close() {
	for _, b := range [][]byte{p.mapping, p.window, p.tail} {
		if cap(b) > 0 {
			unix.Munmap(b[:cap(b)])
		}
	}
	p.mapping, p.code, p.window, p.tail, p.chunks = nil, nil, nil, nil, nil
}

// randomPhysAddr picks one of the align-spaced load addresses from lowest up
// where span bytes fit in one RAM region below limit, uniformly.
func randomPhysAddr(regions []memory.Region, lowest, span, align, limit uint64, r io.Reader) (uint64, error) {
	type slotRun struct{ first, n uint64 }
	var runs []slotRun
	var total uint64
	for _, reg := range regions {
		start := alignUp(max(reg.Base, lowest), align)
		end := min(reg.End(), limit)
		if start < lowest || start >= end || end-start < span {
			continue
		}
		n := (end-start-span)/align + 1
		runs = append(runs, slotRun{start, n})
		total += n
	}
	if total == 0 {
		return 0, fmt.Errorf("%w: no room for %#x bytes of kernel between %#x and %#x", ErrKernelDoesNotFit, span, lowest, limit)
	}
	pick, err := randomBelow(r, total)
	if err != nil {
		return 0, err
	}
	for _, run := range runs {
		if pick < run.n {
			return run.first + pick*align, nil
		}
		pick -= run.n
	}
	panic("unreachable")
}

// randomVirtAddr picks the kernel's virtual offset as find_random_virt_addr
// does: one of the align-spaced slots from lowest up that keep span bytes
// inside the 1 GiB kernel mapping.
func randomVirtAddr(lowest, span, align uint64, r io.Reader) (uint64, error) {
	if lowest+span > kernelImageSizeKASLR {
		return 0, fmt.Errorf("%w: %#x bytes of kernel do not fit the kernel mapping", ErrKernelDoesNotFit, span)
	}
	pick, err := randomBelow(r, 1+(kernelImageSizeKASLR-lowest-span)/align)
	if err != nil {
		return 0, err
	}
	return lowest + pick*align, nil
}

// randomBelow reads a uniform number in [0, n) from r (n > 0), rejecting
// the draws that would bias it.
func randomBelow(r io.Reader, n uint64) (uint64, error) {
	limit := ^uint64(0) - ^uint64(0)%n
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("boot: KASLR random number: %w", err)
		}
		if v := binary.LittleEndian.Uint64(b[:]); v < limit {
			return v % n, nil
		}
	}
}

// relocate applies the kernel's relocation table for a virtual offset of
// delta (handle_relocations). The table ends tail, read from its end
// backwards: 32-bit entries up to a zero, inverse 32-bit entries up to a
// zero, 64-bit entries up to a zero. Each entry is the link-time virtual
// address of a field, truncated to 32 bits; the field must lie in a
// segment's file bytes. img is the kernel's memory from its load address,
// where link-time physical address base lies.
func relocate(img, tail []byte, base uint64, loads []elfPhdr, delta uint64) error {
	le := binary.LittleEndian
	pos := len(tail) // entries are read below pos, from the end
	next := func() (uint32, error) {
		if pos < 4 {
			return 0, fmt.Errorf("relocation table runs into the kernel image")
		}
		pos -= 4
		return le.Uint32(tail[pos:]), nil
	}
	for kind, width := range [3]uint64{4, 4, 8} {
		for {
			v, err := next()
			if err != nil {
				return err
			}
			if v == 0 {
				break
			}
			// Sign-extend to the kernel address, then take the link map
			// away: the field's link-time physical address.
			field := uint64(int64(int32(v))) - startKernelMap
			if !inFileBytes(loads, field, width) {
				return fmt.Errorf("relocation %#x: field at %#x is not in the kernel's segments", v, field)
			}
			b := img[field-base:]
			switch kind {
			case 0:
				le.PutUint32(b, le.Uint32(b)+uint32(delta))
			case 1:
				le.PutUint32(b, le.Uint32(b)-uint32(delta))
			case 2:
				le.PutUint64(b, le.Uint64(b)+delta)
			}
		}
	}
	return nil
}

// inFileBytes reports whether [addr, addr+n) lies in one segment's bytes
// from the file.
func inFileBytes(loads []elfPhdr, addr, n uint64) bool {
	for _, ph := range loads {
		if addr >= ph.Paddr && addr-ph.Paddr <= ph.Filesz && ph.Filesz-(addr-ph.Paddr) >= n {
			return true
		}
	}
	return false
}

// kaslrLayoutOptions are the command-line options the decompressor's KASLR
// reads to keep the kernel out of memory (kaslr.c: handle_mem_options):
// a memory limit, reserved ranges, gigantic pages. vmm does not reproduce
// them; a command line with any of them is left to the kernel's own
// decompressor (NeedsGuestDecompress).
var kaslrLayoutOptions = []string{"mem", "memmap", "hugepages", "hugepagesz", "efi_fake_mem"}

// NeedsGuestDecompress reports the first option on the command line that
// the kernel's own decompressor takes into account when it places the
// kernel and vmm does not ("" if none): with it, the bzImage should
// decompress itself.
func NeedsGuestDecompress(cmdline string) string {
	for _, w := range strings.Fields(cmdline) {
		if w == "--" { // what follows is init's, not the kernel's
			return ""
		}
		name, _, _ := strings.Cut(w, "=")
		for _, o := range kaslrLayoutOptions {
			if name == o {
				return w
			}
		}
	}
	return ""
}

// HasCmdlineWord reports whether word is one of the command line's
// whitespace-separated words, as the kernel's early boolean options are
// found.
func HasCmdlineWord(cmdline, word string) bool {
	for _, w := range strings.Fields(cmdline) {
		if w == word {
			return true
		}
	}
	return false
}

// dropPages gives back this process's mapping of the whole pages inside
// m[off:off+n] (a file mapping: the pages stay in the page cache). It is a
// saving, not a duty, so failure is ignored.
func dropPages(m []byte, off, n uint64) {
	page := uint64(os.Getpagesize())
	lo, hi := alignUp(off, page), (off+n)&^(page-1)
	if lo < hi {
		_ = unix.Madvise(m[lo:hi], unix.MADV_DONTNEED)
	}
}

// catchFault, deferred with what debug.SetPanicOnFault(true) returned, turns
// a fault on the kernel file's mapping (the file cut short under it) into
// an error, as copyMapped does, and restores the setting.
func catchFault(err *error, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		fault, ok := r.(interface{ Addr() uintptr })
		if !ok {
			panic(r)
		}
		*err = fmt.Errorf("boot: kernel file changed while loading: fault at %#x", fault.Addr())
	}
}
