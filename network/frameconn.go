package network

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FrameConn exchanges header+frame messages over a non-blocking file
// descriptor on which one read(2) returns exactly one frame and one
// writev(2) sends exactly one: a TAP with IFF_VNET_HDR (network/tap), or a
// SOCK_SEQPACKET socket to a network process (network/netproc). Waits park in Go's netpoller, so a blocked ReadFrame
// holds no thread and Wake or Close ends it. It provides the read, wake,
// write and close halves of a Backend, and is Pollable.
type FrameConn struct {
	f      *os.File
	name   string      // for errors
	closed atomic.Bool // set by Close: I/O errors after it mean ErrClosed
}

var _ Pollable = (*FrameConn)(nil)

// NewFrameConn takes ownership of fd, which it makes non-blocking. name
// appears in errors.
func NewFrameConn(fd int, name string) (*FrameConn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("%s: set non-blocking: %w", name, err)
	}
	return &FrameConn{f: os.NewFile(uintptr(fd), name), name: name}, nil
}

// ReadFrame blocks until a frame arrives and copies it into buf. Runts
// (shorter than the header) and frames that fill buf completely (possibly
// truncated) are dropped. It returns ErrClosed after Close or once the peer
// has closed its end, and ErrWoken after Wake.
func (c *FrameConn) ReadFrame(buf []byte) (int, error) { return c.read(buf, true) }

// TryReadFrame is ReadFrame without waiting: 0, nil when nothing is queued.
func (c *FrameConn) TryReadFrame(buf []byte) (int, error) { return c.read(buf, false) }

// Wake makes the blocked ReadFrame, or else the next read, return ErrWoken:
// a read deadline in the past wakes the netpoller, and read clears it.
func (c *FrameConn) Wake() {
	_ = c.f.SetReadDeadline(time.Unix(1, 0)) // fails only once closed: reads then report ErrClosed
}

func (c *FrameConn) read(buf []byte, wait bool) (int, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0, ErrClosed
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return !wait || !errors.Is(rerr, unix.EAGAIN)
		})
		switch {
		case (err != nil || rerr != nil) && c.closed.Load():
			return 0, ErrClosed
		case errors.Is(err, os.ErrDeadlineExceeded):
			if err := c.f.SetReadDeadline(time.Time{}); err != nil && c.closed.Load() {
				return 0, ErrClosed
			}
			return 0, ErrWoken
		case err != nil:
			return 0, fmt.Errorf("%s: read: %w", c.name, err)
		case errors.Is(rerr, unix.EAGAIN), errors.Is(rerr, unix.EINTR):
			if !wait {
				return 0, nil
			}
			continue
		case errors.Is(rerr, unix.ECONNRESET):
			return 0, ErrClosed
		case rerr != nil:
			return 0, fmt.Errorf("%s: read: %w", c.name, rerr)
		case n == 0 && len(buf) > 0:
			return 0, ErrClosed // the peer closed its end
		case n < HeaderLen || n >= len(buf):
			continue // runt or possibly truncated: drop
		}
		return n, nil
	}
}

// WriteFrame sends the concatenation of bufs as one frame with one
// writev(2), waiting while the peer's queue is full.
func (c *FrameConn) WriteFrame(bufs [][]byte) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return ErrClosed
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		_, werr = unix.Writev(int(fd), bufs)
		return !errors.Is(werr, unix.EAGAIN)
	})
	switch {
	case (err != nil || werr != nil) && c.closed.Load():
		return ErrClosed
	case errors.Is(werr, unix.EPIPE), errors.Is(werr, unix.ECONNRESET):
		return ErrClosed
	case err != nil:
		return fmt.Errorf("%s: write: %w", c.name, err)
	case werr != nil:
		return fmt.Errorf("%s: write: %w", c.name, werr)
	}
	return nil
}

// SetReadDeadline bounds the next reads (used for handshakes); the zero
// time removes the bound. A read past it returns ErrWoken.
func (c *FrameConn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SyscallConn implements Pollable: the descriptor is readable exactly when
// a frame is queued (or the peer has gone).
func (c *FrameConn) SyscallConn() (syscall.RawConn, error) { return c.f.SyscallConn() }

// Close closes the descriptor and wakes a blocked ReadFrame.
func (c *FrameConn) Close() error {
	c.closed.Store(true)
	if err := c.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%s: close: %w", c.name, err)
	}
	return nil
}
