package network

import (
	"encoding/binary"
	"fmt"
)

// MaxFrameLen is the longest Ethernet frame (after the virtio-net header)
// that crosses a Backend in either direction: a 64 KiB GSO super-packet
// plus its Ethernet and VLAN headers, as virtio 1.2, 5.1.6.3.1 sizes the
// driver's receive buffers (65550 bytes after the header).
const MaxFrameLen = 65550

// virtio-net feature bits (virtio 1.2, 5.1.3) that backends and the device
// share. The device-independent bits live in package virtio.
const (
	FCsum       uint64 = 1 << 0  // VIRTIO_NET_F_CSUM: device handles partial checksums from the driver
	FGuestCsum  uint64 = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: driver handles partial checksums
	FMTU        uint64 = 1 << 3  // VIRTIO_NET_F_MTU
	FMAC        uint64 = 1 << 5  // VIRTIO_NET_F_MAC
	FGuestTSO4  uint64 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	FGuestTSO6  uint64 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	FGuestECN   uint64 = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	FGuestUFO   uint64 = 1 << 10 // VIRTIO_NET_F_GUEST_UFO
	FHostTSO4   uint64 = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	FHostTSO6   uint64 = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FHostECN    uint64 = 1 << 13 // VIRTIO_NET_F_HOST_ECN
	FHostUFO    uint64 = 1 << 14 // VIRTIO_NET_F_HOST_UFO
	FMrgRxbuf   uint64 = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	FStatus     uint64 = 1 << 16 // VIRTIO_NET_F_STATUS
	FCtrlVQ     uint64 = 1 << 17 // VIRTIO_NET_F_CTRL_VQ
	FGuestUSO4  uint64 = 1 << 54 // VIRTIO_NET_F_GUEST_USO4
	FGuestUSO6  uint64 = 1 << 55 // VIRTIO_NET_F_GUEST_USO6
	FHostUSO    uint64 = 1 << 56 // VIRTIO_NET_F_HOST_USO
	FGuestHdrLn uint64 = 1 << 59 // VIRTIO_NET_F_GUEST_HDRLEN

	// OffloadFeatures are the offload bits a Backend may report from
	// Features; the device offers exactly the backend's subset of them.
	OffloadFeatures = FCsum | FGuestCsum | FGuestTSO4 | FGuestTSO6 | FGuestECN | FGuestUFO |
		FHostTSO4 | FHostTSO6 | FHostECN | FHostUFO
)

// Header flags and GSO types (virtio 1.2, 5.1.6).
const (
	HdrFNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	HdrFDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	HdrFRscInfo   = 4 // VIRTIO_NET_HDR_F_RSC_INFO

	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// Header is struct virtio_net_hdr_v1 (virtio 1.2, 5.1.6), little-endian on
// the wire.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// DecodeHeader reads a Header from the first HeaderLen bytes of b.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("network: virtio-net header: %d bytes, want %d", len(b), HeaderLen)
	}
	le := binary.LittleEndian
	return Header{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     le.Uint16(b[2:]),
		GSOSize:    le.Uint16(b[4:]),
		CsumStart:  le.Uint16(b[6:]),
		CsumOffset: le.Uint16(b[8:]),
		NumBuffers: le.Uint16(b[10:]),
	}, nil
}

// Encode writes h into the first HeaderLen bytes of b, which must be at
// least that long.
func (h Header) Encode(b []byte) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("network: virtio-net header: %d bytes, want %d", len(b), HeaderLen)
	}
	le := binary.LittleEndian
	b[0], b[1] = h.Flags, h.GSOType
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[10:], h.NumBuffers)
	return nil
}
