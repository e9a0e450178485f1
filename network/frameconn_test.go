package network

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func frameConnPair(t *testing.T) (*FrameConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewFrameConn(fds[0], "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c, fds[1]
}

func TestFrameConnDropsRuntsAndTruncated(t *testing.T) {
	c, peer := frameConnPair(t)
	buf := make([]byte, 64)
	good := make([]byte, 40)
	good[HeaderLen] = 0xAB
	for _, m := range [][]byte{make([]byte, HeaderLen-1), make([]byte, 64), make([]byte, 100), good} {
		if _, err := unix.Write(peer, m); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.ReadFrame(buf)
	if err != nil || n != len(good) || buf[HeaderLen] != 0xAB {
		t.Fatalf("ReadFrame = %d, %v; want the 40-byte frame after the runt and the truncated ones", n, err)
	}
	if n, err := c.TryReadFrame(buf); n != 0 || err != nil {
		t.Errorf("TryReadFrame on empty = %d, %v", n, err)
	}
}

func TestFrameConnPeerClosed(t *testing.T) {
	c, peer := frameConnPair(t)
	unix.Close(peer)
	if _, err := c.ReadFrame(make([]byte, 64)); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadFrame after the peer closed = %v, want ErrClosed", err)
	}
	if err := c.WriteFrame([][]byte{make([]byte, 20)}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteFrame after the peer closed = %v, want ErrClosed", err)
	}
}

func TestFrameConnWriteIsOneMessage(t *testing.T) {
	c, peer := frameConnPair(t)
	if err := c.WriteFrame([][]byte{make([]byte, HeaderLen), []byte("frame data")}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := unix.Read(peer, buf)
	if err != nil || n != HeaderLen+len("frame data") {
		t.Errorf("peer read %d, %v", n, err)
	}
}
