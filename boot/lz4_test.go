package boot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

// lz4Literals encodes data as one LZ4 block of literals only (valid LZ4,
// no compression): what the tests need to build payloads.
func lz4Literals(data []byte) []byte {
	n := len(data)
	var b []byte
	if n < 15 {
		b = append(b, byte(n<<4))
	} else {
		b = append(b, 0xf0)
		for rest := n - 15; ; rest -= 255 {
			if rest < 255 {
				b = append(b, byte(rest))
				break
			}
			b = append(b, 255)
		}
	}
	return append(b, data...)
}

// lz4LegacyFrame packs data as the kernel build does: the legacy frame
// with chunks of at most chunk bytes, then the size word.
func lz4LegacyFrame(data []byte, chunk int) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, lz4LegacyMagic)
	size := len(data)
	for len(data) > 0 {
		n := min(len(data), chunk)
		block := lz4Literals(data[:n])
		b = le.AppendUint32(b, uint32(len(block)))
		b = append(b, block...)
		data = data[n:]
	}
	return le.AppendUint32(b, uint32(size))
}

// decodeFrame decodes a legacy frame through a window of the given size,
// each block limited to limit bytes.
func decodeFrame(frame []byte, window, limit int) ([]byte, uint64, error) {
	var out []byte
	z := lz4Decoder{win: make([]byte, window), emit: func(b []byte) error {
		out = append(out, b...)
		return nil
	}}
	declared, err := lz4LegacyChunks(frame, func(block []byte, at uint64) error {
		if !bytes.Equal(frame[at:at+uint64(len(block))], block) {
			return errors.New("chunk offset does not locate the chunk")
		}
		_, err := z.block(block, limit)
		return err
	})
	if err == nil {
		err = z.flush()
	}
	return out, declared, err
}

// decodeBlock decodes one block with a window larger than any test output.
func decodeBlock(block []byte, limit int) ([]byte, error) {
	var out []byte
	z := lz4Decoder{win: make([]byte, 2*lz4History+16), emit: func(b []byte) error {
		out = append(out, b...)
		return nil
	}}
	_, err := z.block(block, limit)
	if err == nil {
		err = z.flush()
	}
	return out, err
}

// TestLZ4Text decodes a file lz4 -l -9 made (matches of every offset,
// overlapping runs, long literal runs), checked against the input's
// SHA-256, through windows of several sizes: the smallest flushes in the
// middle of literal runs and matches.
func TestLZ4Text(t *testing.T) {
	frame, err := os.ReadFile("testdata/lz4/text.lz4")
	if err != nil {
		t.Fatal(err)
	}
	// lz4 -l writes no size word; add one as kbuild does.
	frame = binary.LittleEndian.AppendUint32(frame, 138465)
	for _, window := range []int{2*lz4History + 16, 2*lz4History + 1000, lz4Window} {
		out, declared, err := decodeFrame(frame, window, lz4LegacyChunkMax)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(out)
		if declared != 138465 || len(out) != 138465 || hex.EncodeToString(sum[:]) != "a05caba616a50426a930948f56d2d66f7949f50b695c10f95d9a1d340981c91c" {
			t.Fatalf("window %d: decoded %d bytes (declared %d), sha256 %x", window, len(out), declared, sum)
		}
	}
	// A limit one byte short of the output is an error.
	if _, _, err := decodeFrame(frame, lz4Window, 138464); !errors.Is(err, errLZ4Corrupt) {
		t.Fatalf("limit: %v", err)
	}
}

func TestLZ4BlockCorrupt(t *testing.T) {
	for name, block := range map[string][]byte{
		"literal run past the end": {0x50, 'a', 'b'},
		"truncated length":         {0xf0, 255},
		"offset zero":              {0x10, 'a', 0, 0},
		"offset before the start":  {0x10, 'a', 2, 0},
		"truncated offset":         {0x10, 'a', 1},
		"match past the limit":     {0x1f, 'a', 1, 0, 200},
	} {
		if _, err := decodeBlock(block, 64); !errors.Is(err, errLZ4Corrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An overlapping match of offset 1 repeats a byte.
	out, err := decodeBlock([]byte{0x1f, 'z', 1, 0, 10}, 64)
	if err != nil || string(out) != strings.Repeat("z", 30) {
		t.Fatalf("run: %q %v", out, err)
	}
	// A block cannot reach back into the one before it.
	z := lz4Decoder{win: make([]byte, 2*lz4History+16), emit: func([]byte) error { return nil }}
	if _, err := z.block([]byte{0x30, 'a', 'b', 'c'}, 64); err != nil {
		t.Fatal(err)
	}
	if _, err := z.block([]byte{0x10, 'x', 3, 0}, 64); !errors.Is(err, errLZ4Corrupt) {
		t.Fatalf("match into the previous block: %v", err)
	}
}

func TestLZ4LegacyChunks(t *testing.T) {
	data := pattern(100, 3)
	frame := lz4LegacyFrame(data, 40)
	got, declared, err := decodeFrame(frame, lz4Window, 64)
	if err != nil || declared != 100 || !bytes.Equal(got, data) {
		t.Fatalf("declared %d, %v, got %d bytes", declared, err, len(got))
	}
	for name, bad := range map[string][]byte{
		"no magic":          {1, 2, 3, 4, 5, 6, 7, 8},
		"chunk overruns":    append(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic), 1000), 0, 0, 0, 0),
		"stray bytes":       append(binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic), 1, 2, 0, 0, 0, 0),
		"data after zero":   append(binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic), 0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0),
		"too short a frame": binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic),
	} {
		if _, err := lz4LegacyChunks(bad, func([]byte, uint64) error { return nil }); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzLZ4Block(f *testing.F) {
	frame, err := os.ReadFile("testdata/lz4/text.lz4")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(frame[8:], 200000)
	f.Add([]byte{0x1f, 'z', 1, 0, 10}, 64)
	f.Add(lz4Literals(pattern(300, 1)), 300)
	f.Fuzz(func(t *testing.T, block []byte, limit int) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		var emitted int
		z := lz4Decoder{win: make([]byte, 2*lz4History+16), emit: func(b []byte) error {
			emitted += len(b)
			return nil
		}}
		n, err := z.block(block, limit)
		if err == nil {
			err = z.flush()
		}
		if err == nil && (n > limit || emitted != n) {
			t.Fatalf("decoded %d bytes, emitted %d, limit %d", n, emitted, limit)
		}
	})
}
