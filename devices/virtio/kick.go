package virtio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kick is how a queue notification reaches a device worker. The transport
// provides an EventFDKick registered as a KVM ioeventfd; tests use ChanKick.
type Kick interface {
	// Wait blocks until the queue was notified at least once since the
	// previous Wait returned (notifications coalesce) or the Kick is closed.
	// After Close it returns ErrClosed.
	Wait() error
	// Close wakes any Wait and makes all later Waits return ErrClosed. It is
	// safe to call more than once and concurrently with Wait.
	Close() error
}

// EventFDKick is a Kick backed by an eventfd, suitable for KVM_IOEVENTFD.
// The eventfd is non-blocking and lives in Go's netpoller: a waiting worker
// is a parked goroutine that holds no thread and no scheduler P. (A worker
// blocked in poll(2) would keep a P in a system call, and the runtime's
// monitor would wake every 20 µs to take it back while the vCPU threads sit
// in KVM_RUN; in the nested lane that cost as much CPU as a device.)
type EventFDKick struct {
	f  *os.File        // the notification eventfd
	rc syscall.RawConn // f's, made once (each SyscallConn call allocates)
	fd int             // its descriptor, for KVM; valid until Close
}

// NewEventFDKick creates the eventfd.
func NewEventFDKick() (*EventFDKick, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("virtio: eventfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "virtio kick")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("virtio: eventfd: %w", err)
	}
	return &EventFDKick{f: f, rc: rc, fd: fd}, nil
}

// FD returns the notification eventfd, for registering with KVM. It stays
// valid until Close.
func (k *EventFDKick) FD() int { return k.fd }

// Signal notifies the queue from user space (for transports that handle
// the notify register themselves, and for tests).
func (k *EventFDKick) Signal() error {
	one := [8]byte{1}
	if _, err := k.f.Write(one[:]); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("virtio: signal kick: %w", err)
	}
	return nil
}

// Wait implements Kick. Reading the eventfd returns and clears its counter,
// so notifications since the last Wait coalesce into one.
func (k *EventFDKick) Wait() error {
	var buf [8]byte
	for {
		n, err := k.f.Read(buf[:])
		switch {
		case errors.Is(err, os.ErrClosed):
			return ErrClosed
		case err != nil:
			return fmt.Errorf("virtio: read kick: %w", err)
		case n == len(buf):
			return nil
		}
	}
}

// SyscallConn returns the eventfd's raw connection, for a device that adds
// the descriptor to its own poll set (virtio-net's event loop); it then
// consumes notifications with Drain.
func (k *EventFDKick) SyscallConn() (syscall.RawConn, error) { return k.rc, nil }

// Drain consumes pending notifications without waiting, for a device whose
// own poll set said the eventfd is readable. It returns ErrClosed after
// Close.
func (k *EventFDKick) Drain() error {
	var rerr error
	if err := k.rc.Read(func(fd uintptr) bool {
		var buf [8]byte
		_, rerr = unix.Read(int(fd), buf[:])
		return true // never wait
	}); err != nil {
		return ErrClosed
	}
	if rerr != nil && !errors.Is(rerr, unix.EAGAIN) {
		return fmt.Errorf("virtio: drain kick: %w", rerr)
	}
	return nil
}

// Close implements Kick: it wakes waiters and closes the eventfd once no
// Wait or Signal is using it.
func (k *EventFDKick) Close() error {
	if err := k.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("virtio: close kick: %w", err)
	}
	return nil
}

// ChanKick is a channel-backed Kick for tests and in-process transports.
type ChanKick struct {
	ch   chan struct{} // capacity 1: pending notifications coalesce
	done chan struct{} // closed by Close
	once sync.Once
}

// NewChanKick returns an open ChanKick.
func NewChanKick() *ChanKick {
	return &ChanKick{ch: make(chan struct{}, 1), done: make(chan struct{})}
}

// Signal notifies the queue; it never blocks.
func (k *ChanKick) Signal() {
	select {
	case k.ch <- struct{}{}:
	default:
	}
}

// Wait implements Kick.
func (k *ChanKick) Wait() error {
	select {
	case <-k.done:
		return ErrClosed
	default:
	}
	select {
	case <-k.ch:
		return nil
	case <-k.done:
		return ErrClosed
	}
}

// Close implements Kick.
func (k *ChanKick) Close() error {
	k.once.Do(func() { close(k.done) })
	return nil
}
