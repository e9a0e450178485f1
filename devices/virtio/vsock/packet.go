package vsock

import (
	"encoding/binary"
	"fmt"
)

// HostCID is the address of the host (VMADDR_CID_HOST): the only peer
// this device connects a guest to.
const HostCID = 2

// Packet types and operations (virtio 1.2, 5.10.6).
const (
	typeStream = 1

	opRequest       = 1
	opResponse      = 2
	opReset         = 3
	opShutdown      = 4
	opRW            = 5
	opCreditUpdate  = 6
	opCreditRequest = 7
)

// Shutdown flags: the sender will receive (shutRcv) or send (shutSend) no
// more.
const (
	shutRcv  = 1
	shutSend = 2
)

// hdrLen is the size of struct virtio_vsock_hdr.
const hdrLen = 44

// MaxPayload bounds the payload of one packet, in either direction
// (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE in Linux). A transmitted packet that
// claims more is malformed.
const MaxPayload = 64 << 10

// header is struct virtio_vsock_hdr, decoded. Every field comes from the
// guest when it is read from the transmit queue.
type header struct {
	srcCID, dstCID   uint64
	srcPort, dstPort uint32
	len              uint32
	typ, op          uint16
	flags            uint32
	bufAlloc, fwdCnt uint32
}

// decodeHeader decodes b, which must hold hdrLen bytes.
func decodeHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		srcCID: le.Uint64(b[0:]), dstCID: le.Uint64(b[8:]),
		srcPort: le.Uint32(b[16:]), dstPort: le.Uint32(b[20:]),
		len: le.Uint32(b[24:]), typ: le.Uint16(b[28:]), op: le.Uint16(b[30:]),
		flags: le.Uint32(b[32:]), bufAlloc: le.Uint32(b[36:]), fwdCnt: le.Uint32(b[40:]),
	}
}

// encode writes h into b, which must hold hdrLen bytes.
func (h header) encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.srcCID)
	le.PutUint64(b[8:], h.dstCID)
	le.PutUint32(b[16:], h.srcPort)
	le.PutUint32(b[20:], h.dstPort)
	le.PutUint32(b[24:], h.len)
	le.PutUint16(b[28:], h.typ)
	le.PutUint16(b[30:], h.op)
	le.PutUint32(b[32:], h.flags)
	le.PutUint32(b[36:], h.bufAlloc)
	le.PutUint32(b[40:], h.fwdCnt)
}

// errPacket describes a transmitted packet the device drops.
type errPacket struct{ reason string }

func (e errPacket) Error() string { return "vsock: bad packet: " + e.reason }

// checkTx validates a header the guest transmitted, whose chain has
// readable bytes in all (header included), against the guest's own
// address guestCID. A packet that fails is dropped without an answer: it
// is not addressed from this guest to the host, or its length is a lie.
// Unknown types and operations pass here; the caller answers them with a
// reset, as the peer of a confused driver should.
func checkTx(h header, readable uint64, guestCID uint64) error {
	switch {
	case h.srcCID != guestCID:
		return errPacket{fmt.Sprintf("source CID %d is not the guest's (%d)", h.srcCID, guestCID)}
	case h.dstCID != HostCID:
		return errPacket{fmt.Sprintf("destination CID %d is not the host", h.dstCID)}
	case h.len > MaxPayload:
		return errPacket{fmt.Sprintf("payload length %d exceeds %d", h.len, MaxPayload)}
	case uint64(h.len) > readable-hdrLen:
		return errPacket{fmt.Sprintf("payload length %d exceeds the %d bytes the chain holds", h.len, readable-hdrLen)}
	case h.op != opRW && h.len != 0:
		return errPacket{fmt.Sprintf("operation %d carries %d payload bytes", h.op, h.len)}
	}
	return nil
}
