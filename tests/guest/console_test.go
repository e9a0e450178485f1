package guest

import (
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
	typed, echoed := false, false
	console, cmd := interactiveGuest(ctx, t, stockKernel(t, "shell"), func(line string, input io.Writer) bool {
		switch {
		case !typed && strings.Contains(line, "VMM-SHELL ready"):
			// $((6*7)) is expanded by the guest shell: the echo of the
			// typed line itself does not contain the answer.
			io.WriteString(input, "echo VMM-ECHO-$((6*7))\n")
			typed = true
		case typed && !echoed && strings.Contains(line, "VMM-ECHO-42"):
			echoed = true
			io.WriteString(input, "poweroff -f\n")
		}
		return true
	})
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if !echoed || cmd.ProcessState.ExitCode() != exitOK {
		t.Fatalf("typed=%v echoed=%v exit=%d; console:\n%s", typed, echoed, cmd.ProcessState.ExitCode(), console.String())
	}
}
