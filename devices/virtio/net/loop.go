package net

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/network"
)

// The event loop. With a Pollable backend (TAP) and eventfd kicks, one
// goroutine serves both queues, as a VMM main loop does: it waits on one
// epoll set holding the TAP and both kick eventfds (the epoll descriptor
// itself sits in Go's netpoller, so waiting holds no thread), drains the
// transmit queue, then reads and delivers every frame the TAP holds, then
// waits again. A frame the host stack queues on the TAP while handling a
// frame the guest just sent (a TCP ACK, the next data segment) is picked up
// by the same goroutine without any wake-up; with one worker per queue
// every such frame cost a netpoller wake-up of the other worker, and the
// extra runnable threads preempted the vCPUs (measured in the nested lane).
// Other backends and kicks use one worker per queue (serveRx, serveTx).

// Tokens of the epoll set: bit i of a wait result is token i.
const (
	tokTAP = iota
	tokRxKick
	tokTxKick
)

// errLoopWoken ends a wait when the activation stops.
var errLoopWoken = errors.New("virtio-net: event loop woken")

// waitSet is the loop's epoll instance.
type waitSet struct {
	f     *os.File        // the epoll descriptor, non-blocking, in the netpoller
	rc    syscall.RawConn // f's
	tap   syscall.RawConn // the backend's descriptor
	tapOn bool            // the TAP is in the set
	evs   [4]unix.EpollEvent
}

// newWaitSet builds the epoll set: the TAP and both kicks, level-triggered.
func newWaitSet(tap syscall.RawConn, rx, tx *virtio.EventFDKick) (w *waitSet, err error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll: set non-blocking: %w", err)
	}
	w = &waitSet{f: os.NewFile(uintptr(epfd), "virtio-net epoll"), tap: tap}
	defer func() {
		if err != nil {
			w.f.Close()
		}
	}()
	if w.rc, err = w.f.SyscallConn(); err != nil {
		return nil, err
	}
	rxrc, err := rx.SyscallConn()
	if err != nil {
		return nil, err
	}
	txrc, err := tx.SyscallConn()
	if err != nil {
		return nil, err
	}
	for _, k := range []struct {
		rc  syscall.RawConn
		tok int32
	}{{tap, tokTAP}, {rxrc, tokRxKick}, {txrc, tokTxKick}} {
		if err := w.ctl(unix.EPOLL_CTL_ADD, k.rc, k.tok); err != nil {
			return nil, err
		}
	}
	w.tapOn = true
	return w, nil
}

