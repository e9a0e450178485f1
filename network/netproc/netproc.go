// Package netproc runs a network backend in a child process and exchanges
// the guest's frames with it over a SOCK_SEQPACKET socket pair, one message
// per virtio-net header+frame. The VMM side is Start, which returns a
// network.Backend; the child side is Serve.
//
// It keeps large network code that parses the guest's traffic (the
// user-mode network, gVisor's netstack, in cmd/vmm-usernet) out of the
// VMM's process: a fault there ends the child, not the VMM (the device just
// loses its link), the child can be confined on its own, and a VMM without
// user-mode networking does not carry that code's memory.
//
// Protocol: the child's socket is its file descriptor 3. When its backend is
// ready it sends one message: Ready followed by its offload features
// (network.Backend.Features, 8 bytes little-endian). After that every
// message in either direction is one header+frame (at least
// network.HeaderLen+14 bytes), except the VMM's control message that
// forwards SetGuestOffloads: offloadsTag followed by the features (8 bytes
// little-endian), shorter than any frame. The child exits when the VMM's end
// closes, so it never outlives the VMM, even after SIGKILL.
package netproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/network"
)

// Ready starts the first message the child sends, once it can carry frames.
const Ready = "vmm-netproc-ready/2"

// offloadsTag starts the control message carrying SetGuestOffloads.
const offloadsTag = "OFFLOADS"

// readyLen and offloadsLen are the lengths of the two non-frame messages.
const (
	readyLen    = len(Ready) + 8
	offloadsLen = len(offloadsTag) + 8
)

// ChildFD is the child's end of the socket pair.
const ChildFD = 3

// DefaultReadyTimeout bounds the wait for Ready.
const DefaultReadyTimeout = 30 * time.Second

// exitWait is how long Close waits for the child to exit on its own after
// the socket closes, before it kills it.
const exitWait = 2 * time.Second

// Config says which child to run.
type Config struct {
	// Path and Args of the child program (Args without the program name).
	Path string
	Args []string
	// Stderr receives the child's standard error (its log); nil means the
	// VMM's own. The last few KiB are also kept for the error when the
	// child fails before it is ready.
	Stderr io.Writer
	// ReadyTimeout bounds the wait for Ready; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Backend is the VMM side: a network.Backend whose frames go to and come
// from the child process.
type Backend struct {
	*network.FrameConn
	name     string
	features uint64 // the child's offloads, from its Ready message
	cmd      *exec.Cmd
	exit     chan error // the child's Wait result, once
	once     sync.Once
	err      error
}

var _ network.Backend = (*Backend)(nil)

// Start runs the child with its end of a new socket pair as descriptor 3
// and waits for its Ready message. On error the child is gone.
func Start(cfg Config) (*Backend, error) {
	name := filepath.Base(cfg.Path)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netproc: %s: socketpair: %w", name, err)
	}
	child := os.NewFile(uintptr(fds[1]), name+" socket")
	conn, err := network.NewFrameConn(fds[0], name)
	if err != nil {
		unix.Close(fds[0])
		child.Close()
		return nil, fmt.Errorf("netproc: %w", err)
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	out := &heldWriter{dst: stderr, max: 4 << 10}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.ExtraFiles = []*os.File{child} // descriptor 3
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group: a terminal's signals reach the VMM, which
	// then closes the socket; the child follows from that.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		conn.Close()
		child.Close()
		return nil, fmt.Errorf("netproc: start %s: %w", cfg.Path, err)
	}
	child.Close()
	b := &Backend{FrameConn: conn, name: name, cmd: cmd, exit: make(chan error, 1)}
	go func() { b.exit <- cmd.Wait() }()

	if err := b.awaitReady(cfg.ReadyTimeout); err != nil {
		b.Close()
		if s := strings.Trim(out.summary(), "; "); s != "" {
			return nil, fmt.Errorf("netproc: %s: %w: %s", name, err, s)
		}
		return nil, fmt.Errorf("netproc: %s: %w", name, err)
	}
	out.release()
	return b, nil
}

// awaitReady reads the child's first message.
func (b *Backend) awaitReady(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	if err := b.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 64)
	rc, err := b.SyscallConn()
	if err != nil {
		return err
	}
	// Read the raw message: Ready is shorter than a frame, which
	// FrameConn.ReadFrame would drop as a runt.
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("not ready after %v", timeout)
	case err != nil:
		return err
	case rerr != nil:
		return fmt.Errorf("read ready message: %w", rerr)
	case n == 0:
		select {
		case werr := <-b.exit:
			b.exit <- werr
			if werr != nil {
				return fmt.Errorf("exited before it was ready (%v)", werr)
			}
		case <-time.After(exitWait):
		}
		return errors.New("exited before it was ready")
	case n != readyLen || string(buf[:len(Ready)]) != Ready:
		return fmt.Errorf("first message %q is not %q and features", buf[:min(n, 32)], Ready)
	}
	b.features = binary.LittleEndian.Uint64(buf[len(Ready):n]) & network.OffloadFeatures
	return b.SetReadDeadline(time.Time{})
}

// Pid returns the child's process ID.
func (b *Backend) Pid() int { return b.cmd.Process.Pid }

// Features implements network.Backend: the offloads the child reported.
func (b *Backend) Features() uint64 { return b.features }

// SetGuestOffloads implements network.Backend: it passes the guest's
// offloads to the child, ahead of any frame sent after it. A child that has
// gone is not an error here; the device sees its frames fail.
func (b *Backend) SetGuestOffloads(features uint64) error {
	if features&^b.features != 0 {
		return fmt.Errorf("netproc: %s: guest offloads %#x not offered", b.name, features)
	}
	if err := b.WriteFrame([][]byte{encodeOffloads(features)}); err != nil && !errors.Is(err, network.ErrClosed) {
		return fmt.Errorf("netproc: %s: %w", b.name, err)
	}
	return nil
}

// encodeOffloads and decodeOffloads are the control message's codec.
func encodeOffloads(features uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte(offloadsTag), features)
}

func decodeOffloads(msg []byte) (uint64, bool) {
	if len(msg) != offloadsLen || string(msg[:len(offloadsTag)]) != offloadsTag {
		return 0, false
	}
	return binary.LittleEndian.Uint64(msg[len(offloadsTag):]), true
}

// Close closes the socket, which makes the child exit, and reaps it (killing
// it if it has not exited within a short wait).
func (b *Backend) Close() error {
	b.once.Do(func() {
		b.err = b.FrameConn.Close()
		select {
		case <-b.exit:
		case <-time.After(exitWait):
			_ = b.cmd.Process.Kill()
			<-b.exit
		}
	})
	return b.err
}

// heldWriter holds what the child writes until release, keeping the last
// max bytes: a child that fails before it is ready is reported in one error
// (with its own words), not also on the VMM's stderr. After release, writes
// go straight to dst.
type heldWriter struct {
	mu       sync.Mutex
	dst      io.Writer
	max      int
	held     []byte
	released bool
}

func (h *heldWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return h.dst.Write(p)
	}
	h.held = append(h.held, p...)
	if over := len(h.held) - h.max; over > 0 {
		h.held = append(h.held[:0], h.held[over:]...)
	}
	return len(p), nil
}

// release writes out what was held and lets later writes through.
func (h *heldWriter) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.released {
		h.released = true
		_, _ = h.dst.Write(h.held)
		h.held = nil
	}
}

// summary returns what was held as one line.
func (h *heldWriter) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(strings.Fields(strings.ReplaceAll(string(h.held), "\n", "; ")), " ")
}
