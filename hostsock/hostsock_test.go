package hostsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	live := filepath.Join(dir, "live")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(live); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("live socket: %v", err)
	}
	stale := filepath.Join(dir, "stale")
	fd, err := Listen(stale)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // the file stays, nobody answers
	if fd, err = Listen(stale); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer unix.Close(fd)
	c, err := net.Dial("unix", stale)
	if err != nil {
		t.Fatalf("not listening: %v", err)
	}
	c.Close()
	if _, err := Listen(filepath.Join(dir, "no", "dir")); err == nil {
		t.Fatal("bind in a missing directory accepted")
	}
}
