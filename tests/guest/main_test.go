// Package guest boots real Linux guests with the vmm binary and checks what
// they report on their console (the modes of images/initrd, vmm.test=...).
//
// Where /dev/kvm is hardware-backed the tests run directly. Elsewhere (an
// emulating backend, on which stock kernels cannot boot) TestMain rebuilds
// vmm and this test binary and re-runs the tests inside the nested lane,
// images/testbed/run, whose test host has a real hardware-virtualization
// KVM. The tests never skip for lack of KVM: they fail if neither works.
package guest

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/kvm"
)

// inLaneEnv is set by TestMain in the lane's command line.
const inLaneEnv = "VMM_IN_LANE"

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(inLaneEnv) == "" {
		if ok, why := kvm.HardwareBacked(); !ok {
			fmt.Printf("guest tests: %s: running them in the nested lane (images/testbed/run)\n", why)
			os.Exit(runInLane())
		}
	}
	os.Exit(m.Run())
}

// repoRoot finds the module root above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// runInLane builds static vmm and guest-test binaries and runs the selected
// tests inside the lane, streaming their output. It returns the exit status.
func runInLane() int {
	root, err := repoRoot()
	if err != nil {
		fmt.Println("guest tests:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "vmm-guest-tests")
	if err != nil {
		fmt.Println("guest tests:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	vmmBin := filepath.Join(tmp, "vmm")
	usernetBin := filepath.Join(tmp, "vmm-usernet") // --net user; found next to vmm
	testBin := filepath.Join(tmp, "guest.test")
	for _, args := range [][]string{
		{"build", "-o", vmmBin, "./cmd/vmm"},
		{"build", "-o", usernetBin, "./cmd/vmm-usernet"},
		{"test", "-c", "-o", testBin, "./tests/guest"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("guest tests: go %s: %v\n", strings.Join(args, " "), err)
			return 1
		}
	}
	inner := []string{"env", inLaneEnv + "=1", "VMM_IMAGES=/images", "VMM_BIN=/usr/local/bin/vmm",
		"guest.test", "-test.v", "-test.timeout=40m"}
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() != "" {
		inner = append(inner, "-test.run="+f.Value.String())
	}
	lane := []string{"--timeout", "2700", "--add", vmmBin, "--add", usernetBin, "--add", testBin, "--"}
	status, out := runLane(root, append(lane, inner...))
	if status == laneDied || status == laneFroze {
		// The test host itself (its kernel under QEMU TCG) crashed or
		// stopped: no test failed, the lane did. The tests run again, all
		// of them, in a new test host.
		fmt.Printf("guest tests: the nested lane's test host failed (status %d: a lane failure, not a test result); running the tests again in a new test host\n", status)
		status, _ = runLane(root, append(lane, inner...))
	} else if names := laneTripleFaults(out); status != 0 && len(names) > 0 {
		// Every failure was a guest that triple-faulted: the lane's
		// emulated SVM does this now and then (docs/testing.md). Those
		// tests, and only those, run once more in a new test host; a
		// second failure stands.
		fmt.Printf("guest tests: %s: the guest triple-faulted in the nested lane (a known lane failure, docs/testing.md); running only those tests once more, in a new test host\n",
			strings.Join(names, ", "))
		rerun := append(append([]string(nil), inner...), "-test.run=^("+strings.Join(names, "|")+")$")
		status, _ = runLane(root, append(lane, withoutRunFlag(rerun)...))
	}
	return status
}

// withoutRunFlag keeps only the last -test.run= of args.
func withoutRunFlag(args []string) []string {
	last := -1
	for i, a := range args {
		if strings.HasPrefix(a, "-test.run=") {
			last = i
		}
	}
	var out []string
	for i, a := range args {
		if strings.HasPrefix(a, "-test.run=") && i != last {
			continue
		}
		out = append(out, a)
	}
	return out
}

// tripleFaultLine is what vmm prints when the guest triple-faults.
const tripleFaultLine = "guest stopped: triple-fault"

// laneTripleFaults returns the tests that failed in out, the -test.v
// output of the lane's run, if each of them printed tripleFaultLine, and
// nil if any failed otherwise (or none failed).
func laneTripleFaults(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "--- FAIL: ")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		start := strings.Index(out, "=== RUN   "+name+"\n")
		end := strings.Index(out, "--- FAIL: "+name+" ")
		if start < 0 || end < start || !strings.Contains(out[start:end], tripleFaultLine) {
			return nil
		}
		names = append(names, name)
	}
	return names
}

// Exit statuses of images/testbed/run for a test host that failed under
// the tests: it died (a test-host kernel panic, QEMU exiting) or froze (no
// heartbeat). Measured causes: the test-host kernel, Debian's 6.1 under
// QEMU 7.2 TCG with emulated SVM, once hit a page-fault loop on its own
// per-CPU data while a VMM process ran, and once froze outright.
const (
	laneDied  = 123
	laneFroze = 122
)

// runLane runs images/testbed/run with args, streaming its output, and
// returns its exit status and its standard output.
func runLane(root string, args []string) (int, string) {
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "images/testbed/run"), args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stdout, &out), os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		fmt.Println("guest tests: lane:", err)
		return 1, out.String()
	}
	return 0, out.String()
}
