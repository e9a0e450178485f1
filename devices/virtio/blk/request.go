// Package blk owns the virtio block device (virtio 1.2, 5.2): parsing
// requests out of checked descriptor chains (request.go), the backing file
// (disk.go) and the device itself, its configuration space and queue
// worker (device.go). The transport is someone else's business.
//
// Every request is parsed and bounds-checked against the disk before any
// I/O; a request the guest got wrong completes with VIRTIO_BLK_S_IOERR
// (or UNSUPP) when its status byte is addressable, with zero bytes used
// otherwise, and never stops the device.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// Request types (virtio 1.2, 5.2.6).
const (
	TypeIn          = 0
	TypeOut         = 1
	TypeFlush       = 4
	TypeGetID       = 8
	TypeGetLifetime = 10
	TypeDiscard     = 11
	TypeWriteZeroes = 13
	TypeSecureErase = 14
)

// Request status values.
const (
	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

// SegmentFlagUnmap is the only defined flag of a discard / write zeroes
// segment.
const SegmentFlagUnmap = 1

const (
	// SectorSize is the unit of sector numbers and capacity.
	SectorSize = 512
	// IDBytes is the length of the GET_ID string.
	IDBytes = 20

	headerSize  = 16 // type u32, reserved u32, sector u64
	segmentSize = 16 // sector u64, num_sectors u32, flags u32
)

// Limits on discard and write zeroes requests, advertised in the
// configuration space and enforced by ParseRequest.
const (
	MaxDiscardSectors     = 1 << 22 // 2 GiB per segment
	MaxDiscardSeg         = 32
	MaxWriteZeroesSectors = 1 << 21 // 1 GiB per segment
	MaxWriteZeroesSeg     = 32
)

var (
	// ErrNoStatus means the chain has no device-writable byte for the
	// status: the request can only be completed with zero bytes used.
	ErrNoStatus = errors.New("virtio-blk: request has no status byte")
	// ErrBadRequest is wrapped by parse errors that complete with IOERR.
	ErrBadRequest = errors.New("virtio-blk: malformed request")
	// ErrUnsupported is wrapped by parse errors that complete with UNSUPP.
	ErrUnsupported = errors.New("virtio-blk: unsupported request")
)

// Segment is one range of a discard or write zeroes request.
type Segment struct {
	Sector  uint64
	Sectors uint32
	Unmap   bool // write zeroes only: the range may be deallocated
}

// Request is a parsed, range-checked block request. Data lives in the chain:
// for IN and GET_ID in its writable part at [0, Len), for OUT in its
// readable part at [16, 16+Len).
type Request struct {
	Type     uint32
	Sector   uint64
	Len      uint32    // data bytes (IN, OUT: a multiple of SectorSize; GET_ID: <= IDBytes)
	Segments []Segment // DISCARD, WRITE_ZEROES
	// StatusOffset is the offset of the status byte in the chain's writable
	// part: its last byte. It is valid whenever the error is not ErrNoStatus.
	StatusOffset uint64
}

// Status returns the status byte for a ParseRequest error: UNSUPP for
// ErrUnsupported, IOERR for anything else, OK for nil.
func Status(err error) uint8 {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, ErrUnsupported):
		return StatusUnsupp
	default:
		return StatusIOErr
	}
}

