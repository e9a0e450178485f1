package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/vmm-dev/vmm/memory"
)

// Errors returned by the kernel loaders; each is wrapped with the detail.
var (
	// ErrNotBzImage: the file has no Linux setup header (boot flag 0xAA55
	// and "HdrS").
	ErrNotBzImage = errors.New("boot: not a bzImage")
	// ErrNotELF: the file is not an ELF64 little-endian x86-64 executable.
	ErrNotELF = errors.New("boot: not an x86-64 ELF executable")
	// ErrUnsupportedKernel: a well-formed kernel this loader cannot start
	// (boot protocol older than 2.12, no 64-bit entry, not loaded high, no
	// PVH entry note).
	ErrUnsupportedKernel = errors.New("boot: unsupported kernel")
	// ErrMalformedKernel: sizes, offsets or counts in the file are
	// inconsistent with each other or with the file's size.
	ErrMalformedKernel = errors.New("boot: malformed kernel image")
	// ErrKernelDoesNotFit: the kernel would not fit in guest RAM where it
	// has to go.
	ErrKernelDoesNotFit = errors.New("boot: kernel does not fit in guest memory")
)

// Setup header field offsets, from the start of the file and of the zero
// page alike (Documentation/arch/x86/boot.rst, "THE REAL-MODE KERNEL HEADER").
const (
	hdrStart            = 0x1f1 // setup_sects, first byte of the setup header
	hdrSetupSects       = 0x1f1 // u8
	hdrSysSize          = 0x1f4 // u32, protected-mode size in 16-byte units
	hdrVidMode          = 0x1fa // u16
	hdrBootFlag         = 0x1fe // u16, 0xAA55
	hdrJump             = 0x200 // u8 0xEB + s8: the header ends at 0x202+s8
	hdrMagic            = 0x202 // u32, "HdrS"
	hdrVersion          = 0x206 // u16
	hdrTypeOfLoader     = 0x210 // u8
	hdrLoadFlags        = 0x211 // u8
	hdrCode32Start      = 0x214 // u32
	hdrRamdiskImage     = 0x218 // u32
	hdrRamdiskSize      = 0x21c // u32
	hdrCmdLinePtr       = 0x228 // u32
	hdrInitrdAddrMax    = 0x22c // u32
	hdrKernelAlignment  = 0x230 // u32
	hdrRelocatable      = 0x234 // u8
	hdrMinAlignment     = 0x235 // u8
	hdrXLoadFlags       = 0x236 // u16
	hdrCmdlineSize      = 0x238 // u32
	hdrPayloadOffset    = 0x248 // u32
	hdrPayloadLength    = 0x24c // u32
	hdrPrefAddress      = 0x258 // u64
	hdrInitSize         = 0x260 // u32
	hdrHandoverOffset   = 0x264 // u32
	hdrKernelInfoOffset = 0x268 // u32 (2.15)
	hdrEnd212           = 0x268 // end of the fields of protocol 2.12
	hdrMaxEnd           = 0x290 // edd_mbr_sig_buffer follows in boot_params

	bootFlagMagic = 0xaa55
	hdrSMagic     = 0x53726448 // "HdrS"
	jumpOpcode    = 0xeb

	// MinBootProtocol is the oldest boot protocol LoadBzImage accepts:
	// 2.12 introduced xloadflags and with it XLF_KERNEL_64.
	MinBootProtocol = 0x020c

	// LoadFlagLoadedHigh (LOADED_HIGH): the protected-mode code runs at
	// 0x100000.
	LoadFlagLoadedHigh = 1 << 0
	// LoadFlagCanUseHeap (CAN_USE_HEAP): heap_end_ptr is valid.
	LoadFlagCanUseHeap = 1 << 7

	// XLFKernel64 (XLF_KERNEL_64): the kernel has the 64-bit entry at +0x200.
	XLFKernel64 = 1 << 0
	// XLFCanBeLoadedAbove4G (XLF_CAN_BE_LOADED_ABOVE_4G).
	XLFCanBeLoadedAbove4G = 1 << 1

	// entry64Offset is the distance of the 64-bit entry point from the load
	// address.
	entry64Offset = 0x200
	sectorSize    = 512
	// maxKernelAlignment bounds kernel_alignment (a power of two).
	maxKernelAlignment = 1 << 30
)

// SetupHeader holds the setup header fields LoadBzImage checks or the boot
// parameters need, decoded from the image.
type SetupHeader struct {
	SetupSects        uint8 // 512-byte setup sectors after the boot sector (0 read as 4)
	SysSize           uint32
	BootFlag          uint16
	Version           uint16 // boot protocol, e.g. 0x020f for 2.15
	LoadFlags         uint8
	Code32Start       uint32
	InitrdAddrMax     uint32 // highest address the initrd may occupy
	KernelAlignment   uint32
	RelocatableKernel bool
	MinAlignment      uint8
	XLoadFlags        uint16
	CmdlineSize       uint32 // maximum command line length, NUL excluded
	PayloadOffset     uint32
	PayloadLength     uint32
	PrefAddress       uint64
	InitSize          uint32
	HandoverOffset    uint32
	KernelInfoOffset  uint32 // 0 before protocol 2.15
}

