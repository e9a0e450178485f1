package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// "lanebench trace" boots each flavour once with KVM's trace events on and
// breaks its VM exits to the init marker down by hardware exit reason, the
// detail KVM's counters (kvm_exits_at_marker) do not give: which exits are
// CPUID, MSR writes, nested page faults, host interrupts. Tracing slows
// every exit down, so its boots are not timed.

const tracefs = "/sys/kernel/tracing"

// traceEvents are the kvm events the breakdown reads.
var traceEvents = []string{"kvm_exit", "kvm_pio", "kvm_msr"}

// markerPort is the boot-marker port the guest's init writes (boot.BootMarkerPort).
const markerPort = "0x440"

// TraceSummary is one boot's exits up to the marker.
type TraceSummary struct {
	Total      int
	ByReason   map[string]int
	UserCPUID  int            // CPUID exits with a user-mode RIP
	MSRWrites  map[string]int // by MSR index (hex, as traced)
	PortIO     map[string]int // "in 0xcfc", "out 0xcf8", ...
	SawMarker  bool           // the count stopped at the guest's marker port write
	AtLine     bool           // the count stopped when the marker line came instead
	Lost       bool           // the trace buffer overran
	FirstEvent float64
	MarkerAt   float64 // trace clock (CLOCK_MONOTONIC), s
}

