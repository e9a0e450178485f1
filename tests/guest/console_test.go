package guest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestConsoleInput types into the guest's serial console: the guest shell
// runs the command and powers off on request.
func TestConsoleInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmmBinary(t), append([]string{"run"}, stockKernel(t, "shell")...)...)
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
	typed, echoed := false, false
	for sc.Scan() {
		line := sc.Text()
		console.WriteString(line + "\n")
		switch {
		case !typed && strings.Contains(line, "VMM-SHELL ready"):
			// $((6*7)) is expanded by the guest shell: the echo of the
			// typed line itself does not contain the answer.
			io.WriteString(stdin, "echo VMM-ECHO-$((6*7))\n")
			typed = true
		case typed && !echoed && strings.Contains(line, "VMM-ECHO-42"):
			echoed = true
			io.WriteString(stdin, "poweroff -f\n")
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if !echoed || cmd.ProcessState.ExitCode() != exitOK {
		t.Fatalf("typed=%v echoed=%v exit=%d; console:\n%s", typed, echoed, cmd.ProcessState.ExitCode(), console.String())
	}
}
