package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/network"
)

// The event loop. With a Pollable backend (TAP) and eventfd kicks, one
// goroutine serves both queues, as a VMM main loop does: it waits on one
// epoll set holding the TAP and both kick eventfds, drains the transmit
// queue, then reads and delivers every frame the TAP holds, then waits
// again. A frame the host stack queues on the TAP while handling a frame
// the guest just sent (a TCP ACK, the next data segment) is picked up by
// the same goroutine without any wake-up; with one worker per queue every
// such frame cost a netpoller wake-up of the other worker, and the extra
// runnable threads preempted the vCPUs (measured in the nested lane).
//
// With Config.OwnThread the loop owns an OS thread (runtime.LockOSThread)
// and blocks in epoll_wait on it, as QEMU's main loop or an I/O thread does:
// a ready descriptor then wakes exactly this thread, where the netpoller
// woke one thread to find the goroutine and often another to run it. With
// a TAP that gained about 9 % TCP throughput in each direction in the
// nested lane; with the user-mode network's socket (its peer process is
// busy on the same CPUs) it lost about 30 %, so there the epoll descriptor
// waits in Go's netpoller (docs/benchmarks.md).
// Other backends and kicks use one worker per queue (serveRx, serveTx).

// Tokens of the epoll set: bit i of a wait result is token i.
const (
	tokTAP = iota
	tokRxKick
	tokTxKick
	tokWake
)

// errLoopWoken ends a wait when the activation stops.
var errLoopWoken = errors.New("virtio-net: event loop woken")

// waitSet is the loop's epoll instance. Only the loop's goroutine waits on
// it, changes it and closes it; wake may come from any goroutine, before or
// after close.
type waitSet struct {
	epfd  int             // the epoll descriptor
	poll  *os.File        // epfd in Go's netpoller (owning it), or nil: blocking epoll_wait
	pollC syscall.RawConn // poll's, made once (each SyscallConn call allocates)
	wakeF *os.File        // an eventfd in the set; written once to stop the loop
	tap   syscall.RawConn // the backend's descriptor
	tapOn bool            // the TAP is in the set
	evs   [4]unix.EpollEvent

	lastYield time.Time // blocking waits: when the loop last passed through the scheduler (yieldIfDue)
}

// yieldEvery bounds how long a blocking loop goes without passing through
// the Go scheduler (see yieldIfDue). It must stay well under the runtime's
// 10 ms preemption slice (forcePreemptNS in runtime/proc.go, Go 1.26).
const yieldEvery = 5 * time.Millisecond