func traceMain(args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var c runConfig
	c.vmFlags(fs)
	fs.DurationVar(&c.timeout, "timeout", 120*time.Second, "kill a VM that runs longer than this")
	fs.StringVar(&c.only, "only", "ours,qemu-microvm,qemu-q35", "comma-separated flavours to trace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fl := c.flavours(c.tmp + "/lanebench-metrics.json")
	if len(fl) == 0 {
		return fmt.Errorf("trace: -only %q names no flavour", c.only)
	}
	if err := setupTrace(); err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	var names []string
	var sums []TraceSummary
	for _, f := range fl {
		if err := writeTracefs("trace", ""); err != nil {
			return fmt.Errorf("trace: clear: %w", err)
		}
		if err := writeTracefs("tracing_on", "1"); err != nil {
			return fmt.Errorf("trace: start: %w", err)
		}
		progress("trace %s: booting", f.Name)
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		r := bootOnce(f, 0, c.memMiB, c.timeout)
		// A guest that cannot write the marker port (QEMU q35's, in the
		// lane: its user-mode OUT faults) is counted up to its marker line.
		cutoff := math.Inf(1)
		if r.MarkerMs > 0 {
			cutoff = float64(ts.Nano())/1e9 + r.MarkerMs/1000
		}
		_ = writeTracefs("tracing_on", "0")
		if r.Error != "" {
			progress("trace %s: %s", f.Name, r.Error)
		}
		t, err := os.Open(filepath.Join(tracefs, "trace"))
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		s, err := summarizeTrace(t, cutoff)
		t.Close()
		if err != nil {
			return fmt.Errorf("trace %s: %w", f.Name, err)
		}
		names, sums = append(names, f.Name), append(sums, s)
	}
	printTrace(os.Stdout, names, sums)
	return nil
}

func writeTracefs(file, v string) error {
	return os.WriteFile(filepath.Join(tracefs, file), []byte(v), 0)
}

// setupTrace mounts tracefs if needed and turns the kvm events on, with a
// buffer large enough for a q35 boot (about 30,000 exits to init).
func setupTrace() error {
	if _, err := os.Stat(filepath.Join(tracefs, "events")); err != nil {
		if err := unix.Mount("tracefs", tracefs, "tracefs", 0, ""); err != nil {
			return fmt.Errorf("mount tracefs: %w", err)
		}
	}
	// The mono clock is CLOCK_MONOTONIC, which the marker line's time is
	// compared with.
	steps := [][2]string{{"tracing_on", "0"}, {"buffer_size_kb", "65536"}, {"trace_clock", "mono"}}
	for _, e := range traceEvents {
		steps = append(steps, [2]string{"events/kvm/" + e + "/enable", "1"})
	}
	for _, s := range steps {
		if err := writeTracefs(s[0], s[1]); err != nil {
			return err
		}
	}
	return nil
}

// summarizeTrace reads tracefs's "trace" text and counts the exits up to
// the first write to the boot-marker port, or to cutoff (trace clock, s)
// if that comes first.
func summarizeTrace(r io.Reader, cutoff float64) (TraceSummary, error) {
	s := TraceSummary{ByReason: map[string]int{}, MSRWrites: map[string]int{}, PortIO: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if strings.Contains(line, "entries-in-buffer/entries-written:") {
				s.Lost = lostEntries(line)
			}
			continue
		}
		at, event, rest, ok := traceLine(line)
		if !ok {
			continue
		}
		if s.FirstEvent == 0 {
			s.FirstEvent = at
		}
		if at > cutoff {
			s.AtLine, s.MarkerAt = true, cutoff
			return s, nil
		}
		f := strings.Fields(rest)
		switch event {
		case "kvm_exit":
			reason, rip := field(f, "reason"), field(f, "rip")
			if reason == "" {
				continue
			}
			s.Total++
			s.ByReason[reason]++
			if isCPUID(reason) && userRIP(rip) {
				s.UserCPUID++
			}
		case "kvm_msr":
			if len(f) >= 2 && f[0] == "msr_write" {
				s.MSRWrites[f[1]]++
			}
		case "kvm_pio":
			// "pio_write at 0x440 size 1 count 1 val 0x1"
			if len(f) < 3 || f[1] != "at" {
				continue
			}
			dir := map[string]string{"pio_write": "out", "pio_read": "in"}[f[0]]
			if dir == "" {
				continue
			}
			if dir == "out" && f[2] == markerPort {
				s.SawMarker, s.MarkerAt = true, at
				return s, nil
			}
			s.PortIO[dir+" "+f[2]]++
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if s.Total == 0 {
		return s, errors.New("no kvm_exit events in the trace")
	}
	return s, nil
}

// traceLine splits "  TASK-PID  [CPU] FLAGS  TIMESTAMP: EVENT: REST".
func traceLine(line string) (at float64, event, rest string, ok bool) {
	i := strings.Index(line, ": kvm_")
	if i < 0 {
		return 0, "", "", false
	}
	head := strings.Fields(line[:i])
	if len(head) == 0 {
		return 0, "", "", false
	}
	at, err := strconv.ParseFloat(head[len(head)-1], 64)
	if err != nil {
		return 0, "", "", false
	}
	event, rest, ok = strings.Cut(line[i+2:], ": ")
	return at, event, rest, ok
}

// field returns the word after key in f.
func field(f []string, key string) string {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == key {
			return f[i+1]
		}
	}
	return ""
}

func isCPUID(reason string) bool { return strings.EqualFold(reason, "cpuid") }

// userRIP reports whether rip (hex) is a user-mode address: below the
// canonical upper half.
func userRIP(rip string) bool {
	v, err := strconv.ParseUint(strings.TrimPrefix(rip, "0x"), 16, 64)
	return err == nil && v < 1<<47
}

// lostEntries parses "# entries-in-buffer/entries-written: 5260/5260   #P:2".
func lostEntries(line string) bool {
	_, after, _ := strings.Cut(line, ":")
	f := strings.Fields(after)
	if len(f) == 0 {
		return false
	}
	a, b, ok := strings.Cut(f[0], "/")
	return ok && a != b
}

func printTrace(w io.Writer, names []string, sums []TraceSummary) {
	fmt.Fprintf(w, "VM exits to the init marker by exit reason (ftrace kvm:kvm_exit, one boot each; tracing slows the boots, so no times)\n\n")
	reasons := map[string]int{}
	for _, s := range sums {
		for r, n := range s.ByReason {
			reasons[r] += n
		}
	}
	order := make([]string, 0, len(reasons))
	for r := range reasons {
		order = append(order, r)
	}
	slices.SortFunc(order, func(a, b string) int { return reasons[b] - reasons[a] })
	fmt.Fprintf(w, "%-22s", "reason")
	for _, n := range names {
		fmt.Fprintf(w, " %13s", n)
	}
	fmt.Fprintln(w)
	row := func(label string, v func(TraceSummary) int) {
		fmt.Fprintf(w, "%-22s", label)
		for _, s := range sums {
			fmt.Fprintf(w, " %13d", v(s))
		}
		fmt.Fprintln(w)
	}
	row("all", func(s TraceSummary) int { return s.Total })
	for _, r := range order {
		row(r, func(s TraceSummary) int { return s.ByReason[r] })
		if isCPUID(r) {
			row("  of which user mode", func(s TraceSummary) int { return s.UserCPUID })
		}
	}
	for i, s := range sums {
		fmt.Fprintf(w, "\n%s: MSR writes %s\n", names[i], top(s.MSRWrites, 6))
		fmt.Fprintf(w, "%s: port I/O %s\n", names[i], top(s.PortIO, 8))
		switch {
		case s.Lost:
			fmt.Fprintf(w, "%s: the trace buffer overran: counts are low\n", names[i])
		case s.SawMarker:
			fmt.Fprintf(w, "%s: first exit to the marker port write %.3f s (traced)\n", names[i], s.MarkerAt-s.FirstEvent)
		case s.AtLine:
			fmt.Fprintf(w, "%s: no marker port write; counted to the marker line, %.3f s after the first exit (traced)\n", names[i], s.MarkerAt-s.FirstEvent)
		default:
			fmt.Fprintf(w, "%s: no marker in the trace: counts are of the whole trace\n", names[i])
		}
	}
}

// top formats the n largest counts of m, largest first.
func top(m map[string]int, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
