package vsock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// maxCtrl bounds the control packets (answers, requests, credit updates)
// waiting for receive buffers. While it is full the loop takes nothing
// more from the transmit queue, so a guest that sends without reading
// stalls itself instead of growing the VMM's memory.
const maxCtrl = 256

// ephemeralBase is where the host end's ports for host-initiated
// connections start, out of the way of the ports guests usually listen on.
const ephemeralBase = 1 << 30

// ctrlPacket is a packet without payload waiting to go to the guest.
type ctrlPacket struct {
	key   connKey
	op    uint16
	flags uint32
}

// loop is one activation: a goroutine that serves the queues and every
// connection from one epoll set. It alone touches the connections and the
// queues; stop is the only entry from other goroutines.
type loop struct {
	d        *Device
	mem      *memory.Guest
	rx, tx   *queue.Queue
	kicks    []virtio.Kick
	irq      virtio.Interrupt
	guestCID uint64
	stats    *counters

	epfd   int
	poll   *os.File        // epfd in Go's netpoller
	pollC  syscall.RawConn // poll's
	wake   *os.File        // an eventfd in the set: kicks, timers and stop write it
	wakeFD int32           // its descriptor
	evs    [64]unix.EpollEvent

	// polledKicks are the kicks whose eventfds are in the set (the
	// transport's), by descriptor; other kicks (tests' channels) have a
	// goroutine that turns them into wake-ups.
	polledKicks map[int32]*virtio.EventFDKick

	conns    map[connKey]*conn
	byFD     map[int32]*conn // every open connection, by socket
	ready    []*conn         // connections whose sockets are readable
	rr       int             // where the next ready scan starts
	timed    map[*conn]struct{}
	timer    *time.Timer
	ctrl     []ctrlPacket
	spare    *queue.Chain // a receive chain taken but not used yet
	nextPort uint32
	txStall  bool // the transmit queue was left unprocessed because ctrl was full

	listenerPaused time.Time // when the resting listener goes back into the set (zero: it is in)

	hb   [hdrLen]byte // header scratch
	bufs [][]byte     // slice scratch

	stopping  atomic.Bool
	resetting atomic.Bool
	done      chan struct{}
	kickers   sync.WaitGroup
}

// newLoop builds the epoll set of an activation; start runs it.
func newLoop(d *Device, mem *memory.Guest, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) (l *loop, err error) {
	l = &loop{
		d: d, mem: mem, rx: queues[rxQueue], tx: queues[txQueue], kicks: kicks, irq: irq,
		guestCID: d.cfg.GuestCID, stats: &d.stats, epfd: -1,
		conns: map[connKey]*conn{}, byFD: map[int32]*conn{}, timed: map[*conn]struct{}{},
		polledKicks: map[int32]*virtio.EventFDKick{},
		nextPort:    ephemeralBase, done: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			l.closeSet()
		}
	}()
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(l.epfd, true); err != nil {
		return nil, fmt.Errorf("epoll: set non-blocking: %w", err)
	}
	l.poll = os.NewFile(uintptr(l.epfd), "virtio-vsock epoll")
	if l.pollC, err = l.poll.SyscallConn(); err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l.wake = os.NewFile(uintptr(wfd), "virtio-vsock wake")
	l.wakeFD = int32(wfd)
	fds := []int{wfd, d.listener}
	for _, q := range []int{rxQueue, txQueue} {
		if k, ok := kicks[q].(*virtio.EventFDKick); ok {
			fds = append(fds, k.FD())
			l.polledKicks[int32(k.FD())] = k
		}
	}
	for _, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll_ctl add %d: %w", fd, err)
		}
	}
	return l, nil
}

// closeSet closes the epoll set and the wake eventfd.
func (l *loop) closeSet() {
	if l.poll != nil {
		l.poll.Close()
	} else if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
	if l.wake != nil {
		l.wake.Close()
	}
}

