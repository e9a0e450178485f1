package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/vmm-dev/vmm/memory"
)

// ELF64 constants (System V gABI; elf(5)) and the Xen PVH entry note
// (xen/include/public/elfnote.h).
const (
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfClass64     = 2
	elfData2LSB    = 1
	elfVersion     = 1
	elfTypeExec    = 2
	elfTypeDyn     = 3
	elfMachineX86  = 62
	elfPTLoad      = 1
	elfPTNote      = 4
	maxPhdrs       = 128     // vmlinux has about five
	maxNoteSegment = 1 << 16 // bytes of one PT_NOTE segment scanned
	maxNotes       = 1024    // notes examined in total

	// XenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the note's
	// descriptor is the 32-bit physical entry point of the PVH boot ABI.
	XenElfnotePhys32Entry = 18
)

// xenNoteName is the name of the Xen notes, NUL included.
const xenNoteName = "Xen\x00"

// PVHKernel is what LoadPVH found and where it put the kernel.
type PVHKernel struct {
	// Entry32 is the physical address to start at in 32-bit protected mode
	// (XEN_ELFNOTE_PHYS32_ENTRY); below 4 GiB.
	Entry32 uint64
	// Start and End bound the loaded segments: [Start, End), End being one
	// past the highest p_paddr+p_memsz. The initrd must lie above End.
	Start, End uint64
}

type elfPhdr struct {
	Type   uint32
	Flags  uint32
	Offset uint64
	Vaddr  uint64
	Paddr  uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}

// LoadPVH checks the ELF64 x86-64 kernel in kernel (size bytes), copies its
// PT_LOAD segments to their physical addresses (p_paddr), zero-filling each
// up to p_memsz, and finds the PVH entry point in its PT_NOTE segments. It
// writes no boot parameters. Segments must lie in RAM at or above
// KernelLoadAddr, not overlap each other, and be read entirely from the
// file. From a regular file (*os.File) only the pages that are not all
// zero are copied (see loadSegment); other readers are read with one ReadAt
// per segment straight into guest memory.
func LoadPVH(mem *memory.Guest, kernel io.ReaderAt, size int64) (*PVHKernel, error) {
	if size < elfHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes is too short for an ELF header", ErrNotELF, size)
	}
	var eh [elfHeaderSize]byte
	if err := readFull(kernel, eh[:], 0); err != nil {
		return nil, fmt.Errorf("boot: read ELF header: %w", err)
	}
	phdrs, err := parseELF(eh[:], kernel, uint64(size))
	if err != nil {
		return nil, err
	}

	// Check every segment before copying any.
	var loads []elfPhdr
	for i, ph := range phdrs {
		if ph.Type != elfPTLoad && ph.Type != elfPTNote {
			continue
		}
		if err := checkInFile(ph, uint64(size)); err != nil {
			return nil, fmt.Errorf("%w: program header %d: %w", ErrMalformedKernel, i, err)
		}
		if ph.Type != elfPTLoad {
			continue
		}
		if ph.Filesz > ph.Memsz {
			return nil, fmt.Errorf("%w: segment %d: p_filesz %#x > p_memsz %#x", ErrMalformedKernel, i, ph.Filesz, ph.Memsz)
		}
		if ph.Memsz == 0 {
			continue
		}
		end := ph.Paddr + ph.Memsz
		if end < ph.Paddr {
			return nil, fmt.Errorf("%w: segment %d: [%#x+%#x) overflows", ErrMalformedKernel, i, ph.Paddr, ph.Memsz)
		}
		if ph.Paddr < KernelLoadAddr || !mem.Contains(ph.Paddr, ph.Memsz) {
			return nil, fmt.Errorf("%w: segment %d: [%#x, %#x) is not in RAM above %#x",
				ErrKernelDoesNotFit, i, ph.Paddr, end, KernelLoadAddr)
		}
		for _, o := range loads {
			if ph.Paddr < o.Paddr+o.Memsz && o.Paddr < end {
				return nil, fmt.Errorf("%w: segment %d [%#x, %#x) overlaps segment [%#x, %#x)",
					ErrMalformedKernel, i, ph.Paddr, end, o.Paddr, o.Paddr+o.Memsz)
			}
		}
		loads = append(loads, ph)
	}
	if len(loads) == 0 {
		return nil, fmt.Errorf("%w: no loadable segment", ErrMalformedKernel)
	}
	entry, err := findPVHEntry(kernel, phdrs)
	if err != nil {
		return nil, err
	}
	k := &PVHKernel{Entry32: entry, Start: loads[0].Paddr}
	inside := false
	for _, ph := range loads {
		k.Start = min(k.Start, ph.Paddr)
		k.End = max(k.End, ph.Paddr+ph.Memsz)
		if entry >= ph.Paddr && entry < ph.Paddr+ph.Filesz {
			inside = true
		}
	}
	if !inside {
		return nil, fmt.Errorf("%w: PVH entry %#x is not in a loaded segment", ErrMalformedKernel, entry)
	}

	// Zero every segment before copying any: on fresh memory this touches
	// nothing, and copying then leaves out the file's zero pages. (Zeroing
	// after copying could split a huge page a neighbouring segment had
	// already filled.)
	for _, ph := range loads {
		if err := mem.Zero(ph.Paddr, ph.Memsz); err != nil {
			return nil, fmt.Errorf("boot: zero segment at %#x: %w", ph.Paddr, err)
		}
	}
	if err := loadSegments(mem, kernel, loads); err != nil {
		return nil, err
	}
	return k, nil
}

