package net

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/network"
)

// Frame limits. MaxFrameLen is the longest Ethernet frame (without the
// virtio-net header) either direction carries (network.MaxFrameLen).
const (
	MaxFrameLen = network.MaxFrameLen
	MinFrameLen = 14 // an Ethernet header
)

// ErrBadFrame is wrapped by every reason a frame (from the guest or the
// backend) is refused. Such a frame is dropped; the queue goes on.
var ErrBadFrame = errors.New("virtio-net: bad frame")

// CheckTxHeader validates the virtio-net header of a frame the guest sends
// (virtio 1.2, 5.1.6.2) against the negotiated features and the length of
// the frame that follows it. The header must be a copy that the guest can
// no longer change.
func CheckTxHeader(h network.Header, frameLen int, features uint64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadFrame}, args...)...)
	}
	if frameLen < MinFrameLen || frameLen > MaxFrameLen {
		return bad("frame of %d bytes outside %d..%d", frameLen, MinFrameLen, MaxFrameLen)
	}
	if h.Flags&^(network.HdrFNeedsCsum|network.HdrFDataValid) != 0 {
		return bad("header flags %#x", h.Flags)
	}
	if h.Flags&network.HdrFNeedsCsum != 0 {
		if features&network.FCsum == 0 {
			return bad("NEEDS_CSUM without VIRTIO_NET_F_CSUM")
		}
		// The checksum field (2 bytes at csum_start+csum_offset) lies in the frame.
		if int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return bad("checksum at %d+%d beyond a %d-byte frame", h.CsumStart, h.CsumOffset, frameLen)
		}
	}
	gso := h.GSOType &^ network.GSOECN
	var need uint64
	switch gso {
	case network.GSONone:
		if h.GSOType&network.GSOECN != 0 {
			return bad("ECN bit without a GSO type")
		}
		return nil
	case network.GSOTCPv4:
		need = network.FHostTSO4
	case network.GSOTCPv6:
		need = network.FHostTSO6
	case network.GSOUDP:
		need = network.FHostUFO
	default:
		return bad("GSO type %#x", h.GSOType)
	}
	if features&need == 0 {
		return bad("GSO type %#x not negotiated", h.GSOType)
	}
	if h.GSOType&network.GSOECN != 0 && features&network.FHostECN == 0 {
		return bad("GSO ECN not negotiated")
	}
	if h.Flags&network.HdrFNeedsCsum == 0 {
		return bad("GSO frame without NEEDS_CSUM")
	}
	if h.GSOSize == 0 {
		return bad("GSO frame with gso_size 0")
	}
	if int(h.HdrLen) > frameLen {
		return bad("hdr_len %d beyond a %d-byte frame", h.HdrLen, frameLen)
	}
	return nil
}

// checkRxHeader validates the header of a frame from the backend against
// what the guest accepted, so a backend (or a host peer) cannot hand the
// guest an offload it did not negotiate. It returns the header to deliver.
func checkRxHeader(h network.Header, frameLen int, features uint64) (network.Header, error) {
	bad := func(format string, args ...any) (network.Header, error) {
		return network.Header{}, fmt.Errorf("%w: "+format, append([]any{ErrBadFrame}, args...)...)
	}
	if frameLen < MinFrameLen || frameLen > MaxFrameLen {
		return bad("frame of %d bytes outside %d..%d", frameLen, MinFrameLen, MaxFrameLen)
	}
	out := h
	out.NumBuffers = 0
	if features&network.FGuestCsum == 0 {
		// The guest takes only complete frames: any checksum hint is
		// meaningless to it, a partial checksum is not acceptable.
		if h.Flags&network.HdrFNeedsCsum != 0 || h.GSOType != network.GSONone {
			return bad("offloaded frame for a guest without GUEST_CSUM")
		}
		return network.Header{}, nil
	}
	out.Flags &= network.HdrFNeedsCsum | network.HdrFDataValid
	if out.Flags&network.HdrFNeedsCsum != 0 && int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
		return bad("checksum at %d+%d beyond a %d-byte frame", h.CsumStart, h.CsumOffset, frameLen)
	}
	var need uint64
	switch h.GSOType &^ network.GSOECN {
	case network.GSONone:
		out.GSOType, out.GSOSize, out.HdrLen = network.GSONone, 0, 0
		return out, nil
	case network.GSOTCPv4:
		need = network.FGuestTSO4
	case network.GSOTCPv6:
		need = network.FGuestTSO6
	case network.GSOUDP:
		need = network.FGuestUFO
	default:
		return bad("GSO type %#x", h.GSOType)
	}
	if features&need == 0 || (h.GSOType&network.GSOECN != 0 && features&network.FGuestECN == 0) {
		return bad("GSO type %#x not accepted by the guest", h.GSOType)
	}
	if h.GSOSize == 0 {
		return bad("GSO frame with gso_size 0")
	}
	return out, nil
}
