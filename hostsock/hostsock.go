// Package hostsock makes the Unix sockets the VMM listens on for host
// programs (the vsock device's host end, the control socket): a socket
// file a dead VMM left behind is replaced, one that still answers or a
// file that is not a socket is an error.
package hostsock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Access says who may connect to a socket Listen makes.
type Access int

const (
	// Umask leaves the socket file's mode to the process's umask.
	Umask Access = iota
	// OwnerOnly makes the file 0700 (only its owner may connect) from the
	// moment it exists (the control socket: whoever connects can pause or
	// stop the VM).
	OwnerOnly
)

// Listen binds a non-blocking, close-on-exec Unix stream socket to path
// and listens on it. It returns the descriptor.
func Listen(path string, access Access) (int, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return -1, fmt.Errorf("%s exists and is not a socket", path)
		}
		if live, err := answers(path); err != nil {
			return -1, err
		} else if live {
			return -1, fmt.Errorf("%s: another process is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return -1, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := bind(fd, path, access); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return -1, fmt.Errorf("listen on %s: %w", path, err)
	}
	return fd, nil
}

// answers reports whether a process accepts connections on the socket
// file path.
func answers(path string) (bool, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	switch err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); {
	case err == nil, errors.Is(err, unix.EAGAIN):
		return true, nil
	case errors.Is(err, unix.ECONNREFUSED):
		return false, nil
	default:
		return false, fmt.Errorf("probe %s: %w", path, err)
	}
}

// bind binds fd to path. For OwnerOnly the umask is 0077 meanwhile, so
// that no one else can connect between bind and a chmod (the umask is the
// process's; the VMM binds while building the VM, when nothing else
// creates files).
func bind(fd int, path string, access Access) error {
	if access == OwnerOnly {
		old := unix.Umask(0o077)
		defer unix.Umask(old)
	}
	return unix.Bind(fd, &unix.SockaddrUnix{Name: path})
}
