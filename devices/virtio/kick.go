package virtio

import (
	"errors"
	"fmt"
	"sync"

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
// Wait sleeps in poll(2) on the notification eventfd and a private "stop"
// eventfd, so Close wakes a waiter without busy polling.
type EventFDKick struct {
	fd     int // notification eventfd, non-blocking; handed to KVM
	stopFD int // written by Close to wake Wait

	// mu protects closed and the waiters count; both fds stay open until
	// Close has seen every Wait return, so a waiter never polls a closed
	// (and possibly reused) descriptor.
	mu      sync.Mutex
	closed  bool
	waiters sync.WaitGroup
}

// NewEventFDKick creates the eventfds.
func NewEventFDKick() (*EventFDKick, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("virtio: eventfd: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio: stop eventfd: %w", err)
	}
	return &EventFDKick{fd: fd, stopFD: stop}, nil
}

// FD returns the notification eventfd, for registering with KVM. It stays
// valid until Close.
func (k *EventFDKick) FD() int { return k.fd }

// Signal notifies the queue from user space (for transports that handle
// the notify register themselves, and for tests).
func (k *EventFDKick) Signal() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	if err := writeEventFD(k.fd); err != nil {
		return fmt.Errorf("virtio: signal kick: %w", err)
	}
	return nil
}

// Wait implements Kick.
func (k *EventFDKick) Wait() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return ErrClosed
	}
	k.waiters.Add(1)
	k.mu.Unlock()
	defer k.waiters.Done()

	fds := []unix.PollFd{
		{Fd: int32(k.fd), Events: unix.POLLIN},
		{Fd: int32(k.stopFD), Events: unix.POLLIN},
	}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("virtio: poll kick: %w", err)
		}
		if fds[1].Revents != 0 {
			return ErrClosed
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
			return fmt.Errorf("virtio: poll kick: revents %#x", fds[0].Revents)
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		var buf [8]byte
		_, err := unix.Read(k.fd, buf[:])
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue // another reader drained it
		default:
			return fmt.Errorf("virtio: read kick: %w", err)
		}
	}
}

// Close implements Kick: it wakes waiters, waits for them to return and
// closes both eventfds.
func (k *EventFDKick) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()

	werr := writeEventFD(k.stopFD)
	k.waiters.Wait() // returns at once if nobody waits; a waiter wakes on stopFD
	err1 := unix.Close(k.fd)
	err2 := unix.Close(k.stopFD)
	if err := errors.Join(werr, err1, err2); err != nil {
		return fmt.Errorf("virtio: close kick: %w", err)
	}
	return nil
}

func writeEventFD(fd int) error {
	var one = [8]byte{1}
	for {
		_, err := unix.Write(fd, one[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return nil // counter saturated: a wake-up is already pending
		}
		return err
	}
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
