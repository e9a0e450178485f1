package guest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/network/tap"
)

// The network tests run vmm inside a network namespace of their own, so
// nothing they create (bridge, TAP, listeners) is visible outside, and they
// use only addresses inside it (10.0.2.0/24 and loopback).
//
// enterNetns locks the test goroutine to its OS thread and moves that
// thread into a new network namespace with loopback up. Sockets the test
// opens on this goroutine, and processes it starts, live in the namespace.
// The thread stays locked, so Go discards it when the test ends.
func enterNetns(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("new network namespace (the lane runs tests as root): %v", err)
	}
	if err := tap.SetUp("lo"); err != nil {
		t.Fatal(err)
	}
}

// hostServer serves /file (random bytes) and /done (404 until markDone) on
// ln, for the guest's wget.
type hostServer struct {
	file []byte
	sum  string
	done atomic.Bool
	srv  *http.Server
}

func startHostServer(t *testing.T, ln net.Listener) *hostServer {
	t.Helper()
	h := &hostServer{file: make([]byte, 1<<20)}
	rand.Read(h.file)
	s := sha256.Sum256(h.file)
	h.sum = hex.EncodeToString(s[:])
	mux := http.NewServeMux()
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { w.Write(h.file) })
	mux.HandleFunc("/done", func(w http.ResponseWriter, r *http.Request) {
		if !h.done.Load() {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "done\n")
	})
	h.srv = &http.Server{Handler: mux}
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// httpGet fetches url over a connection dialled on the calling goroutine
// (so from inside the test's namespace; http.Client would dial elsewhere).
func httpGet(addr, path string) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// runNetGuest boots the net mode with args and, when the guest says it
// serves data.bin, fetches it from guestAddr and checks its hash, runs
// check (if any) while the VM is still up, then lets the guest finish.
func runNetGuest(t *testing.T, srv *hostServer, guestAddr string, cred *syscall.Credential, check func(*exec.Cmd), args ...string) guestRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := vmmCommand(ctx, t, args)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	sc := bufio.NewScanner(stdout)
	fetched := false
	for sc.Scan() {
		line := sc.Text()
		console.WriteString(line + "\n")
		i := strings.Index(line, "VMM-NET serving ")
		if i < 0 || fetched {
			continue
		}
		fetched = true
		_, want, _ := strings.Cut(line[i:], "sha256=")
		got, err := httpGet(guestAddr, "/data.bin")
		if err != nil {
			t.Errorf("host fetching data.bin from the guest: %v", err)
		} else if s := sha256.Sum256(got); hex.EncodeToString(s[:]) != strings.TrimSpace(want) {
			t.Errorf("data.bin from the guest: %d bytes, sha256 %x, guest says %s", len(got), s, want)
		} else {
			t.Logf("host fetched %d bytes from the guest's httpd", len(got))
		}
		if check != nil {
			check(cmd)
		}
		srv.done.Store(true)
	}
	io.Copy(io.Discard, stdout)
	r := finishedRun(ctx, t, cmd.Wait(), console.String(), start)
	if !fetched {
		t.Errorf("guest never served data.bin")
	}
	t.Logf("vmm: status %d after %v", r.status, r.elapsed.Round(time.Millisecond))
	return r
}

func vmmTAPs(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "vmmtap") {
			names = append(names, i.Name)
		}
	}
	return names
}

// TestNetTAP: vmm creates a TAP in a bridge that holds the host side
// (10.0.2.2); the guest (10.0.2.15, static) pings the host, fetches a file
// from a Go HTTP server and serves one that the host fetches. After vmm
// exits, its TAP is gone.
func TestNetTAP(t *testing.T) {
	enterNetns(t)
	if err := tap.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if err := tap.SetIPv4("br0", netip.MustParsePrefix("10.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if err := tap.SetUp("br0"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "10.0.2.2:8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := startHostServer(t, ln)
	args := append(stockKernel(t, "net", "vmm.ip=10.0.2.15/24", "vmm.gw=10.0.2.2",
		"vmm.net.get=http://10.0.2.2:8080/file", "vmm.net.sha256="+srv.sum,
		"vmm.net.serve=1", "vmm.net.done=http://10.0.2.2:8080/done", "vmm.net.wait=120"),
		"--net", "tap,bridge=br0,mac=52:54:00:12:34:56")
	var during []string
	r := runNetGuest(t, srv, "10.0.2.15:80", nil, func(*exec.Cmd) { during = vmmTAPs(t) }, args...)
	r.expect(t, exitOK, "VMM-NET eth0 mac=52:54:00:12:34:56 ip=10.0.2.15/24", "VMM-NET ping 10.0.2.2 ok",
		"VMM-NET get 1048576 bytes sha256="+srv.sum, "VMM-NET host done", "rx_length_errors=0 rx_dropped=0",
		"VMM-TEST-RESULT net PASS")
	if len(during) != 1 {
		t.Errorf("TAPs while the VM ran: %v, want one vmmtapN", during)
	}
	if left := vmmTAPs(t); len(left) != 0 {
		t.Errorf("TAPs left after vmm exited: %v", left)
	}
}

// makePersistentTAP creates a TAP that outlives its creator, as
// `ip tuntap add NAME mode tap` does.
func makePersistentTAP(t *testing.T, name string) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("TUNSETIFF %s: %v", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		t.Fatalf("TUNSETPERSIST %s: %v", name, err)
	}
}

// seccompMode returns the Seccomp field of /proc/PID/status: "2" for a
// process confined by a filter.
func seccompMode(t *testing.T, pid int) string {
	t.Helper()
	return procStatus(t, pid, "Seccomp")
}

// procStatus returns the value of field in /proc/PID/status ("" if absent).
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// childPids returns the process IDs of pid's children (from every
// thread's /proc/PID/task/TID/children).
func childPids(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue // the thread has exited
		}
		for _, f := range strings.Fields(string(b)) {
			var child int
			if _, err := fmt.Sscan(f, &child); err == nil {
				pids = append(pids, child)
			}
		}
	}
	return pids
}

