package machine

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/kvm"
)

// metrics holds the boot timeline of one VM. Exit counts live in each
// kvm.VCPU (ExitCounts).
type metrics struct {
	mu          sync.Mutex // protects the fields below
	entry       time.Time  // first KVM_RUN of the boot vCPU
	entryCPU    time.Duration
	sinceStart  time.Duration
	marker      time.Time // first write to the boot-marker port
	markerCount int
	markerExits uint64 // exits of all vCPUs when the marker was written
}

func (mt *metrics) markEntry(start time.Time) {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	mt.mu.Lock()
	defer mt.mu.Unlock()
	mt.entry = time.Now()
	mt.entryCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	mt.sinceStart = mt.entry.Sub(start)
}

// markBoot records a write to the boot-marker port and reports whether it
// was the first.
func (mt *metrics) markBoot(at time.Time, exits uint64) bool {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	mt.markerCount++
	if mt.markerCount > 1 {
		return false
	}
	mt.marker = at
	mt.markerExits = exits
	return true
}

func totalExits(c kvm.ExitCounts) uint64 {
	return c.IO + c.MMIO + c.HLT + c.Shutdown + c.SystemEvent + c.InternalError + c.FailEntry + c.Interrupted + c.Unknown
}

// exitsSoFar sums the exits to userspace of every vCPU.
func (m *Machine) exitsSoFar() uint64 {
	var n uint64
	for _, c := range m.vcpus {
		n += totalExits(c.ExitCounts())
	}
	return n
}

