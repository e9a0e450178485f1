// Package api serves the VMM's control socket (vmm run --api-socket): a
// Unix stream socket on which a host program sends one JSON request per
// line and reads one JSON response per line, for as many requests as it
// likes:
//
//	{"op":"status"}              -> {"ok":true,"state":"running","balloon":{...,"guest":{...}},"metrics":{...}}
//	{"op":"pause"}               -> {"ok":true,"state":"paused"}  (every vCPU parked)
//	{"op":"resume"}              -> {"ok":true,"state":"running"}
//	{"op":"balloon","mib":256}   -> {"ok":true,"balloon":{"target_mib":256,"actual_mib":0}}
//	{"op":"stop"}                -> {"ok":true,"state":"stopping"}  (as Ctrl-A x: exit status 0)
//
// A request that fails gets {"ok":false,"error":"..."}. It is not HTTP:
// Go's net/http would more than double the VMM's own resident memory,
// whose budget is 5 MiB, and a line of JSON is what socat, nc -U or a few
// lines of any language can speak. The server uses raw descriptors in Go's
// netpoller, so it links no network package either, and a confined VMM
// needs nothing beyond accept4 on the socket it already listens on.
package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/hostsock"
)

// Controller is what the requests act on (the machine).
type Controller interface {
	Pause() error
	Resume() error
	Paused() bool
	// Stop ends the VM as an orderly stop by the user would.
	Stop()
	// SetBalloon sets the balloon's target in MiB.
	SetBalloon(mib uint64) error
	// Balloon returns the balloon's state (nil without a balloon).
	Balloon() any
	// Metrics returns the VM's counters and timings so far.
	Metrics() any
}

const (
	// MaxLine bounds a request line.
	MaxLine = 4096
	// MaxClients bounds the connections served at once; more are closed.
	MaxClients = 16
)

// Server is a listening control socket.
type Server struct {
	ln   *os.File
	lnRC syscall.RawConn

	mu      sync.Mutex
	clients map[*os.File]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Listen creates the control socket at path (a stale one is replaced),
// owner-only (mode 0700: connecting takes write permission). Call it
// before the VMM confines itself; Serve then needs only accept4.
func Listen(path string) (*Server, error) {
	fd, err := hostsock.Listen(path, hostsock.OwnerOnly)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	ln := os.NewFile(uintptr(fd), "api "+path) // non-blocking: in the netpoller
	rc, err := ln.SyscallConn()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	return &Server{ln: ln, lnRC: rc, clients: map[*os.File]struct{}{}}, nil
}

// Serve accepts connections and answers their requests until Close, each
// connection on its own goroutine. It returns at once.
func (s *Server) Serve(ctl Controller) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.accept()
			if err != nil {
				return // closed
			}
			if !s.track(c) {
				c.Close()
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				serveConn(c, ctl)
			}()
		}
	}()
}

// accept waits for the next connection. A connection gone while queued is
// skipped; out of descriptors, the listener rests a moment (it stays
// readable, so retrying at once would spin).
func (s *Server) accept() (*os.File, error) {
	for {
		var nfd int
		var aerr error
		err := s.lnRC.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return !errors.Is(aerr, unix.EAGAIN) && !errors.Is(aerr, unix.EINTR)
		})
		switch {
		case err != nil:
			return nil, err
		case errors.Is(aerr, unix.ECONNABORTED):
			continue
		case errors.Is(aerr, unix.EMFILE), errors.Is(aerr, unix.ENFILE):
			time.Sleep(acceptRest)
			continue
		case aerr != nil:
			return nil, aerr
		}
		return os.NewFile(uintptr(nfd), "api client"), nil
	}
}

// acceptRest is how long the listener is left alone when the process is
// out of descriptors.
const acceptRest = 100 * time.Millisecond

func (s *Server) track(c *os.File) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.clients) >= MaxClients {
		return false
	}
	s.clients[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, c)
	c.Close()
}

// Close stops accepting, ends every connection and waits for their
// goroutines. The socket file stays (a confined VMM may not remove files);
// the next Listen on the path replaces it.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.clients {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// request is one line from a client.
type request struct {
	Op  string  `json:"op"`
	MiB *uint64 `json:"mib,omitempty"`
}

// response is one line to a client.
type response struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	State   string `json:"state,omitempty"`
	Balloon any    `json:"balloon,omitempty"`
	Metrics any    `json:"metrics,omitempty"`
}

// serveConn answers c's requests until it closes or sends a line that is
// too long.
func serveConn(c *os.File, ctl Controller) {
	r := bufio.NewReaderSize(c, MaxLine)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			writeResponse(c, response{Error: fmt.Sprintf("request longer than %d bytes", MaxLine)})
			return
		}
		if err != nil {
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !writeResponse(c, handle(line, ctl)) {
			return
		}
	}
}

func writeResponse(c *os.File, resp response) bool {
	b, err := json.Marshal(resp)
	if err != nil {
		b = []byte(`{"ok":false,"error":"internal: cannot encode the response"}`)
	}
	_, err = c.Write(append(b, '\n'))
	return err == nil
}

// handle parses and carries out one request.
func handle(line []byte, ctl Controller) response {
	var req request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return response{Error: fmt.Sprintf("bad request: %v", err)}
	}
	fail := func(err error) response { return response{Error: err.Error()} }
	switch req.Op {
	case "status":
		return response{OK: true, State: state(ctl), Balloon: ctl.Balloon(), Metrics: ctl.Metrics()}
	case "pause":
		if err := ctl.Pause(); err != nil {
			return fail(err)
		}
		return response{OK: true, State: state(ctl)}
	case "resume":
		if err := ctl.Resume(); err != nil {
			return fail(err)
		}
		return response{OK: true, State: state(ctl)}
	case "stop":
		ctl.Stop()
		return response{OK: true, State: "stopping"}
	case "balloon":
		if req.MiB == nil {
			return response{Error: `balloon needs "mib"`}
		}
		if err := ctl.SetBalloon(*req.MiB); err != nil {
			return fail(err)
		}
		return response{OK: true, Balloon: ctl.Balloon()}
	case "":
		return response{Error: `no "op"`}
	}
	return response{Error: fmt.Sprintf("unknown op %q (want status, pause, resume, balloon, stop)", req.Op)}
}

func state(ctl Controller) string {
	if ctl.Paused() {
		return "paused"
	}
	return "running"
}
