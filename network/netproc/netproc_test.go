package netproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/network"
)

// childEnv selects what the test binary does when it runs as the child.
const childEnv = "NETPROC_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "loopback":
		if err := Serve(ChildFD, newLoopback()); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "fail":
		fmt.Fprintln(os.Stderr, "child: cannot bind 127.0.0.1:8080: address in use")
		os.Exit(1)
	case "garbage":
		unix.Write(ChildFD, []byte("hello"))
		time.Sleep(time.Minute)
	case "silent":
		time.Sleep(time.Minute)
	}
	os.Exit(3)
}

// loopback is a Backend that returns every frame written to it.
type loopback struct {
	frames chan []byte
	done   chan struct{}
	once   sync.Once
}

func newLoopback() *loopback {
	return &loopback{frames: make(chan []byte, 16), done: make(chan struct{})}
}

func (l *loopback) ReadFrame(buf []byte) (int, error) {
	select {
	case f := <-l.frames:
		return copy(buf, f), nil
	case <-l.done:
		return 0, network.ErrClosed
	}
}
func (l *loopback) TryReadFrame(buf []byte) (int, error) { return 0, nil }
func (l *loopback) Wake()                                {}
func (l *loopback) WriteFrame(bufs [][]byte) error {
	select {
	case l.frames <- bytes.Join(bufs, nil):
		return nil
	case <-l.done:
		return network.ErrClosed
	}
}

// Features reports checksum offloads and a bit that is not an offload,
// which the VMM side must not see.
func (l *loopback) Features() uint64 { return network.FCsum | network.FGuestCsum | 1<<40 }

// SetGuestOffloads answers with a frame carrying the features, so the test
// sees them arrive.
func (l *loopback) SetGuestOffloads(f uint64) error {
	return l.WriteFrame([][]byte{make([]byte, network.HeaderLen), []byte(fmt.Sprintf("offloads=%#x..", f))})
}
func (l *loopback) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func startChild(t *testing.T, mode string, timeout time.Duration) (*Backend, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, mode)
	var stderr bytes.Buffer
	return Start(Config{Path: exe, Args: []string{"-test.run=^$"}, Stderr: &stderr, ReadyTimeout: timeout})
}

func frame(tag byte, n int) []byte {
	f := make([]byte, network.HeaderLen+n)
	for i := range f[network.HeaderLen:] {
		f[network.HeaderLen+i] = tag + byte(i)
	}
	return f
}

func TestFramesRoundTrip(t *testing.T) {
	b, err := startChild(t, "loopback", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	buf := make([]byte, 70000)
	for i, n := range []int{14, 1514, 65535} {
		want := frame(byte(i), n)
		// Sent as two pieces, as the device does (header, then data).
		if err := b.WriteFrame([][]byte{want[:network.HeaderLen], want[network.HeaderLen:]}); err != nil {
			t.Fatalf("WriteFrame %d: %v", n, err)
		}
		got, err := b.ReadFrame(buf)
		if err != nil {
			t.Fatalf("ReadFrame %d: %v", n, err)
		}
		if !bytes.Equal(buf[:got], want) {
			t.Fatalf("frame of %d bytes came back as %d different bytes", len(want), got)
		}
	}
	if n, err := b.TryReadFrame(buf); n != 0 || err != nil {
		t.Errorf("TryReadFrame on an empty queue = %d, %v", n, err)
	}
	// Wake ends a blocked read.
	done := make(chan error, 1)
	go func() { _, err := b.ReadFrame(buf); done <- err }()
	time.Sleep(20 * time.Millisecond)
	b.Wake()
	if err := <-done; !errors.Is(err, network.ErrWoken) {
		t.Errorf("ReadFrame after Wake = %v, want ErrWoken", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// The child exited on its own when the socket closed.
	if b.cmd.ProcessState == nil || !b.cmd.ProcessState.Success() {
		t.Errorf("child state after Close: %v", b.cmd.ProcessState)
	}
	if _, err := b.ReadFrame(buf); !errors.Is(err, network.ErrClosed) {
		t.Errorf("ReadFrame after Close = %v, want ErrClosed", err)
	}
}

func TestChildFailsBeforeReady(t *testing.T) {
	_, err := startChild(t, "fail", 0)
	if err == nil || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("Start = %v, want an error carrying the child's stderr", err)
	}
}

func TestChildSendsGarbage(t *testing.T) {
	_, err := startChild(t, "garbage", 0)
	if err == nil || !strings.Contains(err.Error(), "is not") {
		t.Fatalf("Start = %v, want a bad-handshake error", err)
	}
}

func TestChildNeverReady(t *testing.T) {
	start := time.Now()
	_, err := startChild(t, "silent", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("Start = %v, want a timeout", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Start took %v", time.Since(start))
	}
}

func TestMissingProgram(t *testing.T) {
	_, err := Start(Config{Path: "/nonexistent/vmm-usernet"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vmm-usernet") {
		t.Fatalf("Start = %v", err)
	}
}

func TestChildStderrHeldUntilReady(t *testing.T) {
	h := &heldWriter{dst: new(bytes.Buffer), max: 16}
	h.Write([]byte("first line\n"))
	h.Write([]byte("second line\n"))
	if got := h.summary(); got != "ine; second line;" {
		t.Errorf("summary = %q (the last 16 bytes, one line)", got)
	}
	if h.dst.(*bytes.Buffer).Len() != 0 {
		t.Error("written through before release")
	}
	h.release()
	h.Write([]byte("after\n"))
	if got := h.dst.(*bytes.Buffer).String(); got != "ine\nsecond line\nafter\n" {
		t.Errorf("after release: %q", got)
	}
}

func TestOffloadsPassedToChild(t *testing.T) {
	b, err := startChild(t, "loopback", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if f, want := b.Features(), network.FCsum|network.FGuestCsum; f != want {
		t.Fatalf("Features = %#x, want %#x", f, want)
	}
	if err := b.SetGuestOffloads(network.FHostTSO4); err == nil {
		t.Error("SetGuestOffloads of an offload the child did not offer: no error")
	}
	buf := make([]byte, 1024)
	for _, f := range []uint64{network.FGuestCsum, 0} {
		if err := b.SetGuestOffloads(f); err != nil {
			t.Fatal(err)
		}
		n, err := b.ReadFrame(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(buf[network.HeaderLen:n]), fmt.Sprintf("offloads=%#x..", f); got != want {
			t.Errorf("child saw %q, want %q", got, want)
		}
	}
	// A frame that merely starts like the control message is a frame.
	f := append(make([]byte, network.HeaderLen), encodeOffloads(network.FCsum)...)
	if err := b.WriteFrame([][]byte{f}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ReadFrame(buf); err != nil || !bytes.Equal(buf[:n], f) {
		t.Errorf("frame came back as %q, %v", buf[:n], err)
	}
}
