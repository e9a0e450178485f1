package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/netproc"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"--mac", "52:54:00:12:34:56", "--hostfwd", "tcp::8080-:80", "--hostfwd", "udp:0.0.0.0:53-:53", "--log-level", "info"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.mac.String() != "52:54:00:12:34:56" || len(o.forwards) != 2 || o.forwards[1].Proto != "udp" || o.level != slog.LevelInfo {
		t.Errorf("parsed %+v", o)
	}
	for _, bad := range [][]string{
		{"--mac", "52:54:00"},
		{"--hostfwd", "tcp::0-:80"},
		{"--log-level", "loud"},
		{"extra"},
	} {
		if _, err := parseArgs(bad, io.Discard); err == nil {
			t.Errorf("parseArgs(%q) accepted", bad)
		}
	}
}

func TestRunWithoutSocket(t *testing.T) {
	// The test process's descriptor 3 is not vmm's packet socket.
	err := run(nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "vmm run --net user") {
		t.Errorf("run = %v", err)
	}
}

// childEnv makes the test binary run as vmm-usernet itself (run), the way
// vmm starts it through netproc.
const childEnv = "VMM_USERNET_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := run([]string{"--mac", "52:54:00:12:34:56"}, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "vmm-usernet:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The confined helper still answers: an ARP request for the gateway, sent
// through netproc as vmm does, gets the gateway's reply, and the process
// exits cleanly when its socket closes.
func TestConfinedHelperAnswers(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1")
	var stderr bytes.Buffer
	b, err := netproc.Start(netproc.Config{Path: exe, Args: []string{"-test.run=^$"}, Stderr: &stderr})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer b.Close()
	if b.Features() == 0 {
		t.Error("the helper reported no offloads")
	}
	if err := b.SetGuestOffloads(b.Features()); err != nil {
		t.Fatal(err)
	}
	guest := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	f := make([]byte, network.HeaderLen+14+28)
	eth := f[network.HeaderLen:]
	copy(eth[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(eth[6:12], guest)
	eth[12], eth[13] = 0x08, 0x06 // ARP
	a := eth[14:]
	copy(a, []byte{0, 1, 8, 0, 6, 4, 0, 1}) // Ethernet/IPv4, request
	copy(a[8:14], guest)
	copy(a[14:18], []byte{10, 0, 2, 15})
	copy(a[24:28], []byte{10, 0, 2, 2})
	if err := b.WriteFrame([][]byte{f}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			b.Wake()
		}
	}()
	n, err := b.ReadFrame(buf)
	close(done)
	if err != nil {
		t.Fatalf("no reply: %v; helper said: %s", err, stderr.String())
	}
	reply := buf[network.HeaderLen:n]
	if len(reply) < 42 || reply[12] != 0x08 || reply[13] != 0x06 || reply[21] != 2 {
		t.Fatalf("reply is not an ARP reply: % x", reply)
	}
	if err := b.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if s := stderr.String(); strings.Contains(s, "vmm-usernet:") {
		t.Errorf("helper failed: %s", s)
	}
}
