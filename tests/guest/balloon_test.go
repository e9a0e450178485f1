package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBalloonReturnsFreedMemory: with --balloon the guest's driver
// negotiates free page reporting; the guest fills 256 MiB of a tmpfs and
// frees it, and the VMM's resident memory falls again by most of that
// once the guest has reported the freed blocks.
func TestBalloonReturnsFreedMemory(t *testing.T) {
	const mib = 256
	metrics := filepath.Join(t.TempDir(), "metrics.json")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := append(stockKernel(t, "balloon", fmt.Sprintf("vmm.balloon.mib=%d", mib)),
		"--balloon", "--memory", "1G", "--metrics-file", metrics)
	var vmm int
	var peak, after int    // VmRSS, KiB
	var fell time.Duration // from "freed" until the fall showed
	console, cmd := interactiveGuest(ctx, t, args, func(line string, input io.Writer) bool {
		switch {
		case strings.Contains(line, "VMM-BALLOON touched"):
			vmm = vmmChild(t)
			peak = rssKiB(t, vmm)
		case strings.Contains(line, "VMM-BALLOON freed") && vmm != 0:
			// Linux reports freed blocks about 2 s after they gather.
			start := time.Now()
			for {
				after = rssKiB(t, vmm)
				fell = time.Since(start)
				if peak-after >= mib*1024*3/4 || fell > time.Minute {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			io.WriteString(input, "go on\n")
		}
		return true
	})
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	r := guestRun{console: console.String(), status: cmd.ProcessState.ExitCode()}
	r.expect(t, exitOK, "VMM-BALLOON bound", "reporting=1 deflate_on_oom=1", "VMM-BALLOON touched mib=256", "VMM-BALLOON done",
		"VMM-TEST-RESULT balloon PASS")
	t.Logf("vmm resident memory: %d MiB with the guest's %d MiB touched, %d MiB %v after it freed them",
		peak>>10, mib, after>>10, fell.Round(100*time.Millisecond))
	if peak == 0 || peak-after < mib*1024*3/4 {
		t.Errorf("vmm resident memory fell by %d MiB after the guest freed %d MiB, want at least %d", (peak-after)>>10, mib, mib*3/4)
	}

	var m struct {
		Balloon struct{ Reports, ReportedBytes, DiscardedBytes, BadChains, Failures uint64 } `json:"balloon"`
	}
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v := m.Balloon; v.Reports == 0 || v.DiscardedBytes < mib<<20 || v.BadChains != 0 || v.Failures != 0 {
		t.Errorf("balloon metrics %+v", v)
	}
}

// vmmChild returns the process ID of the test's vmm child.
func vmmChild(t *testing.T) int {
	t.Helper()
	for _, pid := range childPids(t, os.Getpid()) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == "vmm" {
			return pid
		}
	}
	t.Fatal("no vmm child process")
	return 0
}

// rssKiB returns a process's resident memory.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	var kib int
	if _, err := fmt.Sscanf(procStatus(t, pid, "VmRSS"), "%d kB", &kib); err != nil {
		t.Fatalf("VmRSS of %d: %v", pid, err)
	}
	return kib
}
