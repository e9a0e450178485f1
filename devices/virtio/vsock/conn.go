package vsock

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// connState is where a connection is in its life.
type connState int

const (
	// stateAwaitLine: a host program connected to the device's socket and
	// has not finished its "CONNECT <port>\n" line.
	stateAwaitLine connState = iota
	// stateRequested: the guest was sent a connection request and has not
	// answered.
	stateRequested
	// stateEstablished: bytes flow both ways.
	stateEstablished
)

// defaultConnectTimeout bounds how long a host program may take to send
// its CONNECT line, and how long the guest may take to answer the request
// that follows it.
const defaultConnectTimeout = 5 * time.Second

// maxLine bounds a CONNECT line: "CONNECT 4294967295\n" is 19 bytes.
const maxLine = 32

// connKey names a connection: the host end's port and the guest's.
type connKey struct{ local, peer uint32 }

// conn is one connection between a guest stream socket and a host Unix
// stream socket. Only the loop's goroutine touches it.
type conn struct {
	fd    int // the host Unix socket, non-blocking; -1 once closed
	key   connKey
	state connState

	line     []byte    // stateAwaitLine: the CONNECT line so far
	deadline time.Time // stateAwaitLine, stateRequested: when to give up

	// Guest to host.
	pending   []byte // bytes the guest sent that the socket has not taken yet, from pendOff
	pendOff   int
	fwdCnt    uint32 // bytes the socket took (the guest's credit: connBuf - (its sent - fwdCnt))
	sentFwd   uint32 // fwdCnt as last told to the guest
	guestShut uint32 // shutRcv | shutSend as the guest announced them
	wrShut    bool   // the socket was shut for writing (the guest sends no more)
	closing   bool   // the guest shut both ways: close once pending is written

	// Host to guest.
	txCnt        uint32 // payload bytes sent to the guest
	peerBufAlloc uint32 // the guest's receive buffer for this connection
	peerFwdCnt   uint32 // bytes of it the guest's reader took
	hostEOF      bool   // the socket reached end of file: SHUTDOWN sent or queued
	hostGone     bool   // the socket's peer closed it (EPOLLHUP)
	readable     bool   // the socket has bytes or end of file not read yet
	inReady      bool   // on the loop's ready list

	watched   uint32 // the epoll interest registered, 0 when not in the set
	inSet     bool
	creditDue bool // a CREDIT_UPDATE for this connection is queued
}

// unsent is how many bytes wait in pending.
func (c *conn) unsent() int { return len(c.pending) - c.pendOff }

// credit is how many more payload bytes the guest can take now. A guest
// that reports more bytes read than it was sent gets no more than its
// buffer.
func (c *conn) credit() uint32 {
	inflight := c.txCnt - c.peerFwdCnt
	if inflight >= c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inflight
}

// updatePeer records the credit fields of a packet the guest sent on c.
func (c *conn) updatePeer(h header) {
	c.peerBufAlloc = h.bufAlloc
	c.peerFwdCnt = h.fwdCnt
}

// canRead reports whether the loop should read the socket for the guest.
func (c *conn) canRead() bool {
	return c.state == stateEstablished && !c.hostEOF && c.guestShut&shutRcv == 0
}

// interest is the epoll interest c needs now.
func (c *conn) interest() uint32 {
	if c.hostGone {
		return 0 // EPOLLHUP would be reported for ever: readable stays set until EOF is read
	}
	var ev uint32
	switch c.state {
	case stateAwaitLine:
		ev = unix.EPOLLIN
	case stateEstablished:
		if c.canRead() && !c.readable {
			ev |= unix.EPOLLIN
		}
		if c.unsent() > 0 {
			ev |= unix.EPOLLOUT
		}
	}
	return ev
}

// queueGuestBytes writes p (guest memory or a copy) to the socket, keeping
// what it does not take in pending. It returns how many bytes the socket
// took.
func (c *conn) queueGuestBytes(p [][]byte) (int, error) {
	n := 0
	if c.unsent() == 0 {
		var err error
		n, err = writev(c.fd, p)
		if err != nil {
			return 0, err
		}
	}
	skip := n
	for _, b := range p {
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		c.pending = append(c.pending, b[skip:]...)
		skip = 0
	}
	c.fwdCnt += uint32(n)
	return n, nil
}

// flush writes pending bytes to the socket and returns how many it took.
func (c *conn) flush() (int, error) {
	if c.unsent() == 0 {
		return 0, nil
	}
	n, err := writev(c.fd, [][]byte{c.pending[c.pendOff:]})
	if err != nil {
		return 0, err
	}
	c.pendOff += n
	c.fwdCnt += uint32(n)
	switch {
	case c.unsent() == 0:
		c.pending, c.pendOff = c.pending[:0], 0
	case c.pendOff > len(c.pending)/2:
		k := copy(c.pending, c.pending[c.pendOff:])
		c.pending, c.pendOff = c.pending[:k], 0
	}
	return n, nil
}

// writev writes to a non-blocking socket: a full socket takes 0 bytes.
func writev(fd int, p [][]byte) (int, error) {
	for {
		n, err := unix.Writev(fd, p)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, nil
		case err != nil:
			return 0, err
		}
		return n, nil
	}
}

// parseConnect parses a host program's request line, without its newline:
// "CONNECT <port>", the port in decimal.
func parseConnect(line string) (uint32, error) {
	arg, ok := strings.CutPrefix(line, "CONNECT ")
	if !ok {
		return 0, fmt.Errorf("want \"CONNECT <port>\", got %q", line)
	}
	port, err := strconv.ParseUint(arg, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", arg)
	}
	return uint32(port), nil
}
