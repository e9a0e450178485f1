// Package network owns the host side of guest networking: the Backend
// interface through which a virtio-net device exchanges Ethernet frames with
// the host, the virtio-net header that prefixes every frame crossing it, and
// small helpers shared by the backends (tap/, usernet/) and the device:
// feature bits and MAC addresses.
package network

import (
	"errors"
	"syscall"
)

// HeaderLen is the size of struct virtio_net_hdr_v1 (virtio 1.2, 5.1.6) that
// precedes every frame crossing a Backend.
const HeaderLen = 12

// ErrClosed is returned by ReadFrame (and WriteFrame) after Close.
var ErrClosed = errors.New("network: backend closed")

// ErrWoken is returned by ReadFrame or TryReadFrame once for each Wake.
var ErrWoken = errors.New("network: read woken")

// Backend moves Ethernet frames between a virtio-net device and the host.
// Every frame is prefixed by a HeaderLen-byte virtio-net header
// (little-endian), so offloads pass through unchanged where the backend
// supports them.
//
// ReadFrame and TryReadFrame are called from one goroutine (the device's
// rx worker) and WriteFrame from another (the tx worker); Wake and Close may
// be called from any goroutine and must wake a blocked ReadFrame.
type Backend interface {
	// ReadFrame blocks until the host has a frame for the guest, copies
	// header+frame into buf and returns the length (frames longer than buf
	// are dropped, not truncated). Returns ErrClosed after Close and
	// ErrWoken after Wake.
	ReadFrame(buf []byte) (int, error)
	// TryReadFrame is ReadFrame without waiting: it returns 0, nil when no
	// frame is queued. It lets one goroutine drain every queued frame
	// before it signals the guest once.
	TryReadFrame(buf []byte) (int, error)
	// Wake makes the ReadFrame blocked now, or else the next ReadFrame or
	// TryReadFrame, return ErrWoken (wake-ups do not accumulate), so a
	// device can stop its rx worker without waiting for host traffic.
	Wake()
	// WriteFrame sends one header+frame from the guest, given as the
	// guest's buffers in order.
	WriteFrame(bufs [][]byte) error
	// Features returns the virtio-net offload feature bits the backend can
	// honour (0 if none: plain frames, header zeroed).
	Features() uint64
	// SetGuestOffloads tells the backend which receive offloads the guest
	// accepted (e.g. TUNSETOFFLOAD for TAP).
	SetGuestOffloads(features uint64) error
	Close() error
}

// Pollable is implemented by a Backend whose frames for the guest are
// queued exactly when a file descriptor is readable (TAP). A device may add
// that descriptor to its own poll set, to wait for host frames and guest
// notifications in one goroutine; it reads frames only through the
// Backend's methods.
type Pollable interface {
	SyscallConn() (syscall.RawConn, error)
}