// Report is the JSON document written to Config.MetricsPath.
type Report struct {
	StopReason        string           `json:"stop_reason"`
	CPUs              int              `json:"cpus"`
	MemoryMiB         uint64           `json:"memory_mib"`
	StartToEntryMs    float64          `json:"start_to_entry_ms"`
	StartToEntryCPUMs float64          `json:"start_to_entry_cpu_ms"`
	StartToInitMs     float64          `json:"start_to_init_ms,omitempty"`
	EntryToInitMs     float64          `json:"entry_to_init_ms,omitempty"`
	ExitsTotal        uint64           `json:"exits_total"`
	ExitsToInit       uint64           `json:"exits_to_init,omitempty"`
	VCPUExits         []kvm.ExitCounts `json:"vcpu_exits"`
	MaxRSSKiB         int64            `json:"max_rss_kib"`
	// GuestRSSKiB is the guest RAM resident in this process when the VM
	// stopped (present pages in /proc/self/pagemap): the guest memory
	// touched, so MaxRSSKiB - GuestRSSKiB estimates the VMM's own overhead.
	// Zero if pagemap could not be read.
	GuestRSSKiB int64 `json:"guest_rss_kib"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (m *Machine) report() Report {
	mt := &m.metrics
	mt.mu.Lock()
	defer mt.mu.Unlock()
	r := Report{
		StopReason: m.result.Reason.String(), CPUs: m.cfg.CPUs, MemoryMiB: m.cfg.MemoryMiB,
		StartToEntryMs: ms(mt.sinceStart), StartToEntryCPUMs: ms(mt.entryCPU),
		ExitsTotal: m.exitsSoFar(), ExitsToInit: mt.markerExits,
	}
	if !mt.marker.IsZero() {
		r.StartToInitMs = ms(mt.marker.Sub(m.start))
		r.EntryToInitMs = ms(mt.marker.Sub(mt.entry))
	}
	for _, c := range m.vcpus {
		r.VCPUExits = append(r.VCPUExits, c.ExitCounts())
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		r.MaxRSSKiB = ru.Maxrss
	}
	if m.mem != nil {
		var hosts [][]byte
		for _, reg := range m.mem.Regions() {
			hosts = append(hosts, reg.Host())
		}
		if n, err := residentBytes(hosts); err == nil {
			r.GuestRSSKiB = int64(n >> 10)
		}
	}
	return r
}

// residentBytes counts the bytes of the given page-aligned host buffers
// (guest RAM regions) that are mapped to memory, from /proc/self/pagemap
// (bit 63, "page present"). reflect gives their addresses without unsafe.
// Pages the guest has only read may map the shared zero page; they count.
func residentBytes(mappings [][]byte) (uint64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	page := uint64(unix.Getpagesize())
	var total uint64
	buf := make([]byte, 4096) // 512 pages (2 MiB of guest RAM) a read
	for _, m := range mappings {
		if len(m) == 0 {
			continue
		}
		addr := uint64(reflect.ValueOf(m).Pointer())
		pages := (uint64(len(m)) + addr%page + page - 1) / page
		off := addr / page * 8
		for pages > 0 {
			n := min(pages, uint64(len(buf)/8))
			if _, err := f.ReadAt(buf[:n*8], int64(off)); err != nil {
				return 0, fmt.Errorf("metrics: pagemap: %w", err)
			}
			total += presentPages(buf[:n*8]) * page
			pages -= n
			off += n * 8
		}
	}
	return total, nil
}

// presentPages counts the pagemap entries (little-endian 64-bit words) in b
// whose "present" bit 63 is set.
func presentPages(b []byte) uint64 {
	var n uint64
	for i := 0; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&(1<<63) != 0 {
			n++
		}
	}
	return n
}

func (m *Machine) writeMetrics() error {
	r := m.report()
	if err := os.WriteFile(m.cfg.MetricsPath, r.appendJSON(nil), 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// appendJSON appends r as an indented JSON document and a newline, the same
// document encoding/json makes of it (TestReportJSON). It is written by hand
// because it runs when the VM stops, where encoding/json's reflection would
// page in some 140 KiB of code and type data just for this
// (docs/benchmarks.md, Memory).
func (r *Report) appendJSON(b []byte) []byte {
	w := jsonObject{b: append(b, '{')}
	w.str("stop_reason", r.StopReason)
	w.int("cpus", int64(r.CPUs))
	w.uint("memory_mib", r.MemoryMiB)
	w.float("start_to_entry_ms", r.StartToEntryMs)
	w.float("start_to_entry_cpu_ms", r.StartToEntryCPUMs)
	if r.StartToInitMs != 0 {
		w.float("start_to_init_ms", r.StartToInitMs)
	}
	if r.EntryToInitMs != 0 {
		w.float("entry_to_init_ms", r.EntryToInitMs)
	}
	w.uint("exits_total", r.ExitsTotal)
	if r.ExitsToInit != 0 {
		w.uint("exits_to_init", r.ExitsToInit)
	}
	w.key("vcpu_exits")
	if r.VCPUExits == nil {
		w.b = append(w.b, "null"...)
	} else {
		w.b = append(w.b, '[')
		for i, c := range r.VCPUExits {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = append(w.b, "\n    {"...)
			v := jsonObject{b: w.b, indent: "\n      "}
			v.uint("IO", c.IO)
			v.uint("MMIO", c.MMIO)
			v.uint("HLT", c.HLT)
			v.uint("Shutdown", c.Shutdown)
			v.uint("SystemEvent", c.SystemEvent)
			v.uint("InternalError", c.InternalError)
			v.uint("FailEntry", c.FailEntry)
			v.uint("Interrupted", c.Interrupted)
			v.uint("Unknown", c.Unknown)
			w.b = append(v.b, "\n    }"...)
		}
		if len(r.VCPUExits) > 0 {
			w.b = append(w.b, "\n  "...)
		}
		w.b = append(w.b, ']')
	}
	w.int("max_rss_kib", r.MaxRSSKiB)
	w.int("guest_rss_kib", r.GuestRSSKiB)
	return append(w.b, "\n}\n"...)
}

// jsonObject appends the members of one JSON object, each on its own line.
type jsonObject struct {
	b      []byte
	indent string // before each member; "\n  " if empty
	n      int    // members so far
}

func (w *jsonObject) key(k string) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
	if w.indent == "" {
		w.b = append(w.b, "\n  "...)
	} else {
		w.b = append(w.b, w.indent...)
	}
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ": "...)
}

func (w *jsonObject) str(k, v string) { w.key(k); w.b = appendJSONString(w.b, v) }
func (w *jsonObject) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}
func (w *jsonObject) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

// float appends v as encoding/json does for the values metrics hold
// (finite; plain notation from 1e-6 up to 1e21, exponent otherwise).
func (w *jsonObject) float(k string, v float64) {
	w.key(k)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		w.b = append(w.b, '0')
		return
	}
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		w.b = strconv.AppendFloat(w.b, v, 'e', -1, 64)
		if n := len(w.b); w.b[n-4] == 'e' && w.b[n-3] == '-' && w.b[n-2] == '0' {
			w.b = append(w.b[:n-2], w.b[n-1]) // e-07 -> e-7, as encoding/json writes it
		}
		return
	}
	w.b = strconv.AppendFloat(w.b, v, 'f', -1, 64)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, other bytes as they are.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
