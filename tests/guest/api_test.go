package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// apiClient speaks to vmm's control socket: a JSON line each way.
type apiClient struct {
	c net.Conn
	r *bufio.Reader
}

type apiResponse struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	State   string `json:"state"`
	Balloon *struct {
		Target uint64 `json:"target_mib"`
		Actual uint64 `json:"actual_mib"`
		Guest  *struct {
			Total     uint64 `json:"total_bytes"`
			Available uint64 `json:"available_bytes"`
		} `json:"guest"`
	} `json:"balloon"`
	Metrics *struct {
		ExitsTotal uint64 `json:"exits_total"`
		Balloon    *struct{ InflatedPages, DeflatedPages uint64 }
	} `json:"metrics"`
}

func (a *apiClient) do(req string) (apiResponse, error) {
	var resp apiResponse
	a.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(a.c, req+"\n"); err != nil {
		return resp, err
	}
	line, err := a.r.ReadString('\n')
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal([]byte(line), &resp); err != nil {
		return resp, fmt.Errorf("%q: %w", line, err)
	}
	if !resp.OK {
		return resp, fmt.Errorf("%s: %s", req, resp.Error)
	}
	return resp, nil
}

// TestControlSocket drives a running guest through --api-socket: status,
// pause (the guest's ticks stop), resume (they come back), a balloon the
// guest inflates to the asked size and deflates again, its memory
// statistics, and stop (vmm exits 0). vmm runs confined, as by default.
func TestControlSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := append(stockKernel(t, "api"), "--api-socket", sock, "--balloon", "--memory", "1G")
	var ticks atomic.Int64
	driven := make(chan error, 1)
	started := false
	console, cmd := interactiveGuest(ctx, t, args, func(line string, _ io.Writer) bool {
		switch {
		case strings.Contains(line, "VMM-API tick"):
			ticks.Add(1)
		case !started && strings.Contains(line, "VMM-API ready"):
			started = true
			go func() { driven <- driveControlSocket(t, sock, &ticks) }()
		}
		return true
	})
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if !started {
		t.Fatalf("the guest never got ready; console:\n%s", console)
	}
	if err := <-driven; err != nil {
		t.Errorf("control socket: %v; console:\n%s", err, console)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitOK {
		t.Errorf("vmm exit status %d after stop, want %d", code, exitOK)
	}
}

func driveControlSocket(t *testing.T, sock string, ticks *atomic.Int64) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	a := &apiClient{c: c, r: bufio.NewReader(c)}
	waitTicks := func(n int64, within time.Duration) error {
		deadline := time.Now().Add(within)
		for ticks.Load() < n {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d ticks, want %d within %v", ticks.Load(), n, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	if err := waitTicks(2, time.Minute); err != nil {
		return err
	}
	st, err := a.do(`{"op":"status"}`)
	if err != nil {
		return err
	}
	if st.State != "running" || st.Metrics == nil || st.Metrics.ExitsTotal == 0 || st.Balloon == nil {
		return fmt.Errorf("status %+v", st)
	}

	if st, err = a.do(`{"op":"pause"}`); err != nil || st.State != "paused" {
		return fmt.Errorf("pause: %+v, %v", st, err)
	}
	time.Sleep(300 * time.Millisecond) // a line already on its way may still arrive
	before := ticks.Load()
	time.Sleep(1500 * time.Millisecond)
	if n := ticks.Load() - before; n != 0 {
		return fmt.Errorf("%d ticks while paused", n)
	}
	if st, err = a.do(`{"op":"status"}`); err != nil || st.State != "paused" {
		return fmt.Errorf("status while paused: %+v, %v", st, err)
	}
	if st, err = a.do(`{"op":"resume"}`); err != nil || st.State != "running" {
		return fmt.Errorf("resume: %+v, %v", st, err)
	}
	if err := waitTicks(before+3, 30*time.Second); err != nil {
		return fmt.Errorf("after resume: %w", err)
	}

	// The guest inflates the balloon to the target, then deflates it. (The
	// size is modest: every inflated 4 KiB page is an madvise that makes
	// the test host's KVM unmap memory, and heavy unmapping has made the
	// nested lane's test host crash in its known way, docs/testing.md.)
	const balloonMiB = 128
	for _, mib := range []uint64{balloonMiB, 0} {
		if _, err := a.do(fmt.Sprintf(`{"op":"balloon","mib":%d}`, mib)); err != nil {
			return err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			st, err = a.do(`{"op":"status"}`)
			if err != nil {
				return err
			}
			if st.Balloon.Target == mib && st.Balloon.Actual == mib {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("balloon %+v, want %d MiB", *st.Balloon, mib)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if b := st.Metrics.Balloon; b == nil || b.InflatedPages < balloonMiB<<8 || b.DeflatedPages < balloonMiB<<8 {
		return fmt.Errorf("balloon metrics %+v", st.Metrics.Balloon)
	}
	// The guest's memory statistics (each status asks for fresh ones).
	deadline := time.Now().Add(time.Minute)
	for st.Balloon.Guest == nil || st.Balloon.Guest.Total == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("no guest memory statistics: %+v", *st.Balloon)
		}
		time.Sleep(100 * time.Millisecond)
		if st, err = a.do(`{"op":"status"}`); err != nil {
			return err
		}
	}
	if g := st.Balloon.Guest; g.Total < 900<<20 || g.Total > 1<<30 || g.Available == 0 || g.Available > g.Total {
		return fmt.Errorf("guest memory statistics %+v for a 1 GiB guest", *g)
	}
	if _, err := a.do(`{"op":"balloon","mib":4096}`); err == nil {
		return errors.New("a balloon larger than the guest was accepted")
	}
	if _, err := a.do(`{"op":"stop"}`); err != nil {
		return err
	}
	t.Logf("control socket: paused with no tick for 1.5 s, balloon inflated to %d MiB and back; guest total %d MiB, available %d MiB",
		balloonMiB, st.Balloon.Guest.Total>>20, st.Balloon.Guest.Available>>20)
	return nil
}