// start runs the loop, and a goroutine that turns kicks into wake-ups for
// each notified queue whose kick is not an eventfd in the set (waking the
// loop directly saves a thread's wake-up per notification). The event
// queue's kicks are not waited for: the device never sends events.
func (l *loop) start() {
	for _, q := range []int{rxQueue, txQueue} {
		if _, polled := l.kicks[q].(*virtio.EventFDKick); polled {
			continue
		}
		l.kickers.Add(1)
		go func(k virtio.Kick) {
			defer l.kickers.Done()
			for k.Wait() == nil {
				l.poke()
			}
		}(l.kicks[q])
	}
	go l.run()
}

// poke wakes the loop. After the loop is gone it does nothing.
func (l *loop) poke() {
	one := [8]byte{1}
	l.wake.Write(one[:])
}

// stop ends the activation: the loop exits, then every connection and the
// epoll set are closed.
func (l *loop) stop() {
	l.resetting.Store(true)
	l.stopping.Store(true)
	virtio.CloseKicks(l.kicks)
	l.poke()
	<-l.done
	l.kickers.Wait()
	if l.timer != nil {
		l.timer.Stop()
	}
	for _, c := range l.byFD {
		unix.Close(c.fd)
	}
	l.closeSet()
}

func (l *loop) run() {
	err := l.serve()
	if err != nil {
		l.stopping.Store(true)
		virtio.CloseKicks(l.kicks)
		l.stats.failures.Add(1)
	}
	close(l.done)
	// Reported after done: the transport may call Reset from Failed.
	if err != nil && !l.resetting.Load() {
		virtio.ReportFailure(l.irq, fmt.Errorf("virtio-vsock: %w", err))
	}
}

// serve runs until stop or a broken ring: take what the guest sent, give
// it what the host sockets hold, then wait for a descriptor, a kick or a
// deadline.
func (l *loop) serve() error {
	for !l.stopping.Load() {
		if err := l.processTx(); err != nil {
			return err
		}
		l.expire(time.Now())
		if err := l.fillRx(); err != nil {
			return err
		}
		if l.txStall && len(l.ctrl) < maxCtrl {
			continue // the receive queue made room: take more from the guest
		}
		if err := l.wait(); err != nil {
			return err
		}
	}
	return nil
}

// wait parks until the epoll set is ready, then handles what it reports.
func (l *loop) wait() error {
	var n int
	var werr error
	if err := l.pollC.Read(func(ep uintptr) bool {
		n, werr = unix.EpollWait(int(ep), l.evs[:], 0)
		if errors.Is(werr, unix.EINTR) {
			n, werr = 0, nil
		}
		return werr != nil || n > 0
	}); err != nil {
		return fmt.Errorf("host: epoll wait: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("host: epoll_wait: %w", werr)
	}
	l.stats.wakeups.Add(1)
	for _, ev := range l.evs[:n] {
		switch ev.Fd {
		case int32(l.d.listener):
			l.accept()
		case l.wakeFD:
			var buf [8]byte
			l.wake.Read(buf[:])
		default:
			if k := l.polledKicks[ev.Fd]; k != nil {
				k.Drain() // the loop serves both queues on every pass
			} else if c := l.byFD[ev.Fd]; c != nil {
				l.socketEvent(c, ev.Events)
			}
		}
	}
	return nil
}

// watch brings c's epoll registration in line with what it needs.
func (l *loop) watch(c *conn) {
	if c.fd < 0 {
		return
	}
	want := c.interest()
	if c.inSet && want == c.watched {
		return
	}
	ev := unix.EpollEvent{Events: want, Fd: int32(c.fd)}
	var err error
	switch {
	case !c.inSet && want != 0:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev)
		c.inSet = err == nil
	case c.inSet && want == 0:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
		c.inSet = false
	case c.inSet:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	}
	if err == nil {
		c.watched = want
	}
}

