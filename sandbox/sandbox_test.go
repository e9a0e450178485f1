package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const childEnv = "SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
	var child func() error
	switch os.Getenv(childEnv) {
	case "network-helper":
		child = confinedChild
	case "vmm":
		child = confinedVMM
	case "vmm-log":
		child = loggedVMM
	case "vmm-helper":
		child = vmmWithHelper
	case "vmm-unix":
		child = vmmWithUnixStreams
	case "vmm-accept":
		child = vmmAcceptingUnix
	}
	if child != nil {
		if err := child(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("OK")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// confinedChild confines itself, then checks that what a network helper
// does still works and that files and programs are out of reach.
func confinedChild() error {
	l, err := net.Listen("tcp", "127.0.0.1:0") // bound before, like the forwards
	if err != nil {
		return err
	}
	defer l.Close()
	if err := ConfineNetworkHelper(); err != nil {
		return err
	}
	// Files and programs: refused with EPERM.
	if _, err := os.Open("/proc/self/status"); !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("open after confinement: %v, want EPERM", err)
	}
	if err := exec.Command("/bin/true").Run(); err == nil {
		return errors.New("exec after confinement succeeded")
	}
	if _, err := net.Dial("unix", "/run/anything.sock"); err == nil {
		return errors.New("unix socket after confinement succeeded")
	}
	// Sockets, new threads, timers and the garbage collector: still fine.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // forces new threads (clone)
			time.Sleep(time.Duration(i) * time.Millisecond)
		}()
	}
	go func() {
		c, err := l.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial after confinement: %v", err)
	}
	defer c.Close()
	msg := strings.Repeat("x", 1<<20)
	go c.Write([]byte(msg))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		return fmt.Errorf("echo after confinement: %v", err)
	}
	runtime.GC()
	wg.Wait()
	return nil
}

// runChild runs this test binary as the child named role and fails t
// unless the child reports OK.
func runChild(t *testing.T, role string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("confined child %s: %v\n%s", role, err, out)
	}
}

func TestConfineNetworkHelper(t *testing.T) { runChild(t, "network-helper") }

func TestRulesBuild(t *testing.T) {
	if n := len(networkHelperRules(1)); n < 40 {
		t.Errorf("%d rules", n)
	}
	if _, err := build(networkHelperRules(1), false); err != nil {
		t.Fatal(err)
	}
}