// parseELF checks the ELF header and reads the program header table.
func parseELF(eh []byte, r io.ReaderAt, size uint64) ([]elfPhdr, error) {
	le := binary.LittleEndian
	if !bytes.Equal(eh[:4], []byte("\x7fELF")) {
		return nil, fmt.Errorf("%w: no ELF magic", ErrNotELF)
	}
	if eh[4] != elfClass64 || eh[5] != elfData2LSB || eh[6] != elfVersion {
		return nil, fmt.Errorf("%w: class %d, data %d, version %d (need ELF64 little-endian v1)", ErrNotELF, eh[4], eh[5], eh[6])
	}
	typ, machine := le.Uint16(eh[16:]), le.Uint16(eh[18:])
	if (typ != elfTypeExec && typ != elfTypeDyn) || machine != elfMachineX86 {
		return nil, fmt.Errorf("%w: e_type %d, e_machine %d", ErrNotELF, typ, machine)
	}
	phoff := le.Uint64(eh[32:])
	ehsize, phentsize, phnum := le.Uint16(eh[52:]), le.Uint16(eh[54:]), le.Uint16(eh[56:])
	if ehsize != elfHeaderSize || phentsize != elfPhdrSize {
		return nil, fmt.Errorf("%w: e_ehsize %d, e_phentsize %d", ErrMalformedKernel, ehsize, phentsize)
	}
	if phnum == 0 || phnum > maxPhdrs {
		return nil, fmt.Errorf("%w: %d program headers (1..%d accepted)", ErrMalformedKernel, phnum, maxPhdrs)
	}
	tableLen := uint64(phnum) * elfPhdrSize
	if phoff < elfHeaderSize || phoff > size || tableLen > size-phoff {
		return nil, fmt.Errorf("%w: program header table [%#x+%#x) is outside the %d-byte file", ErrMalformedKernel, phoff, tableLen, size)
	}
	table := make([]byte, tableLen)
	if err := readFull(r, table, int64(phoff)); err != nil {
		return nil, fmt.Errorf("boot: read program headers: %w", err)
	}
	phdrs := make([]elfPhdr, phnum)
	for i := range phdrs {
		b := table[i*elfPhdrSize:]
		phdrs[i] = elfPhdr{
			Type: le.Uint32(b[0:]), Flags: le.Uint32(b[4:]),
			Offset: le.Uint64(b[8:]), Vaddr: le.Uint64(b[16:]), Paddr: le.Uint64(b[24:]),
			Filesz: le.Uint64(b[32:]), Memsz: le.Uint64(b[40:]), Align: le.Uint64(b[48:]),
		}
	}
	return phdrs, nil
}

