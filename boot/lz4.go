package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// LZ4 as the kernel's build packs it: the "legacy" frame of lz4 -l
// (lib/decompress_unlz4.c), that is a magic number, then chunks of a
// little-endian 32-bit compressed size and one LZ4 block each, every block
// decoding to at most 8 MiB and depending on no other. Kbuild appends the
// decoded size as a 32-bit word (size_append), which ends the payload.
const (
	lz4LegacyMagic    = 0x184c2102
	lz4LegacyChunkMax = 8 << 20 // decoded bytes per chunk
	lz4MinMatch       = 4
)

var errLZ4Corrupt = errors.New("corrupt LZ4 block")

// isLZ4Legacy reports whether payload starts with the legacy frame's magic.
func isLZ4Legacy(payload []byte) bool {
	return len(payload) >= 4 && binary.LittleEndian.Uint32(payload) == lz4LegacyMagic
}

// lz4LegacyChunks walks the chunks of a kernel payload in the legacy frame
// (magic, chunks, then the 4-byte decoded size), calling fn with each
// chunk's compressed block, in order, and the block's offset in payload. It returns the size the payload's
// last word declares; fn's errors are returned as they are.
func lz4LegacyChunks(payload []byte, fn func(block []byte, at uint64) error) (declared uint64, err error) {
	le := binary.LittleEndian
	if !isLZ4Legacy(payload) || len(payload) < 8 {
		return 0, fmt.Errorf("lz4: no legacy frame header")
	}
	declared = uint64(le.Uint32(payload[len(payload)-4:]))
	rest := payload[4 : len(payload)-4]
	for len(rest) > 0 {
		if len(rest) < 4 {
			return 0, fmt.Errorf("lz4: %d stray bytes before the size word", len(rest))
		}
		n := le.Uint32(rest)
		rest = rest[4:]
		switch {
		case n == lz4LegacyMagic: // a concatenated frame: its header only
			continue
		case n == 0:
			if len(rest) != 0 {
				return 0, fmt.Errorf("lz4: empty chunk with %d bytes after it", len(rest))
			}
			return declared, nil
		case uint64(n) > uint64(len(rest)):
			return 0, fmt.Errorf("lz4: chunk of %d bytes, only %d left", n, len(rest))
		}
		if err := fn(rest[:n], uint64(len(payload)-4-len(rest))); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return declared, nil
}

// lz4History is how far back an LZ4 match may reach: its offset is 16 bits.
const lz4History = 1 << 16

// lz4Decoder decodes LZ4 blocks through a small window instead of into one
// buffer the size of the output: whenever the window fills, all but its
// last lz4History bytes go to emit, in order, and the rest moves to the
// front. So a kernel of 50 MB decodes through a window of a few hundred
// KiB. Every length and offset is checked against the input, the window
// and the block's limit: a corrupt block is an error, never an access out
// of bounds.
type lz4Decoder struct {
	win  []byte // at least 2*lz4History+16 bytes
	n    int    // bytes in win
	emit func([]byte) error
}

// flushKeep hands everything in the window but its last keep bytes to emit.
func (z *lz4Decoder) flushKeep(keep int) error {
	if z.n <= keep {
		return nil
	}
	if err := z.emit(z.win[:z.n-keep]); err != nil {
		return err
	}
	z.n = copy(z.win, z.win[z.n-keep:z.n])
	return nil
}

// flush hands every decoded byte still in the window to emit.
func (z *lz4Decoder) flush() error { return z.flushKeep(0) }

// room makes space for at least one more byte and returns the space.
func (z *lz4Decoder) room() (int, error) {
	if z.n == len(z.win) {
		if err := z.flushKeep(lz4History); err != nil {
			return 0, err
		}
	}
	return len(z.win) - z.n, nil
}

// block decodes the LZ4 block src (sequences of a token, literals and a
// match of offset and length; a block refers to no other) and returns the
// bytes it decoded, at most limit.
func (z *lz4Decoder) block(src []byte, limit int) (int, error) {
	le := binary.LittleEndian
	s, out := 0, 0 // out: bytes of this block decoded
	for s < len(src) {
		token := src[s]
		s++
		lit := int(token >> 4)
		if lit == 15 {
			n, next, ok := lz4Length(src, s)
			if !ok {
				return 0, fmt.Errorf("%w: truncated literal length at %d", errLZ4Corrupt, s)
			}
			lit += n
			s = next
		}
		if lit > len(src)-s || lit > limit-out {
			return 0, fmt.Errorf("%w: %d literals at %d overrun the block", errLZ4Corrupt, lit, s)
		}
		if lit <= 16 && len(src)-s >= 16 && len(z.win)-z.n >= 16 {
			// Two word copies; the bytes past the run are overwritten
			// by what follows (or lie past z.n).
			le.PutUint64(z.win[z.n:], le.Uint64(src[s:]))
			le.PutUint64(z.win[z.n+8:], le.Uint64(src[s+8:]))
			z.n += lit
		} else {
			for rest := src[s : s+lit]; len(rest) > 0; {
				if _, err := z.room(); err != nil {
					return 0, err
				}
				c := copy(z.win[z.n:], rest)
				z.n += c
				rest = rest[c:]
			}
		}
		s += lit
		out += lit
		if s == len(src) {
			return out, nil // the last sequence has literals only
		}
		if len(src)-s < 2 {
			return 0, fmt.Errorf("%w: truncated match offset at %d", errLZ4Corrupt, s)
		}
		off := int(le.Uint16(src[s:]))
		s += 2
		if off == 0 || off > out {
			return 0, fmt.Errorf("%w: match offset %d at output %d", errLZ4Corrupt, off, out)
		}
		match := int(token&15) + lz4MinMatch
		if match == 15+lz4MinMatch {
			n, next, ok := lz4Length(src, s)
			if !ok {
				return 0, fmt.Errorf("%w: truncated match length at %d", errLZ4Corrupt, s)
			}
			match += n
			s = next
		}
		if match > limit-out {
			return 0, fmt.Errorf("%w: match of %d at output %d overruns the block", errLZ4Corrupt, match, out)
		}
		out += match
		// The window always holds the last lz4History bytes, so
		// z.n-off is inside it.
		if off >= 8 && match <= 16 && len(z.win)-z.n >= 16 {
			// Word copies are exact for offsets of 8 or more: each reads
			// bytes already final.
			from := z.n - off
			le.PutUint64(z.win[z.n:], le.Uint64(z.win[from:]))
			le.PutUint64(z.win[z.n+8:], le.Uint64(z.win[from+8:]))
			z.n += match
			continue
		}
		for match > 0 {
			space, err := z.room()
			if err != nil {
				return 0, err
			}
			// An overlapping match repeats the last off bytes: copy what
			// is there, and the copied part doubles the source for the
			// next copy.
			c := min(match, space)
			end, from := z.n+c, z.n-off
			for z.n < end {
				z.n += copy(z.win[z.n:end], z.win[from:z.n])
			}
			match -= c
		}
	}
	return out, nil
}

// lz4Length reads the extension of a literal or match length: bytes added
// up while they are 255. It returns the sum and the index after them.
func lz4Length(src []byte, s int) (n, next int, ok bool) {
	for s < len(src) {
		b := src[s]
		s++
		n += int(b)
		if b != 255 {
			return n, s, true
		}
		if n > 1<<30 { // longer than any block this package decodes
			return 0, 0, false
		}
	}
	return 0, 0, false
}
