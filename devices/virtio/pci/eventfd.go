package pci

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// dupFD duplicates fd with close-on-exec.
func dupFD(fd int) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("virtio-pci: dup eventfd: %w", err)
	}
	return nfd, nil
}

func closeFD(fd int) error {
	return unix.Close(fd)
}

// signalFD adds one to an eventfd, as KVM does for an ioeventfd. A
// saturated counter already has a wake-up pending.
func signalFD(fd int) error {
	one := [8]byte{1}
	for {
		_, err := unix.Write(fd, one[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return nil
		}
		return err
	}
}