// ParseRequest parses the request in c (virtio 1.2, 5.2.6): a 16-byte
// header at the start of the readable part (it may span descriptors), data,
// and the status byte as the last writable byte. capacity is the disk size
// in sectors. It reads guest memory but performs no I/O.
func ParseRequest(mem *memory.Guest, c *queue.Chain, capacity uint64) (Request, error) {
	var r Request
	wlen, rlen := c.WritableLen(), c.ReadableLen()
	if wlen == 0 {
		return r, ErrNoStatus
	}
	r.StatusOffset = wlen - 1
	if rlen < headerSize {
		return r, fmt.Errorf("%w: %d readable bytes, header needs %d", ErrBadRequest, rlen, headerSize)
	}
	var hdr [headerSize]byte
	if err := c.ReadAt(mem, hdr[:], 0); err != nil {
		return r, fmt.Errorf("%w: header: %v", ErrBadRequest, err)
	}
	r.Type = binary.LittleEndian.Uint32(hdr[0:4])
	r.Sector = binary.LittleEndian.Uint64(hdr[8:16])

	switch r.Type {
	case TypeIn, TypeOut:
		data := wlen - 1 // IN: writable bytes before the status
		if r.Type == TypeOut {
			data = rlen - headerSize
		}
		if data%SectorSize != 0 {
			return r, fmt.Errorf("%w: data length %d not a multiple of %d", ErrBadRequest, data, SectorSize)
		}
		if !inRange(r.Sector, data/SectorSize, capacity) {
			return r, fmt.Errorf("%w: sectors [%d+%d) beyond capacity %d", ErrBadRequest, r.Sector, data/SectorSize, capacity)
		}
		r.Len = uint32(data) // < 2^32: the queue caps a chain at 2^32-1 bytes
	case TypeFlush:
	case TypeGetID:
		r.Len = uint32(min(wlen-1, IDBytes))
	case TypeDiscard, TypeWriteZeroes:
		segs, err := parseSegments(mem, c, rlen-headerSize, r.Type, capacity)
		r.Segments = segs
		if err != nil {
			return r, err
		}
	default:
		return r, fmt.Errorf("%w: type %d", ErrUnsupported, r.Type)
	}
	return r, nil
}

func parseSegments(mem *memory.Guest, c *queue.Chain, data uint64, typ uint32, capacity uint64) ([]Segment, error) {
	maxSeg, maxSectors, name := uint64(MaxDiscardSeg), uint32(MaxDiscardSectors), "discard"
	if typ == TypeWriteZeroes {
		maxSeg, maxSectors, name = MaxWriteZeroesSeg, MaxWriteZeroesSectors, "write zeroes"
	}
	if data == 0 || data%segmentSize != 0 {
		return nil, fmt.Errorf("%w: %s data length %d not a non-zero multiple of %d", ErrBadRequest, name, data, segmentSize)
	}
	n := data / segmentSize
	if n > maxSeg {
		return nil, fmt.Errorf("%w: %d %s segments, at most %d", ErrBadRequest, n, name, maxSeg)
	}
	raw := make([]byte, data)
	if err := c.ReadAt(mem, raw, headerSize); err != nil {
		return nil, fmt.Errorf("%w: %s segments: %v", ErrBadRequest, name, err)
	}
	segs := make([]Segment, n)
	// Flags first: unknown flags, or unmap on a discard, are UNSUPP
	// whatever the ranges say (virtio 1.2, 5.2.6.2).
	for i := range segs {
		b := raw[segmentSize*i:]
		flags := binary.LittleEndian.Uint32(b[12:16])
		if flags&^SegmentFlagUnmap != 0 || (typ == TypeDiscard && flags&SegmentFlagUnmap != 0) {
			return nil, fmt.Errorf("%w: %s segment %d flags %#x", ErrUnsupported, name, i, flags)
		}
		segs[i] = Segment{
			Sector:  binary.LittleEndian.Uint64(b[0:8]),
			Sectors: binary.LittleEndian.Uint32(b[8:12]),
			Unmap:   flags&SegmentFlagUnmap != 0,
		}
	}
	for i, s := range segs {
		if s.Sectors > maxSectors {
			return nil, fmt.Errorf("%w: %s segment %d of %d sectors, at most %d", ErrBadRequest, name, i, s.Sectors, maxSectors)
		}
		if !inRange(s.Sector, uint64(s.Sectors), capacity) {
			return nil, fmt.Errorf("%w: %s segment %d [%d+%d) beyond capacity %d", ErrBadRequest, name, i, s.Sector, s.Sectors, capacity)
		}
	}
	return segs, nil
}

// inRange reports whether sectors [sector, sector+n) lie within capacity,
// without overflowing.
func inRange(sector, n, capacity uint64) bool {
	return n <= capacity && sector <= capacity-n
}