// TestNetTAPAttachSIGTERM: vmm attaches to an existing TAP that carries
// the host address; the exchanges work, vmm is confined by its seccomp
// filter, SIGTERM while the guest runs stops vmm cleanly (status 0), and
// the TAP, which vmm did not create, remains.
func TestNetTAPAttachSIGTERM(t *testing.T) {
	enterNetns(t)
	makePersistentTAP(t, "tap0")
	if err := tap.SetIPv4("tap0", netip.MustParsePrefix("10.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if err := tap.SetUp("tap0"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "10.0.2.2:8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := startHostServer(t, ln)
	// No vmm.net.done: the guest would wait for it; SIGTERM ends the run.
	args := append(stockKernel(t, "net", "vmm.ip=10.0.2.15/24", "vmm.gw=10.0.2.2",
		"vmm.net.get=http://10.0.2.2:8080/file", "vmm.net.sha256="+srv.sum,
		"vmm.net.serve=1", "vmm.net.done=http://10.0.2.2:8080/never", "vmm.net.wait=600"),
		"--net", "tap=tap0")
	r := runNetGuest(t, srv, "10.0.2.15:80", nil, func(cmd *exec.Cmd) {
		// While the guest runs and its network is busy, vmm is confined.
		if mode := seccompMode(t, cmd.Process.Pid); mode != "2" {
			t.Errorf("vmm seccomp mode %q while the guest runs, want 2 (filter)", mode)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: %v", err)
		}
	}, args...)
	r.expect(t, exitOK, "VMM-NET ping 10.0.2.2 ok", "VMM-NET get 1048576 bytes sha256="+srv.sum, "stopping on signal")
	if strings.Contains(r.console, "VMM-TEST-RESULT") {
		t.Error("guest finished although vmm was stopped first")
	}
	if _, err := net.InterfaceByName("tap0"); err != nil {
		t.Errorf("pre-existing tap0 gone after vmm exited: %v", err)
	}
	if left := vmmTAPs(t); len(left) != 0 {
		t.Errorf("TAPs created: %v", left)
	}
}

// freePort returns a loopback TCP port that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// TestNetUser: the same exchanges through user-mode networking, with vmm
// running as an unprivileged user: DHCP, ping of the gateway, a fetch from
// the host through NAT (10.0.2.2 stands for the host's 127.0.0.1) and a
// fetch from the guest through hostfwd; meanwhile vmm and vmm-usernet are
// both confined by their seccomp filters.
func TestNetUser(t *testing.T) {
	enterNetns(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := startHostServer(t, ln)
	fwd := freePort(t)
	base := fmt.Sprintf("http://10.0.2.2:%d", port)
	args := append(stockKernel(t, "net", "vmm.dhcp=1", "vmm.net.get="+base+"/file", "vmm.net.sha256="+srv.sum,
		"vmm.net.serve=1", "vmm.net.done="+base+"/done", "vmm.net.wait=120"),
		"--net", fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", fwd))
	r := runNetGuest(t, srv, fmt.Sprintf("127.0.0.1:%d", fwd), nobody, func(cmd *exec.Cmd) {
		// Both vmm and its network helper are confined while the guest
		// uses the network.
		if mode := seccompMode(t, cmd.Process.Pid); mode != "2" {
			t.Errorf("vmm seccomp mode %q, want 2 (filter)", mode)
		}
		helpers := childPids(t, cmd.Process.Pid)
		if len(helpers) != 1 {
			t.Fatalf("vmm has children %v, want one vmm-usernet", helpers)
		}
		if mode := seccompMode(t, helpers[0]); mode != "2" {
			t.Errorf("vmm-usernet seccomp mode %q, want 2 (filter)", mode)
		}
	}, args...)
	r.expect(t, exitOK, "ip=10.0.2.15/24 gw=10.0.2.2", "VMM-NET ping 10.0.2.2 ok",
		"VMM-NET get 1048576 bytes sha256="+srv.sum, "VMM-NET host done", "rx_length_errors=0 rx_dropped=0",
		"VMM-TEST-RESULT net PASS")
}

// TestNetBadInput: refusals print one line, exit 1 and leave nothing
// behind: a TAP an unprivileged user may not create, a forwarded port in use.
func TestNetBadInput(t *testing.T) {
	enterNetns(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct {
		net  string
		cred *syscall.Credential
		want string
	}{
		{"tap", nobody, "tap"},
		{"tap=vmmnosuch", nobody, "tap"},
		{"tap,bridge=nobridge", nil, "bridge nobridge does not exist"},
		{"user,hostfwd=tcp:" + busy.Addr().String() + "-:80", nobody, "address already in use"},
		{"user,hostfwd=tcp:127.0.0.1:99999-:80", nobody, "hostfwd"},
	} {
		cmd := exec.Command(vmmBinary(t), append([]string{"run"}, append(stockKernel(t, "boot"), "--net", c.net)...)...)
		if c.cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("--net %s: %v, want exit status 1", c.net, err)
		}
		msg := strings.TrimSuffix(stderr.String(), "\n")
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "vmm: ") || !strings.Contains(msg, c.want) {
			t.Errorf("--net %s: stderr %q, want one line with %q", c.net, stderr.String(), c.want)
		} else {
			t.Logf("--net %s: %s", c.net, msg)
		}
	}
	if left := vmmTAPs(t); len(left) != 0 {
		t.Errorf("TAPs left behind: %v", left)
	}
}