// socketEvent handles readiness of c's socket.
func (l *loop) socketEvent(c *conn, events uint32) {
	if events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.state != stateEstablished {
		l.drop(c, true)
		return
	}
	if events&unix.EPOLLHUP != 0 {
		c.hostGone = true
	}
	switch c.state {
	case stateAwaitLine:
		l.readLine(c)
		return
	case stateEstablished:
		if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.canRead() {
			l.markReadable(c)
		}
		if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.unsent() > 0 {
			l.flushConn(c)
		}
	}
	l.watch(c)
}

func (l *loop) markReadable(c *conn) {
	c.readable = true
	if !c.inReady {
		c.inReady = true
		l.ready = append(l.ready, c)
	}
}

// accept takes every pending host connection on the listening socket.
func (l *loop) accept() {
	for {
		fd, _, err := unix.Accept4(l.d.listener, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ECONNABORTED) {
			if errors.Is(err, unix.EAGAIN) {
				return
			}
			continue // a connection that went away while queued
		}
		if err != nil {
			// Out of descriptors or memory: the listener would stay
			// readable and spin the loop, so it rests a while.
			l.pauseListener()
			return
		}
		if len(l.byFD) >= MaxConns {
			l.stats.refused.Add(1)
			unix.Close(fd)
			continue
		}
		c := &conn{fd: fd, state: stateAwaitLine, deadline: time.Now().Add(l.d.connectTimeout)}
		l.byFD[int32(fd)] = c
		l.timed[c] = struct{}{}
		l.watch(c)
	}
}

// listenerRest is how long the listening socket is left alone after an
// accept failed for want of descriptors or memory.
const listenerRest = 100 * time.Millisecond

// pauseListener takes the listening socket out of the set until
// listenerRest has passed (expire puts it back).
func (l *loop) pauseListener() {
	if !l.listenerPaused.IsZero() {
		return
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.d.listener, nil); err == nil {
		l.listenerPaused = time.Now().Add(listenerRest)
	}
}

// resumeListener puts the listening socket back into the set once its
// rest is over, and returns when that will be otherwise (zero: not
// paused).
func (l *loop) resumeListener(now time.Time) time.Time {
	if l.listenerPaused.IsZero() || now.Before(l.listenerPaused) {
		return l.listenerPaused
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.d.listener)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.d.listener, &ev); err != nil {
		l.listenerPaused = now.Add(listenerRest)
		return l.listenerPaused
	}
	l.listenerPaused = time.Time{}
	return time.Time{}
}

// readLine reads c's CONNECT line a byte at a time (so that no byte of the
// stream after it is taken) and sends the guest the request it names.
func (l *loop) readLine(c *conn) {
	var b [1]byte
	for {
		n, err := unix.Read(c.fd, b[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil || n == 0:
			l.drop(c, false)
			return
		}
		if b[0] != '\n' {
			if len(c.line) >= maxLine {
				l.refuseHost(c, "line too long")
				return
			}
			c.line = append(c.line, b[0])
			continue
		}
		port, err := parseConnect(string(c.line))
		if err != nil {
			l.refuseHost(c, err.Error())
			return
		}
		local, ok := l.freePort(port)
		if !ok {
			l.refuseHost(c, "no free host port")
			return
		}
		c.key = connKey{local: local, peer: port}
		c.line = nil
		c.state = stateRequested
		c.deadline = time.Now().Add(l.d.connectTimeout)
		l.conns[c.key] = c
		l.queueCtrl(ctrlPacket{key: c.key, op: opRequest})
		l.watch(c)
		return
	}
}

// refuseHost ends a host program's connection attempt that could not be
// served. It gets no answer line: its connection just closes.
func (l *loop) refuseHost(c *conn, why string) {
	_ = why // host programs learn of refusal by the close, as with Firecracker
	l.stats.refused.Add(1)
	l.drop(c, false)
}

// freePort picks a host port for a connection to the guest's port peer.
func (l *loop) freePort(peer uint32) (uint32, bool) {
	for range MaxConns + 1 {
		p := l.nextPort
		l.nextPort++
		if l.nextPort < ephemeralBase {
			l.nextPort = ephemeralBase
		}
		if _, used := l.conns[connKey{local: p, peer: peer}]; !used {
			return p, true
		}
	}
	return 0, false
}

// expire gives up on connections whose deadline has passed, and arms a
// timer for the next one.
func (l *loop) expire(now time.Time) {
	next := l.resumeListener(now)
	for c := range l.timed {
		if c.state == stateEstablished || c.fd < 0 {
			delete(l.timed, c)
			continue
		}
		if !now.Before(c.deadline) {
			l.stats.refused.Add(1)
			l.drop(c, c.state == stateRequested)
			continue
		}
		if next.IsZero() || c.deadline.Before(next) {
			next = c.deadline
		}
	}
	if next.IsZero() {
		return
	}
	d := next.Sub(now)
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.poke)
	} else {
		l.timer.Reset(d)
	}
}

