package guest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVsock: the guest reaches a host program listening on SOCKET_5000,
// a connect to a port nobody listens on is refused, and a host program
// connects through SOCKET to the guest's echo server on port 5001 and gets
// back 1 MiB as it sent it (both directions under the device's credit
// flow control). vmm runs confined (seccomp on, as by default).
func TestVsock(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "v.sock")
	metrics := filepath.Join(dir, "metrics.json")

	// The guest's connect to CID 2 port 5000: answer with a prefix and
	// everything the guest sent until it shut its sending side.
	ln, err := net.Listen("unix", sock+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		msg, err := io.ReadAll(c)
		if err == nil {
			_, err = c.Write(append([]byte("hello from the host: "), msg...))
		}
		served <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := append(stockKernel(t, "vsock"), "--vsock", "cid=42,path="+sock, "--metrics-file", metrics)
	echoed := make(chan error, 1)
	started := false
	console, cmd := interactiveGuest(ctx, t, args, func(line string, _ io.Writer) bool {
		if !started && strings.Contains(line, "vsock: listening on port 5001") {
			started = true
			go func() { echoed <- echoThroughGuest(sock, 5001, 1<<20) }()
		}
		return true
	})
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	out := console.String()
	if !started {
		t.Fatalf("the guest never listened; console:\n%s", out)
	}
	if err := <-echoed; err != nil {
		t.Errorf("host program through %s: %v", sock, err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("host server on %s_5000: %v", sock, err)
		}
	default:
		t.Error("the guest never connected to port 5000")
	}
	r := guestRun{console: out, status: cmd.ProcessState.ExitCode()}
	r.expect(t, exitOK, "VMM-VSOCK cid=42", "VMM-VSOCK sent ok", "VMM-VSOCK refused ok",
		"VMM-VSOCK echo done", "VMM-TEST-RESULT vsock PASS")

	var m struct {
		Vsock struct {
			HostConnects, GuestConnects, Refused, TxBytes, RxBytes, BadPackets, CreditOverruns uint64
		} `json:"vsock"`
	}
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	v := m.Vsock
	if v.HostConnects != 1 || v.GuestConnects != 1 || v.Refused != 1 || v.BadPackets != 0 || v.CreditOverruns != 0 ||
		v.RxBytes < 1<<20 || v.TxBytes < 1<<20 {
		t.Errorf("vsock metrics %+v", v)
	}
}

// echoThroughGuest connects to the guest's port through the device's
// socket, sends n random bytes while reading the echo, and compares.
func echoThroughGuest(sock string, port, n int) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return err
	}
	// The echo follows the answer line: whatever the reader buffered past
	// the line is part of it.
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("answer line: %w (got %q)", err, line)
	}
	if !strings.HasPrefix(line, "OK ") {
		return fmt.Errorf("answer %q, want OK <port>", line)
	}
	data := make([]byte, n)
	rand.Read(data)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.UnixConn).CloseWrite()
		}
		sent <- err
	}()
	got, err := io.ReadAll(br)
	if err != nil {
		return fmt.Errorf("read echo after %d bytes: %w", len(got), err)
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("echo of %d bytes differs from the %d sent", len(got), len(data))
	}
	return nil
}