// BzImage is what LoadBzImage found and where it put the kernel.
type BzImage struct {
	Header SetupHeader
	// RawHeader is the image's setup header, bytes 0x1F1 up to the end the
	// header's jump instruction gives (0x202 + the jump's displacement).
	// WriteBootParams copies it into the zero page at the same offset.
	RawHeader []byte
	// LoadAddr is where the protected-mode code was copied.
	LoadAddr uint64
	// Entry64 is the 64-bit entry point, LoadAddr+0x200.
	Entry64 uint64
	// RuntimeStart is where the kernel decompresses itself to, by the
	// algorithm in boot.rst (init_size); End is RuntimeStart+init_size,
	// the first byte the kernel does not claim before reading its memory
	// map. The initrd must lie above End.
	RuntimeStart uint64
	End          uint64
	// InitrdAddrMax is the highest address the initrd may occupy.
	InitrdAddrMax uint64
	// CmdlineSize is the longest command line the kernel accepts, NUL
	// excluded.
	CmdlineSize uint32
	// KASLR: vmm unpacked the kernel (BzImagePayload.Load) at a random
	// place; WriteBootParams sets KASLR_FLAG. VirtOffset is the virtual
	// offset the relocations applied.
	KASLR      bool
	VirtOffset uint64
}

// LoadBzImage checks the setup header of the bzImage in kernel (size bytes)
// and copies its protected-mode code to KernelLoadAddr. It writes no boot
// parameters. The file is read with two calls to ReadAt: the header and the
// code, the latter straight into guest memory.
func LoadBzImage(mem *memory.Guest, kernel io.ReaderAt, size int64) (*BzImage, error) {
	h, raw, codeOff, codeLen, err := readSetupHeader(kernel, size)
	if err != nil {
		return nil, err
	}
	runtimeStart, err := runtimeStart(&h, KernelLoadAddr)
	if err != nil {
		return nil, err
	}
	end := runtimeStart + uint64(h.InitSize)
	if h.InitSize == 0 || end > LowRAMEnd || !mem.Contains(runtimeStart, uint64(h.InitSize)) {
		return nil, fmt.Errorf("%w: kernel needs [%#x, %#x) (init_size %#x) in low RAM",
			ErrKernelDoesNotFit, runtimeStart, end, h.InitSize)
	}
	dst, err := mem.Slice(KernelLoadAddr, codeLen)
	if err != nil {
		return nil, fmt.Errorf("%w: %d bytes of kernel at %#x: %w", ErrKernelDoesNotFit, codeLen, KernelLoadAddr, err)
	}
	if err := readFull(kernel, dst, int64(codeOff)); err != nil {
		return nil, fmt.Errorf("boot: read bzImage protected-mode code: %w", err)
	}
	initrdMax := uint64(h.InitrdAddrMax)
	return &BzImage{
		Header:        h,
		RawHeader:     raw,
		LoadAddr:      KernelLoadAddr,
		Entry64:       KernelLoadAddr + entry64Offset,
		RuntimeStart:  runtimeStart,
		End:           end,
		InitrdAddrMax: initrdMax,
		CmdlineSize:   h.CmdlineSize,
	}, nil
}

// readSetupHeader reads and checks the setup header of the bzImage in r
// (size bytes) and locates its protected-mode code.
func readSetupHeader(r io.ReaderAt, size int64) (h SetupHeader, raw []byte, codeOff, codeLen uint64, err error) {
	if size < hdrMagic+4 {
		return h, nil, 0, 0, fmt.Errorf("%w: %d bytes is too short for a setup header", ErrNotBzImage, size)
	}
	// The header is within the first two sectors.
	head := make([]byte, min(size, 2*sectorSize))
	if err := readFull(r, head, 0); err != nil {
		return h, nil, 0, 0, fmt.Errorf("boot: read bzImage header: %w", err)
	}
	if h, raw, err = parseSetupHeader(head); err != nil {
		return h, nil, 0, 0, err
	}
	codeOff, codeLen, err = protectedModeCode(&h, size)
	return h, raw, codeOff, codeLen, err
}