// drop closes c's socket and forgets it; with reset the guest is told
// (RST) that the connection is gone.
func (l *loop) drop(c *conn, reset bool) {
	if c.fd < 0 {
		return
	}
	if c.inSet {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	}
	delete(l.byFD, int32(c.fd))
	unix.Close(c.fd)
	c.fd = -1
	delete(l.timed, c)
	if c.state != stateAwaitLine && l.conns[c.key] == c {
		delete(l.conns, c.key)
		if reset {
			l.stats.resets.Add(1)
			l.queueCtrl(ctrlPacket{key: c.key, op: opReset})
		}
	}
}

// queueCtrl queues a packet for the guest. Answers to the guest's own
// packets are only queued while there is room (processTx stops taking
// packets when there is none); packets the host side starts may exceed
// the bound by the number of connections.
func (l *loop) queueCtrl(p ctrlPacket) {
	l.ctrl = append(l.ctrl, p)
}

// flushConn writes c's pending bytes and acts on what follows from the
// socket taking them: credit for the guest, the write side's shutdown,
// the close the guest asked for.
func (l *loop) flushConn(c *conn) {
	n, err := c.flush()
	if err != nil {
		l.drop(c, true)
		return
	}
	l.afterForward(c, n)
}

// afterForward follows n bytes the socket took from the guest.
func (l *loop) afterForward(c *conn, n int) {
	if c.unsent() > 0 {
		if n > 0 {
			l.creditIfDue(c)
		}
		return
	}
	if c.closing {
		l.drop(c, true)
		return
	}
	if c.guestShut&shutSend != 0 && !c.wrShut {
		unix.Shutdown(c.fd, unix.SHUT_WR)
		c.wrShut = true
	}
	if n > 0 {
		l.creditIfDue(c)
	}
}

// creditIfDue queues a credit update when the guest's view of c's buffer
// lags by a quarter of it: a guest that used all its credit then learns of
// new room before the buffer is even half empty.
func (l *loop) creditIfDue(c *conn) {
	if c.fwdCnt-c.sentFwd >= connBuf/4 {
		l.queueCredit(c)
	}
}

func (l *loop) queueCredit(c *conn) {
	if !c.creditDue {
		c.creditDue = true
		l.queueCtrl(ctrlPacket{key: c.key, op: opCreditUpdate})
	}
}

// processTx handles every packet the guest transmitted, then interrupts
// it if it asks. A broken ring is the error.
func (l *loop) processTx() error {
	l.txStall = false
	if err := l.tx.DisableNotification(); err != nil {
		return err
	}
	for {
		if len(l.ctrl) >= maxCtrl {
			l.txStall = true
			break
		}
		c, err := l.tx.Pop()
		var ce *queue.ChainError
		switch {
		case errors.As(err, &ce):
			l.stats.badPackets.Add(1)
			err = l.tx.AddUsed(ce.Head, 0)
		case err != nil:
			return err
		case c == nil:
			more, err := l.tx.EnableNotification()
			if err != nil {
				return err
			}
			if more {
				continue
			}
			return l.publish(l.tx, txQueue)
		default:
			l.stats.txPackets.Add(1)
			l.handleTx(c)
			err = l.tx.AddUsed(c.Head, 0)
		}
		if err != nil {
			return err
		}
	}
	return l.publish(l.tx, txQueue)
}

