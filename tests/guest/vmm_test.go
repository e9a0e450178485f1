package guest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bootTimeout bounds one guest run. Boots in the nested lane take seconds;
// this only catches hangs.
const bootTimeout = 5 * time.Minute

// Exit statuses of vmm run (cmd/vmm/app.go).
const (
	exitOK         = 0
	exitGuestCrash = 2
)

func imagesDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VMM_IMAGES")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "images/out")
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz")); err != nil {
		t.Fatalf("guest images missing (run make images): %v", err)
	}
	return dir
}

func vmmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VMM_BIN"); p != "" {
		return p
	}
	dir := t.TempDir()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// vmm-usernet (--net user) belongs next to vmm.
	for _, prog := range []string{"vmm", "vmm-usernet"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, prog), "./cmd/"+prog)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", prog, err, out)
		}
	}
	return filepath.Join(dir, "vmm")
}

// vmmCommand is "vmm run args..." under ctx. When ctx ends the VMM is
// killed, and Wait returns within a few seconds even if a child it started
// (vmm-usernet) still holds its output open.
func vmmCommand(ctx context.Context, t *testing.T, args []string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, vmmBinary(t), append([]string{"run"}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// guestRun is the outcome of one vmm run.
type guestRun struct {
	console string
	status  int
	elapsed time.Duration
}

// bootGuest runs vmm with the given arguments and returns its console
// output and exit status.
func bootGuest(t *testing.T, args ...string) guestRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := vmmCommand(ctx, t, args)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	r := finishedRun(ctx, t, cmd.Run(), out.String(), start)
	t.Logf("vmm %s: status %d after %v", strings.Join(args, " "), r.status, r.elapsed.Round(time.Millisecond))
	return r
}

// stockKernel returns the arguments that boot the Debian cloud bzImage
// with the test initramfs in the given mode.
func stockKernel(t *testing.T, mode string, extraCmdline ...string) []string {
	dir := imagesDir(t)
	cmdline := append([]string{"console=ttyS0", "quiet", "vmm.test=" + mode}, extraCmdline...)
	return []string{"--kernel", filepath.Join(dir, "vmlinuz"), "--initrd", filepath.Join(dir, "initrd.img"),
		"--memory", "512M", "--cmdline", strings.Join(cmdline, " ")}
}

// finishedRun turns the result of a vmm process that has exited (err from
// Run or Wait) into a guestRun; a timeout or a failure to run fails the test.
func finishedRun(ctx context.Context, t *testing.T, err error, console string, start time.Time) guestRun {
	t.Helper()
	r := guestRun{console: console, elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("vmm did not stop within %v; console:\n%s", bootTimeout, r.console)
	case errors.As(err, &ee):
		r.status = ee.ExitCode()
	case err != nil:
		t.Fatalf("vmm: %v", err)
	}
	return r
}

func (r guestRun) expect(t *testing.T, status int, lines ...string) {
	t.Helper()
	ok := r.status == status
	for _, l := range lines {
		if !strings.Contains(r.console, l) {
			ok = false
			t.Errorf("console lacks %q", l)
		}
	}
	if r.status != status {
		t.Errorf("vmm exit status %d, want %d", r.status, status)
	}
	if !ok {
		t.Logf("console:\n%s", r.console)
	}
}

// interactiveGuest runs vmm with the given arguments and calls onLine for
// each console line, with the guest's console input; onLine returns false
// to stop reading (the caller then usually kills the VMM or waits for its
// exit). It returns the console so far and the running command.
func interactiveGuest(ctx context.Context, t *testing.T, args []string, onLine func(line string, input io.Writer) bool) (*strings.Builder, *exec.Cmd) {
	t.Helper()
	cmd := vmmCommand(ctx, t, args)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var console strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		console.WriteString(sc.Text() + "\n")
		if !onLine(sc.Text(), stdin) {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	return &console, cmd
}