// newWaitSet builds the epoll set: the TAP, both kicks and the wake-up
// eventfd, level-triggered. With blocking, wait blocks the calling thread in
// epoll_wait; without, it parks the goroutine in Go's netpoller.
func newWaitSet(tap syscall.RawConn, rx, tx *virtio.EventFDKick, blocking bool) (w *waitSet, err error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	w = &waitSet{epfd: epfd, tap: tap}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if !blocking {
		if err := unix.SetNonblock(epfd, true); err != nil {
			return nil, fmt.Errorf("epoll: set non-blocking: %w", err)
		}
		w.poll = os.NewFile(uintptr(epfd), "virtio-net epoll")
		if w.pollC, err = w.poll.SyscallConn(); err != nil {
			return nil, err
		}
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// An os.File, so that a wake after close fails cleanly instead of
	// writing to a descriptor number that may have been reused.
	w.wakeF = os.NewFile(uintptr(wfd), "virtio-net loop wake")
	wakeRC, err := w.wakeF.SyscallConn()
	if err != nil {
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
	}{{tap, tokTAP}, {rxrc, tokRxKick}, {txrc, tokTxKick}, {wakeRC, tokWake}} {
		if err := w.ctl(unix.EPOLL_CTL_ADD, k.rc, k.tok); err != nil {
			return nil, err
		}
	}
	w.tapOn = true
	return w, nil
}

// ctl adds (EPOLL_CTL_ADD, for EPOLLIN) or removes (EPOLL_CTL_DEL) the
// descriptor of rc, under rc's guard (it stays open meanwhile).
func (w *waitSet) ctl(op int, rc syscall.RawConn, tok int32) error {
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tok}
		cerr = unix.EpollCtl(w.epfd, op, int(fd), &ev)
	}); err != nil {
		cerr = err
	}
	if cerr != nil {
		return fmt.Errorf("epoll_ctl %d token %d: %w", op, tok, cerr)
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

// wait waits until a descriptor of the set is ready and returns a bit per
// ready token; errLoopWoken once wake was called (the wake-up eventfd is
// never drained, so every later wait returns it too).
func (w *waitSet) wait() (uint32, error) {
	for {
		n, err := w.epollWait()
		if err != nil {
			return 0, err
		}
		var ready uint32
		for _, ev := range w.evs[:n] {
			if ev.Fd >= 0 && ev.Fd < 32 {
				ready |= 1 << uint(ev.Fd)
			}
		}
		if ready&(1<<tokWake) != 0 {
			return 0, errLoopWoken
		}
		if ready != 0 {
			return ready, nil
		}
	}
}

// epollWait fills w.evs: blocking in epoll_wait, or parked in the
// netpoller until the epoll descriptor is readable.
func (w *waitSet) epollWait() (int, error) {
	if w.poll == nil {
		w.yieldIfDue()
		for {
			n, err := unix.EpollWait(w.epfd, w.evs[:], -1)
			if errors.Is(err, unix.EINTR) {
				continue // a signal (the Go runtime's preemption)
			}
			if err != nil {
				return 0, fmt.Errorf("epoll_wait: %w", err)
			}
			return n, nil
		}
	}
	var n int
	var werr error
	err := w.pollC.Read(func(ep uintptr) bool {
		n, werr = unix.EpollWait(int(ep), w.evs[:], 0)
		if errors.Is(werr, unix.EINTR) {
			n, werr = 0, nil
		}
		return werr != nil || n > 0
	})
	switch {
	case err != nil:
		return 0, fmt.Errorf("epoll wait: %w", err)
	case werr != nil:
		return 0, fmt.Errorf("epoll_wait: %w", werr)
	}
	return n, nil
}

// yieldIfDue lets a loop that blocks in epoll_wait pass through the Go
// scheduler (runtime.Gosched) if it has not done so for yieldEvery; the
// loop calls it before every wait and every round of work.
//
// Such a goroutine otherwise never passes through the scheduler, and the
// runtime's sysmon thread takes that for one goroutine running for ever:
// whenever it next found the loop in a system call (epoll_wait, a TAP read
// or write, an interrupt eventfd write) it took the loop's P away, and every
// such retake resets sysmon's sleep to 20 µs. During a TCP transfer that was
// a few thousand sysmon wake-ups a second, each a context switch and a timer
// interrupt on the host; with a yield every few milliseconds sysmon keeps
// nearly to its 10 ms pace (docs/benchmarks.md, session 6). With a netpoller
// wait the goroutine parks on every wait and needs none of this.
func (w *waitSet) yieldIfDue() {
	if w.poll != nil {
		return
	}
	if now := time.Now(); now.Sub(w.lastYield) >= yieldEvery {
		runtime.Gosched()
		w.lastYield = now
	}
}

// wake makes the current or next wait return errLoopWoken (for stop). It
// may be called from any goroutine, any number of times, also after close
// (then it does nothing).
func (w *waitSet) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	// Fails only once closed: then there is no wait left to end.
	_, _ = w.wakeF.Write(one[:])
}

// close releases the set. Only the loop's goroutine calls it, after its
// last wait.
func (w *waitSet) close() {
	if w.wakeF != nil {
		w.wakeF.Close()
	}
	if w.poll != nil {
		w.poll.Close()
	} else {
		unix.Close(w.epfd)
	}
}

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
	w, err := newWaitSet(tap, rx, tx, d.ownThread)
	if err != nil {
		return nil, nil, nil
	}
	return w, rx, tx
}

// serveLoop serves both queues until the activation stops. Its error means
// a ring is broken or the backend failed.
func (d *Device) serveLoop(r *activation, w *waitSet, rxk, txk *virtio.EventFDKick) error {
	defer w.close()
	if w.poll == nil {
		runtime.LockOSThread() // blocking waits: see the comment at the top
		defer runtime.UnlockOSThread()
	}
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
		w.yieldIfDue()
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