// publish makes the used entries visible and interrupts the guest if it
// asks for it.
func (l *loop) publish(q *queue.Queue, index int) error {
	if err := q.PublishUsed(); err != nil {
		return err
	}
	need, err := q.NeedsNotification()
	if err != nil || !need {
		return err
	}
	if err := l.irq.Notify(index); err != nil {
		return fmt.Errorf("interrupt: %w", err)
	}
	return nil
}

// handleTx acts on one transmitted packet.
func (l *loop) handleTx(ch *queue.Chain) {
	readable := ch.ReadableLen()
	if readable < hdrLen || ch.WritableLen() != 0 {
		l.stats.badPackets.Add(1)
		return
	}
	if err := ch.ReadAt(l.mem, l.hb[:], 0); err != nil {
		l.stats.badPackets.Add(1)
		return
	}
	h := decodeHeader(l.hb[:])
	if err := checkTx(h, readable, l.guestCID); err != nil {
		l.stats.badPackets.Add(1)
		return
	}
	key := connKey{local: h.dstPort, peer: h.srcPort}
	c := l.conns[key]
	if h.typ != typeStream {
		l.resetUnknown(h, key)
		return
	}
	if h.op == opRequest {
		if c != nil {
			l.drop(c, true) // a request on a live connection: the guest lost track of it
			return
		}
		l.guestConnect(h, key)
		return
	}
	if c == nil {
		l.resetUnknown(h, key)
		return
	}
	c.updatePeer(h)
	switch h.op {
	case opResponse:
		if c.state != stateRequested {
			l.drop(c, true)
			return
		}
		l.established(c)
	case opRW:
		l.guestData(c, ch, h)
	case opCreditUpdate:
		// The new credit is recorded; fillRx uses it.
	case opCreditRequest:
		l.queueCredit(c)
	case opShutdown:
		l.guestShutdown(c, h.flags)
	case opReset:
		l.stats.resets.Add(1)
		l.drop(c, false)
	default:
		l.drop(c, true)
	}
	if c.fd >= 0 {
		l.watch(c)
	}
}

// resetUnknown answers a packet for no connection with a reset, unless it
// is one.
func (l *loop) resetUnknown(h header, key connKey) {
	if h.op != opReset {
		l.queueCtrl(ctrlPacket{key: key, op: opReset})
	}
}

// guestConnect connects the guest to the host socket PATH_port.
func (l *loop) guestConnect(h header, key connKey) {
	refuse := func() {
		l.stats.refused.Add(1)
		l.queueCtrl(ctrlPacket{key: key, op: opReset})
	}
	if len(l.byFD) >= MaxConns {
		refuse()
		return
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		refuse()
		return
	}
	path := l.d.cfg.Path + "_" + strconv.FormatUint(uint64(h.dstPort), 10)
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		refuse()
		return
	}
	c := &conn{fd: fd, key: key, state: stateEstablished}
	c.updatePeer(h)
	l.byFD[int32(fd)] = c
	l.conns[key] = c
	l.stats.guestConnects.Add(1)
	l.queueCtrl(ctrlPacket{key: key, op: opResponse})
	l.watch(c)
}

// established completes a host program's connection: the guest accepted.
func (l *loop) established(c *conn) {
	c.state = stateEstablished
	delete(l.timed, c)
	ok := []byte("OK " + strconv.FormatUint(uint64(c.key.local), 10) + "\n")
	// The socket is new and empty: its buffer takes a short line whole.
	if n, err := writev(c.fd, [][]byte{ok}); err != nil || n != len(ok) {
		l.drop(c, true)
		return
	}
	l.stats.hostConnects.Add(1)
}

