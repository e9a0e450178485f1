package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// The binary statistics file (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"):
// a header, an id string, descriptors (16 bytes + name_size each) and the
// data, u64 words at data_offset + each descriptor's offset.
const (
	statsHeaderSize   = 24
	statsDescFixed    = 16
	statsTypeMask     = 0xF // KVM_STATS_TYPE_*: cumulative, instant, peak, then histograms
	statsTypePeak     = 2
	maxStatsNameSize  = 256
	maxStatsDescs     = 4096
	maxStatsFileBytes = 1 << 20
)

// errStatsLayout reports a statistics file this package cannot read.
var errStatsLayout = errors.New("kvm: unexpected binary statistics layout")

// Stat is one counter of a KVM statistics file.
type Stat struct {
	Name  string
	Value uint64
}

// Stats reads the single-value counters (cumulative, instant and peak; not
// histograms) of one statistics file. Read may be called from any
// goroutine, also while the vCPU runs: each word is read as KVM last wrote
// it. Close releases the descriptor.
type Stats struct {
	fd         int
	dataOffset int64
	names      []string
	offsets    []uint32 // byte offset of each counter within the data block
	dataLen    int
}

// OpenStats opens this vCPU's statistics (KVM_GET_STATS_FD). It fails
// where the kernel has no such interface (CapBinaryStatsFD).
func (c *VCPU) OpenStats() (*Stats, error) {
	fd, err := ioctlVal(c.fd, io(nrGetStatsFD), 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_STATS_FD: %w", c.id, err)
	}
	s, err := newStats(int(fd))
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: vCPU %d: %w", c.id, err)
	}
	return s, nil
}

func newStats(fd int) (*Stats, error) {
	hdr := make([]byte, statsHeaderSize)
	if err := preadFull(fd, hdr, 0); err != nil {
		return nil, fmt.Errorf("read statistics header: %w", err)
	}
	nameSize := binary.LittleEndian.Uint32(hdr[4:])
	numDesc := binary.LittleEndian.Uint32(hdr[8:])
	descOffset := binary.LittleEndian.Uint32(hdr[16:])
	dataOffset := binary.LittleEndian.Uint32(hdr[20:])
	if nameSize == 0 || nameSize > maxStatsNameSize || numDesc > maxStatsDescs ||
		descOffset > maxStatsFileBytes || dataOffset > maxStatsFileBytes {
		return nil, fmt.Errorf("%w: name size %d, %d descriptors at %d, data at %d",
			errStatsLayout, nameSize, numDesc, descOffset, dataOffset)
	}
	descs := make([]byte, int(numDesc)*(statsDescFixed+int(nameSize)))
	if err := preadFull(fd, descs, int64(descOffset)); err != nil {
		return nil, fmt.Errorf("read statistics descriptors: %w", err)
	}
	s, err := parseStatsDescs(descs, int(numDesc), int(nameSize))
	if err != nil {
		return nil, err
	}
	s.fd, s.dataOffset = fd, int64(dataOffset)
	return s, nil
}

// parseStatsDescs parses numDesc descriptors of nameSize-byte names. It
// keeps the single-value counters and notes how much data they span.
func parseStatsDescs(b []byte, numDesc, nameSize int) (*Stats, error) {
	step := statsDescFixed + nameSize
	if numDesc < 0 || nameSize <= 0 || numDesc > maxStatsDescs || nameSize > maxStatsNameSize || len(b) < numDesc*step {
		return nil, fmt.Errorf("%w: %d descriptors of %d bytes in %d bytes", errStatsLayout, numDesc, step, len(b))
	}
	s := &Stats{fd: -1}
	for i := range numDesc {
		d := b[i*step : (i+1)*step]
		flags := binary.LittleEndian.Uint32(d[0:])
		size := int(binary.LittleEndian.Uint16(d[6:]))
		offset := binary.LittleEndian.Uint32(d[8:])
		name, _, _ := strings.Cut(string(d[statsDescFixed:]), "\x00")
		end := int64(offset) + int64(size)*8
		if end > maxStatsFileBytes {
			return nil, fmt.Errorf("%w: %q spans %d bytes of data", errStatsLayout, name, end)
		}
		s.dataLen = max(s.dataLen, int(end))
		if flags&statsTypeMask > statsTypePeak || size != 1 || offset%8 != 0 || name == "" {
			continue
		}
		s.names = append(s.names, name)
		s.offsets = append(s.offsets, offset)
	}
	return s, nil
}

// Read returns every counter's current value, in the file's order.
func (s *Stats) Read() ([]Stat, error) {
	data := make([]byte, s.dataLen)
	if err := preadFull(s.fd, data, s.dataOffset); err != nil {
		return nil, fmt.Errorf("kvm: read statistics: %w", err)
	}
	out := make([]Stat, len(s.names))
	for i, name := range s.names {
		out[i] = Stat{Name: name, Value: binary.LittleEndian.Uint64(data[s.offsets[i]:])}
	}
	return out, nil
}

// Close closes the statistics descriptor.
func (s *Stats) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: file ends at %d", errStatsLayout, off)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