// checkInFile checks that the segment's file bytes lie inside the file.
func checkInFile(ph elfPhdr, size uint64) error {
	if ph.Offset > size || ph.Filesz > size-ph.Offset {
		return fmt.Errorf("file bytes [%#x+%#x) outside the %d-byte file", ph.Offset, ph.Filesz, size)
	}
	return nil
}

// findPVHEntry scans the PT_NOTE segments for XEN_ELFNOTE_PHYS32_ENTRY.
func findPVHEntry(r io.ReaderAt, phdrs []elfPhdr) (uint64, error) {
	budget := maxNotes
	for i, ph := range phdrs {
		if ph.Type != elfPTNote || ph.Filesz == 0 {
			continue
		}
		if ph.Filesz > maxNoteSegment {
			return 0, fmt.Errorf("%w: note segment %d is %d bytes (at most %d scanned)", ErrMalformedKernel, i, ph.Filesz, maxNoteSegment)
		}
		buf := make([]byte, ph.Filesz)
		if err := readFull(r, buf, int64(ph.Offset)); err != nil {
			return 0, fmt.Errorf("boot: read note segment %d: %w", i, err)
		}
		// Linux emits 4-byte aligned notes even in ELF64; honour an 8-byte
		// p_align as some toolchains use it.
		align := uint64(4)
		if ph.Align == 8 {
			align = 8
		}
		entry, found, err := scanNotes(buf, align, &budget)
		if err != nil {
			return 0, fmt.Errorf("%w: note segment %d: %w", ErrMalformedKernel, i, err)
		}
		if found {
			return entry, nil
		}
	}
	return 0, fmt.Errorf("%w: no Xen PHYS32_ENTRY note (not built with CONFIG_PVH)", ErrUnsupportedKernel)
}

// scanNotes walks the notes in b (Elf64_Nhdr: namesz, descsz, type, then
// name and descriptor, each followed by padding to a multiple of align) looking for the Xen entry note.
func scanNotes(b []byte, align uint64, budget *int) (entry uint64, found bool, err error) {
	le := binary.LittleEndian
	for off := uint64(0); off < uint64(len(b)); {
		if *budget <= 0 {
			return 0, false, fmt.Errorf("more than %d notes", maxNotes)
		}
		*budget--
		rest := uint64(len(b)) - off
		if rest < 12 {
			return 0, false, fmt.Errorf("truncated note header at %#x", off)
		}
		namesz, descsz, typ := uint64(le.Uint32(b[off:])), uint64(le.Uint32(b[off+4:])), le.Uint32(b[off+8:])
		nameOff := off + 12
		// Padding aligns the descriptor and the next note to align bytes
		// from the segment's start. No overflow: every term is < 2^34.
		descOff := alignUp(nameOff+namesz, align)
		next := alignUp(descOff+descsz, align)
		if descOff+descsz > uint64(len(b)) || nameOff+namesz > uint64(len(b)) {
			return 0, false, fmt.Errorf("note at %#x (name %d, desc %d bytes) overruns the segment", off, namesz, descsz)
		}
		if typ == XenElfnotePhys32Entry && string(b[nameOff:nameOff+namesz]) == xenNoteName {
			desc := b[descOff : descOff+descsz]
			var v uint64
			switch descsz {
			case 4:
				v = uint64(le.Uint32(desc))
			case 8:
				v = le.Uint64(desc)
			default:
				return 0, false, fmt.Errorf("PHYS32_ENTRY descriptor is %d bytes", descsz)
			}
			if v > 0xffff_ffff {
				return 0, false, fmt.Errorf("PHYS32_ENTRY %#x is above 4 GiB", v)
			}
			return v, true, nil
		}
		off = next
	}
	return 0, false, nil
}

func alignUp(v, align uint64) uint64 { return (v + align - 1) &^ (align - 1) }
