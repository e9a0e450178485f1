package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVM is a Controller that records what it was asked.
type fakeVM struct {
	mu      sync.Mutex
	paused  bool
	stopped bool
	balloon uint64
}

func (f *fakeVM) Pause() error  { f.mu.Lock(); defer f.mu.Unlock(); f.paused = true; return nil }
func (f *fakeVM) Resume() error { f.mu.Lock(); defer f.mu.Unlock(); f.paused = false; return nil }
func (f *fakeVM) Paused() bool  { f.mu.Lock(); defer f.mu.Unlock(); return f.paused }
func (f *fakeVM) Stop()         { f.mu.Lock(); defer f.mu.Unlock(); f.stopped = true }
func (f *fakeVM) SetBalloon(mib uint64) error {
	if mib > 1024 {
		return errors.New("too big")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.balloon = mib
	return nil
}
func (f *fakeVM) Balloon() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]uint64{"target_mib": f.balloon}
}
func (f *fakeVM) Metrics() any { return map[string]int{"exits_total": 42} }

func serve(t *testing.T) (string, *fakeVM, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	vm := &fakeVM{}
	s.Serve(vm)
	t.Cleanup(func() { s.Close() })
	return path, vm, s
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, path string) *client {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// do sends one line and decodes the answer.
func (c *client) do(line string) map[string]any {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(resp), &m); err != nil {
		c.t.Fatalf("%s: response %q: %v", line, resp, err)
	}
	return m
}

func TestRequests(t *testing.T) {
	path, vm, _ := serve(t)
	c := dial(t, path)
	if m := c.do(`{"op":"status"}`); m["ok"] != true || m["state"] != "running" || m["metrics"].(map[string]any)["exits_total"] != 42.0 {
		t.Fatalf("status: %v", m)
	}
	if m := c.do(`{"op":"pause"}`); m["ok"] != true || m["state"] != "paused" || !vm.Paused() {
		t.Fatalf("pause: %v", m)
	}
	if m := c.do(`{"op":"resume"}`); m["ok"] != true || m["state"] != "running" || vm.Paused() {
		t.Fatalf("resume: %v", m)
	}
	if m := c.do(`{"op":"balloon","mib":256}`); m["ok"] != true || m["balloon"].(map[string]any)["target_mib"] != 256.0 {
		t.Fatalf("balloon: %v", m)
	}
	if m := c.do(`{"op":"balloon","mib":4096}`); m["ok"] != false || m["error"] != "too big" {
		t.Fatalf("balloon too big: %v", m)
	}
	if m := c.do(`{"op":"stop"}`); m["ok"] != true || !vm.stopped {
		t.Fatalf("stop: %v", m)
	}
}

func TestBadRequests(t *testing.T) {
	path, _, _ := serve(t)
	c := dial(t, path)
	for line, want := range map[string]string{
		`not json`:                   "bad request",
		`{"op":"status","x":1}`:      "unknown field",
		`{"op":"reboot"}`:            "unknown op",
		`{}`:                         `no "op"`,
		`{"op":"balloon"}`:           `needs "mib"`,
		`{"op":"balloon","mib":-1}`:  "bad request",
		`{"op":"balloon","mib":"1"}`: "bad request",
		`["status"]`:                 "bad request",
	} {
		if m := c.do(line); m["ok"] != false || !strings.Contains(m["error"].(string), want) {
			t.Errorf("%s: %v, want an error with %q", line, m, want)
		}
	}
	// The connection still serves after bad lines.
	if m := c.do(`{"op":"status"}`); m["ok"] != true {
		t.Fatalf("status after bad requests: %v", m)
	}
	// A line that is too long ends the connection with an error.
	c.c.Write([]byte(strings.Repeat("x", MaxLine+10)))
	resp, _ := c.r.ReadString('\n')
	if !strings.Contains(resp, "longer than") {
		t.Fatalf("long line: %q", resp)
	}
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after a long line")
	}
}

func TestClientLimitAndClose(t *testing.T) {
	path, _, s := serve(t)
	var cs []*client
	for range MaxClients {
		c := dial(t, path)
		c.do(`{"op":"status"}`)
		cs = append(cs, c)
	}
	extra := dial(t, path)
	if _, err := extra.r.ReadString('\n'); err == nil {
		t.Fatal("a client beyond the limit was served")
	}
	s.Close()
	for _, c := range cs {
		if _, err := c.r.ReadString('\n'); err == nil {
			t.Fatal("a client survived Close")
		}
	}
}