// guestData forwards the payload of an RW packet to the socket.
func (l *loop) guestData(c *conn, ch *queue.Chain, h header) {
	if c.state != stateEstablished || c.guestShut&shutSend != 0 {
		l.drop(c, true)
		return
	}
	if uint64(c.unsent())+uint64(h.len) > connBuf {
		l.stats.overruns.Add(1)
		l.drop(c, true)
		return
	}
	if h.len == 0 {
		return
	}
	s, err := ch.ReadableSlices(l.mem, hdrLen, uint64(h.len), l.bufs[:0])
	l.bufs = s
	if err != nil {
		l.stats.badPackets.Add(1)
		l.drop(c, true)
		return
	}
	l.stats.txBytes.Add(uint64(h.len))
	n, err := c.queueGuestBytes(s)
	clear(l.bufs) // no guest memory stays referenced
	if err != nil {
		l.drop(c, true)
		return
	}
	l.afterForward(c, n)
}

// guestShutdown records the guest's shutdown of c in the directions flags
// names. Once it shut both, the connection closes (after the socket took
// what the guest sent) and the guest gets the reset it waits for.
func (l *loop) guestShutdown(c *conn, flags uint32) {
	c.guestShut |= flags & (shutRcv | shutSend)
	if c.guestShut == shutRcv|shutSend {
		c.closing = true
	}
	l.afterForward(c, 0)
}

// fillRx gives the guest queued control packets, then what the readable
// sockets hold, while it has receive buffers, and interrupts it if it
// asks. A broken ring is the error.
func (l *loop) fillRx() error {
	pushed := false
	for {
		haveWork := len(l.ctrl) > 0 || l.nextReady() != nil
		if !haveWork {
			break
		}
		ch, err := l.rxChain()
		if err != nil {
			return err
		}
		if ch == nil {
			break
		}
		n, used := l.fillOne(ch)
		if !used {
			l.spare = ch
			continue
		}
		if err := l.rx.AddUsed(ch.Head, n); err != nil {
			return err
		}
		l.stats.rxPackets.Add(1)
		pushed = true
	}
	if !pushed {
		return nil
	}
	return l.publish(l.rx, rxQueue)
}

// rxChain returns a receive chain: the spare one, or the next available.
// nil means none is available; notifications are then on, so the guest's
// next buffer wakes the loop.
func (l *loop) rxChain() (*queue.Chain, error) {
	if c := l.spare; c != nil {
		l.spare = nil
		return c, nil
	}
	for {
		c, err := l.rx.Pop()
		var ce *queue.ChainError
		switch {
		case errors.As(err, &ce):
			l.stats.badPackets.Add(1)
			if err := l.rx.AddUsed(ce.Head, 0); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, err
		case c != nil:
			if c.ReadableLen() != 0 || c.WritableLen() < hdrLen {
				// Not a receive buffer: give it back empty.
				l.stats.badPackets.Add(1)
				if err := l.rx.AddUsed(c.Head, 0); err != nil {
					return nil, err
				}
				continue
			}
			return c, nil
		}
		more, err := l.rx.EnableNotification()
		if err != nil || !more {
			return nil, err
		}
	}
}

// nextReady returns a connection whose socket can be read for the guest
// now, dropping finished ones from the ready list.
func (l *loop) nextReady() *conn {
	for i := 0; i < len(l.ready); i++ {
		j := (l.rr + i) % len(l.ready)
		c := l.ready[j]
		if c.fd < 0 || !c.readable || !c.canRead() {
			c.inReady = false
			l.ready = append(l.ready[:j], l.ready[j+1:]...)
			if j < l.rr {
				l.rr--
			}
			i--
			if len(l.ready) == 0 {
				l.rr = 0
				return nil
			}
			continue
		}
		if c.credit() > 0 {
			l.rr = j
			return c
		}
	}
	return nil
}