// ctl adds (EPOLL_CTL_ADD, for EPOLLIN) or removes (EPOLL_CTL_DEL) the
// descriptor of rc, under both descriptors' RawConn guards.
func (w *waitSet) ctl(op int, rc syscall.RawConn, tok int32) error {
	var cerr error
	err := w.rc.Control(func(ep uintptr) {
		if err := rc.Control(func(fd uintptr) {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tok}
			cerr = unix.EpollCtl(int(ep), op, int(fd), &ev)
		}); err != nil {
			cerr = err
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl %d token %d: %w", op, tok, err)
	}
	return nil
}

// watchTAP adds the TAP to the set or takes it out (while the guest has
// no receive buffers, its readability is of no use and would keep the
// level-triggered set ready).
func (w *waitSet) watchTAP(on bool) error {
	if w.tapOn == on {
		return nil
	}
	op := unix.EPOLL_CTL_DEL
	if on {
		op = unix.EPOLL_CTL_ADD
	}
	if err := w.ctl(op, w.tap, tokTAP); err != nil {
		return err
	}
	w.tapOn = on
	return nil
}

// wait blocks until a descriptor of the set is ready and returns a bit
// per ready token; errLoopWoken after wake.
func (w *waitSet) wait() (uint32, error) {
	var ready uint32
	var werr error
	err := w.rc.Read(func(ep uintptr) bool {
		n, err := unix.EpollWait(int(ep), w.evs[:], 0)
		switch {
		case errors.Is(err, unix.EINTR):
			return false
		case err != nil:
			werr = err
			return true
		}
		for _, ev := range w.evs[:n] {
			if ev.Fd >= 0 && ev.Fd < 32 {
				ready |= 1 << uint(ev.Fd)
			}
		}
		return n > 0
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
		return 0, errLoopWoken
	case err != nil:
		return 0, fmt.Errorf("epoll wait: %w", err)
	case werr != nil:
		return 0, fmt.Errorf("epoll_wait: %w", werr)
	}
	return ready, nil
}

// wake makes the current or next wait return errLoopWoken (for stop).
func (w *waitSet) wake() {
	_ = w.f.SetReadDeadline(time.Unix(1, 0)) // fails only once closed: wait then reports errLoopWoken too
}

func (w *waitSet) close() error { return w.f.Close() }

// newLoop returns the wait set for the event loop, or nil when the backend
// or the kicks have no descriptors (or epoll fails): then one worker per
// queue serves the device.
func (d *Device) newLoop(kicks []virtio.Kick) (*waitSet, *virtio.EventFDKick, *virtio.EventFDKick) {
	p, ok := d.backend.(network.Pollable)
	if !ok || len(kicks) != 2 {
		return nil, nil, nil
	}
	rx, ok1 := kicks[RxQueue].(*virtio.EventFDKick)
	tx, ok2 := kicks[TxQueue].(*virtio.EventFDKick)
	if !ok1 || !ok2 {
		return nil, nil, nil
	}
	tap, err := p.SyscallConn()
	if err != nil {
		return nil, nil, nil
	}
	w, err := newWaitSet(tap, rx, tx)
	if err != nil {
		return nil, nil, nil
	}
	return w, rx, tx
}

// serveLoop serves both queues until the activation stops. Its error means
// a ring is broken or the backend failed.
func (d *Device) serveLoop(r *activation, w *waitSet, rxk, txk *virtio.EventFDKick) error {
	defer w.close()
	rxq, txq := r.queues[RxQueue], r.queues[TxQueue]
	// Kicks on the receive queue matter only when it runs out of buffers.
	if err := rxq.DisableNotification(); err != nil {
		return err
	}
	var st txState
	// Out of receive buffers in the middle of a frame: wait for the
	// guest's receive kick, still serving the transmit queue.
	r.waitRx = func() error {
		if err := w.watchTAP(false); err != nil {
			return err
		}
		for {
			ready, err := w.wait()
			if err != nil {
				return err
			}
			if ready&(1<<tokTxKick) != 0 {
				if err := txk.Drain(); err != nil {
					return err
				}
				if err := d.drainTx(r, txq, &st); err != nil {
					return err
				}
			}
			if r.stopped() {
				return errStopped
			}
			if ready&(1<<tokRxKick) != 0 {
				if err := rxk.Drain(); err != nil {
					return err
				}
				return w.watchTAP(true)
			}
		}
	}
	buf := d.staging
	var uses []rxUse
	txDue := true // frames may have been posted before the first kick
	delivered := 0
	for {
		if r.stopped() {
			return nil
		}
		if txDue {
			txDue = false
			if err := d.drainTx(r, txq, &st); err != nil {
				return err
			}
			continue // the host may have answered: look at the TAP
		}
		n, err := d.backend.TryReadFrame(buf)
		switch {
		case errors.Is(err, network.ErrWoken):
			continue // a stale wake-up from an earlier Reset
		case errors.Is(err, network.ErrClosed):
			r.stop() // the VM is going away
			return nil
		case err != nil:
			d.readErr.Store(&err)
			return fmt.Errorf("backend read: %w", err)
		case n > 0:
			uses, err = d.receive(r, rxq, buf[:n], uses, &delivered)
			switch {
			case errors.Is(err, errStopped):
				return nil
			case err != nil:
				return err
			}
			txDue = true // never let a long receive burst starve transmit
			continue
		}
		// Nothing to do: let the guest see what it has received, then
		// sleep until the TAP or a kick wakes us.
		if err := notify(r, RxQueue); err != nil {
			return err
		}
		ready, err := w.wait()
		switch {
		case err != nil && r.stopped():
			return nil
		case err != nil:
			return err
		}
		if ready&(1<<tokTxKick) != 0 {
			if err := txk.Drain(); err != nil {
				if r.stopped() {
					return nil
				}
				return fmt.Errorf("transmit kick: %w", err)
			}
			txDue = true
		}
		if ready&(1<<tokRxKick) != 0 {
			if err := rxk.Drain(); err != nil {
				if r.stopped() {
					return nil
				}
				return fmt.Errorf("receive kick: %w", err)
			}
		}
	}
}