// parseSetupHeader decodes and checks the setup header in the image's first
// bytes, returning the typed fields and a copy of the raw header.
func parseSetupHeader(b []byte) (SetupHeader, []byte, error) {
	var h SetupHeader
	le := binary.LittleEndian
	h.BootFlag = le.Uint16(b[hdrBootFlag:])
	if h.BootFlag != bootFlagMagic || le.Uint32(b[hdrMagic:]) != hdrSMagic {
		return h, nil, fmt.Errorf("%w: boot flag %#x, header magic %#x", ErrNotBzImage, h.BootFlag, le.Uint32(b[hdrMagic:]))
	}
	if len(b) < hdrEnd212 {
		return h, nil, fmt.Errorf("%w: %d bytes is too short for a 2.12 setup header", ErrMalformedKernel, len(b))
	}
	h.Version = le.Uint16(b[hdrVersion:])
	if h.Version < MinBootProtocol {
		return h, nil, fmt.Errorf("%w: boot protocol %d.%02d is older than 2.12", ErrUnsupportedKernel, h.Version>>8, h.Version&0xff)
	}
	if b[hdrJump] != jumpOpcode {
		return h, nil, fmt.Errorf("%w: no short jump at 0x200 (%#x)", ErrMalformedKernel, b[hdrJump])
	}
	end := hdrJump + 2 + int(int8(b[hdrJump+1]))
	if end < hdrEnd212 || end > hdrMaxEnd || end > len(b) {
		return h, nil, fmt.Errorf("%w: setup header ends at %#x", ErrMalformedKernel, end)
	}
	h.SetupSects = b[hdrSetupSects]
	h.SysSize = le.Uint32(b[hdrSysSize:])
	h.LoadFlags = b[hdrLoadFlags]
	h.Code32Start = le.Uint32(b[hdrCode32Start:])
	h.InitrdAddrMax = le.Uint32(b[hdrInitrdAddrMax:])
	h.KernelAlignment = le.Uint32(b[hdrKernelAlignment:])
	h.RelocatableKernel = b[hdrRelocatable] != 0
	h.MinAlignment = b[hdrMinAlignment]
	h.XLoadFlags = le.Uint16(b[hdrXLoadFlags:])
	h.CmdlineSize = le.Uint32(b[hdrCmdlineSize:])
	h.PayloadOffset = le.Uint32(b[hdrPayloadOffset:])
	h.PayloadLength = le.Uint32(b[hdrPayloadLength:])
	h.PrefAddress = le.Uint64(b[hdrPrefAddress:])
	h.InitSize = le.Uint32(b[hdrInitSize:])
	h.HandoverOffset = le.Uint32(b[hdrHandoverOffset:])
	if end >= hdrKernelInfoOffset+4 {
		h.KernelInfoOffset = le.Uint32(b[hdrKernelInfoOffset:])
	}
	if h.XLoadFlags&XLFKernel64 == 0 {
		return h, nil, fmt.Errorf("%w: no 64-bit entry point (xloadflags %#x)", ErrUnsupportedKernel, h.XLoadFlags)
	}
	if h.LoadFlags&LoadFlagLoadedHigh == 0 {
		return h, nil, fmt.Errorf("%w: not a loaded-high kernel (loadflags %#x)", ErrUnsupportedKernel, h.LoadFlags)
	}
	if h.CmdlineSize == 0 {
		return h, nil, fmt.Errorf("%w: cmdline_size is 0", ErrMalformedKernel)
	}
	if h.InitrdAddrMax < HighMemStart {
		return h, nil, fmt.Errorf("%w: initrd_addr_max %#x is below 1 MiB", ErrMalformedKernel, h.InitrdAddrMax)
	}
	raw := make([]byte, end-hdrStart)
	copy(raw, b[hdrStart:end])
	return h, raw, nil
}

// protectedModeCode locates the protected-mode code in a bzImage of size
// bytes: it follows the boot sector and the setup sectors, and syssize
// gives its length.
func protectedModeCode(h *SetupHeader, size int64) (off, n uint64, err error) {
	setupSects := uint64(h.SetupSects)
	if setupSects == 0 {
		setupSects = 4
	}
	off = (setupSects + 1) * sectorSize
	if uint64(size) <= off {
		return 0, 0, fmt.Errorf("%w: setup code (%d sectors) reaches past the end of the %d-byte file",
			ErrMalformedKernel, setupSects, size)
	}
	rest := uint64(size) - off
	// syssize is the protected-mode size rounded up to 16 bytes; anything
	// after it (a signature, padding) is not loaded.
	sysBytes := uint64(h.SysSize) * 16
	if sysBytes == 0 || sysBytes > rest+15 {
		return 0, 0, fmt.Errorf("%w: syssize %#x paragraphs does not match the %d bytes after the setup code",
			ErrMalformedKernel, h.SysSize, rest)
	}
	return off, min(sysBytes, rest), nil
}

// runtimeStart is the address the kernel runs at when loaded at loadAddr,
// by the algorithm of boot.rst (init_size).
func runtimeStart(h *SetupHeader, loadAddr uint64) (uint64, error) {
	if !h.RelocatableKernel {
		return h.PrefAddress, nil
	}
	align := uint64(h.KernelAlignment)
	if align == 0 || align > maxKernelAlignment || bits.OnesCount64(align) != 1 {
		return 0, fmt.Errorf("%w: kernel_alignment %#x is not a power of two up to 1 GiB", ErrMalformedKernel, align)
	}
	start := max(loadAddr, h.PrefAddress)
	aligned := (start + align - 1) &^ (align - 1)
	if aligned < start {
		return 0, fmt.Errorf("%w: pref_address %#x overflows when aligned", ErrMalformedKernel, h.PrefAddress)
	}
	return aligned, nil
}

// readFull reads exactly len(p) bytes at off, accepting the io.EOF a
// ReaderAt may return together with a full read.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%d of %d bytes at offset %d: %w", n, len(p), off, err)
}
