// Command vsockbench is the host side of the vsock throughput benchmark
// (scripts/bench-vsock), run in the nested lane's test host against the
// guest's vsock mode (images/guest/modes/vsock.sh). It speaks to our VMM
// through its Unix sockets and to QEMU's vhost-vsock through AF_VSOCK:
//
//	vsockbench hello unix:PATH | vsock:PORT
//	    answer the mode's greeting once: "hello from the host: " + what it sent
//	vsockbench echo unix:PATH:PORT | vsock:CID:PORT BYTES
//	    connect to the guest's echo server (retrying until it listens), send
//	    BYTES while reading the echo, check it, print "echo BYTES bytes SECONDS s"
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vsockbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "hello":
		return hello(args[1])
	case len(args) == 3 && args[0] == "echo":
		n, err := strconv.Atoi(args[2])
		if err != nil || n <= 0 {
			return fmt.Errorf("bad byte count %q", args[2])
		}
		return echo(args[1], n)
	}
	return errors.New("usage: vsockbench hello unix:PATH|vsock:PORT | echo unix:PATH:PORT|vsock:CID:PORT BYTES")
}

// vsockConn wraps an AF_VSOCK stream descriptor.
type vsockConn struct{ f *os.File }

func (c vsockConn) Read(p []byte) (int, error)  { return c.f.Read(p) }
func (c vsockConn) Write(p []byte) (int, error) { return c.f.Write(p) }
func (c vsockConn) Close() error                { return c.f.Close() }
func (c vsockConn) CloseWrite() error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) })
	return serr
}

type stream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

func hello(where string) error {
	var c stream
	switch kind, arg, _ := strings.Cut(where, ":"); kind {
	case "unix":
		ln, err := net.Listen("unix", arg)
		if err != nil {
			return err
		}
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		c = conn.(*net.UnixConn)
	case "vsock":
		port, err := strconv.ParseUint(arg, 10, 32)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: uint32(port)}); err != nil {
			return err
		}
		if err := unix.Listen(fd, 1); err != nil {
			return err
		}
		nfd, _, err := unix.Accept(fd)
		unix.Close(fd)
		if err != nil {
			return err
		}
		c = vsockConn{os.NewFile(uintptr(nfd), "vsock")}
	default:
		return fmt.Errorf("bad address %q", where)
	}
	defer c.Close()
	msg, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	_, err = c.Write(append([]byte("hello from the host: "), msg...))
	return err
}

// dial connects to the guest's port, retrying for two minutes while the
// guest is not listening yet.
func dial(where string) (stream, *bufio.Reader, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, r, err := dialOnce(where)
		if err == nil || time.Now().After(deadline) {
			return c, r, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dialOnce(where string) (stream, *bufio.Reader, error) {
	parts := strings.Split(where, ":")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("bad address %q", where)
	}
	port, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil {
		return nil, nil, err
	}
	switch parts[0] {
	case "unix":
		conn, err := net.Dial("unix", parts[1])
		if err != nil {
			return nil, nil, err
		}
		c := conn.(*net.UnixConn)
		fmt.Fprintf(c, "CONNECT %d\n", port)
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "OK ") {
			c.Close()
			return nil, nil, fmt.Errorf("no OK line (%q, %v)", line, err)
		}
		return c, r, nil
	case "vsock":
		cid, err := strconv.ParseUint(parts[1], 10, 32)
		if err != nil {
			return nil, nil, err
		}
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nil, err
		}
		if err := unix.Connect(fd, &unix.SockaddrVM{CID: uint32(cid), Port: uint32(port)}); err != nil {
			unix.Close(fd)
			return nil, nil, err
		}
		c := vsockConn{os.NewFile(uintptr(fd), "vsock")}
		return c, bufio.NewReader(c), nil
	}
	return nil, nil, fmt.Errorf("bad address %q", where)
}

func echo(where string, n int) error {
	c, r, err := dial(where)
	if err != nil {
		return err
	}
	defer c.Close()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- err
	}()
	got, err := io.ReadAll(r)
	d := time.Since(start)
	if err != nil {
		return err
	}
	if err := <-sent; err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("echo of %d bytes differs from the %d sent", len(got), n)
	}
	fmt.Printf("echo %d bytes %.3f s\n", n, d.Seconds())
	return nil
}
