package hostsock

import (
	"fmt"
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
	if _, err := Listen(file, Umask); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	live := filepath.Join(dir, "live")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(live, Umask); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("live socket: %v", err)
	}
	stale := filepath.Join(dir, "stale")
	fd, err := Listen(stale, Umask)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // the file stays, nobody answers
	if fd, err = Listen(stale, Umask); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer unix.Close(fd)
	c, err := net.Dial("unix", stale)
	if err != nil {
		t.Fatalf("not listening: %v", err)
	}
	c.Close()
	if _, err := Listen(filepath.Join(dir, "no", "dir"), Umask); err == nil {
		t.Fatal("bind in a missing directory accepted")
	}
}

func TestListenOwnerOnly(t *testing.T) {
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	dir := t.TempDir()
	for access, want := range map[Access]os.FileMode{OwnerOnly: 0o700, Umask: 0o755} {
		path := filepath.Join(dir, fmt.Sprint(access))
		fd, err := Listen(path, access)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("access %d: mode %o, want %o", access, got, want)
		}
	}
	if got := unix.Umask(0o022); got != 0o022 {
		t.Errorf("umask left at %o", got)
	}
}