// fillOne fills ch with one packet: a control packet, or payload read from
// a ready socket. used is false when there was nothing to put in it after
// all (the socket had nothing yet).
func (l *loop) fillOne(ch *queue.Chain) (n uint32, used bool) {
	if len(l.ctrl) > 0 {
		p := l.ctrl[0]
		l.ctrl = l.ctrl[1:]
		if len(l.ctrl) == 0 {
			l.ctrl = nil
		}
		return l.writeCtrl(ch, p)
	}
	c := l.nextReady()
	if c == nil {
		return 0, false
	}
	l.rr++ // round robin: the next packet comes from the next connection
	room := min(ch.WritableLen()-hdrLen, uint64(c.credit()), MaxPayload)
	if room == 0 {
		// A buffer with room for a header only: no data fits (and a read
		// of nothing would look like end of file). Give it back empty.
		l.stats.badPackets.Add(1)
		return 0, true
	}
	s, err := ch.WritableSlices(l.mem, hdrLen, room, l.bufs[:0])
	l.bufs = s
	if err != nil {
		// The guest's buffer is not in its RAM: give it back empty.
		l.stats.badPackets.Add(1)
		return 0, true
	}
	got, err := readv(c.fd, s)
	clear(l.bufs)
	switch {
	case errors.Is(err, unix.EAGAIN):
		c.readable = false
		l.watch(c)
		return 0, false
	case err != nil:
		l.drop(c, true)
		return 0, false
	case got == 0:
		// End of file: the host program sends no more, or is gone.
		c.hostEOF, c.readable = true, false
		flags := uint32(shutSend)
		if c.hostGone {
			flags |= shutRcv
		}
		l.watch(c)
		return l.writeHeader(ch, l.header(c, opShutdown, flags, 0)), true
	}
	c.txCnt += uint32(got)
	l.stats.rxBytes.Add(uint64(got))
	return l.writeHeader(ch, l.header(c, opRW, 0, uint32(got))) + uint32(got), true
}

// readv reads a non-blocking socket into p.
func readv(fd int, p [][]byte) (int, error) {
	for {
		n, err := unix.Readv(fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

// header is a packet from the host end of c to the guest; it carries c's
// current credit for the guest.
func (l *loop) header(c *conn, op uint16, flags, n uint32) header {
	c.sentFwd = c.fwdCnt
	return header{
		srcCID: HostCID, dstCID: l.guestCID, srcPort: c.key.local, dstPort: c.key.peer,
		len: n, typ: typeStream, op: op, flags: flags, bufAlloc: connBuf, fwdCnt: c.fwdCnt,
	}
}

// writeCtrl writes control packet p into ch. A packet for a connection
// that is gone since it was queued is skipped (used is false), unless it
// is a reset: the close that ended the connection queued the reset it
// needed.
func (l *loop) writeCtrl(ch *queue.Chain, p ctrlPacket) (n uint32, used bool) {
	if c := l.conns[p.key]; c != nil && c.fd >= 0 && p.op != opReset {
		if p.op == opCreditUpdate {
			c.creditDue = false
		}
		return l.writeHeader(ch, l.header(c, p.op, p.flags, 0)), true
	}
	if p.op != opReset {
		return 0, false
	}
	return l.writeHeader(ch, header{
		srcCID: HostCID, dstCID: l.guestCID, srcPort: p.key.local, dstPort: p.key.peer,
		typ: typeStream, op: opReset,
	}), true
}

// writeHeader writes h at the start of ch and returns its length.
func (l *loop) writeHeader(ch *queue.Chain, h header) uint32 {
	h.encode(l.hb[:])
	if err := ch.WriteAt(l.mem, l.hb[:], 0); err != nil {
		l.stats.badPackets.Add(1)
		return 0
	}
	return hdrLen
}
