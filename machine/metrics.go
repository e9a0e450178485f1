package machine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	virtionet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/rng"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
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
	markerExits uint64            // exits of all vCPUs when the marker was written
	markerKVM   map[string]uint64 // kvmExitStats when the marker was written
	phases      []Phase           // start-up steps, in order (written by build only)
	built       time.Time         // end of build

	// Opened by openMetrics before the VM runs, written when it stops:
	// nothing is opened afterwards (the VMM may be confined by then).
	out     *os.File // Config.MetricsPath, truncated
	pagemap *os.File // /proc/self/pagemap, for GuestRSSKiB; nil if unreadable
}

// openMetrics opens the metrics file (created or truncated now, written
// when the VM stops) and /proc/self/pagemap, and registers both for Close.
func (m *Machine) openMetrics() error {
	if m.cfg.MetricsPath == "" {
		return nil
	}
	out, err := os.OpenFile(m.cfg.MetricsPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("--metrics-file: %w", err)
	}
	m.metrics.out = out
	m.closers = append(m.closers, out)
	if pm, err := os.Open("/proc/self/pagemap"); err == nil {
		m.metrics.pagemap = pm
		m.closers = append(m.closers, pm)
	} else {
		m.log.Warn("metrics: guest_rss_kib will be 0", "err", err)
	}
	return nil
}

// Phase is one step of the VMM's start-up and its wall time.
type Phase struct {
	Name string  `json:"name"`
	Ms   float64 `json:"ms"`
}

func (mt *metrics) markEntry(start time.Time) {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	mt.mu.Lock()
	defer mt.mu.Unlock()
	mt.entry = time.Now()
	mt.entryCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	mt.sinceStart = mt.entry.Sub(start)
	if !mt.built.IsZero() {
		mt.phases = append(mt.phases, Phase{Name: "vcpus_run", Ms: ms(mt.entry.Sub(mt.built))})
	}
}

// markBoot records a write to the boot-marker port and reports whether it
// was the first.
func (mt *metrics) markBoot(at time.Time, exits uint64, kvmExits map[string]uint64) bool {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	mt.markerCount++
	if mt.markerCount > 1 {
		return false
	}
	mt.marker = at
	mt.markerExits = exits
	mt.markerKVM = kvmExits
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

// kvmExitStats sums KVM's exit counters over the vCPUs: "exits", every
// VM exit including those KVM handled without the VMM (CPUID, MSRs,
// nested page faults, host interrupts, ...), and the kinds KVM counts
// separately ("io_exits", "mmio_exits", "halt_exits", "irq_exits" for
// host interrupts, ...). nil without KVM statistics.
func (m *Machine) kvmExitStats() map[string]uint64 {
	if len(m.vcpuStats) == 0 {
		return nil
	}
	sum := map[string]uint64{}
	for _, s := range m.vcpuStats {
		stats, err := s.Read()
		if err != nil {
			m.log.Debug("metrics: read KVM statistics", "err", err)
			return nil
		}
		for _, st := range stats {
			if st.Name == "exits" || strings.HasSuffix(st.Name, "_exits") {
				sum[st.Name] += st.Value
			}
		}
	}
	return sum
}

// Report is the JSON document written to Config.MetricsPath.
type Report struct {
	StopReason        string  `json:"stop_reason"`
	CPUs              int     `json:"cpus"`
	MemoryMiB         uint64  `json:"memory_mib"`
	StartToEntryMs    float64 `json:"start_to_entry_ms"`
	StartToEntryCPUMs float64 `json:"start_to_entry_cpu_ms"`
	// StartPhases splits start_to_entry_ms: "process" (from the VMM's
	// start to building the VM), then each build step, then "vcpus_run"
	// (starting the vCPU threads up to the first KVM_RUN).
	StartPhases []Phase `json:"start_phases,omitempty"`
	// KernelLoader is how the kernel was loaded (LoaderUnpacked,
	// LoaderBzImage, LoaderPVH); KASLR whether vmm placed it at random.
	KernelLoader  string           `json:"kernel_loader"`
	KASLR         bool             `json:"kaslr,omitempty"`
	StartToInitMs float64          `json:"start_to_init_ms,omitempty"`
	EntryToInitMs float64          `json:"entry_to_init_ms,omitempty"`
	ExitsTotal    uint64           `json:"exits_total"`
	ExitsToInit   uint64           `json:"exits_to_init,omitempty"`
	VCPUExits     []kvm.ExitCounts `json:"vcpu_exits"`
	// KVMExitsToInit and KVMExitsTotal count every VM exit, also those
	// KVM handled in the kernel, where ExitsToInit and ExitsTotal count
	// the exits to the VMM only; KVMExitStats* are KVM's own breakdown
	// (see kvmExitStats). Absent where the kernel has no KVM_GET_STATS_FD.
	KVMExitsToInit     uint64            `json:"kvm_exits_to_init,omitempty"`
	KVMExitsTotal      uint64            `json:"kvm_exits_total,omitempty"`
	KVMExitStatsToInit map[string]uint64 `json:"kvm_exit_stats_to_init,omitempty"`
	KVMExitStats       map[string]uint64 `json:"kvm_exit_stats,omitempty"`
	MaxRSSKiB          int64             `json:"max_rss_kib"`
	// GuestRSSKiB is the guest RAM resident in this process when the VM
	// stopped (present pages in /proc/self/pagemap): the guest memory
	// touched, so MaxRSSKiB - GuestRSSKiB estimates the VMM's own overhead.
	// Zero if pagemap could not be read.
	GuestRSSKiB int64 `json:"guest_rss_kib"`
	// Disks and Nets are the virtio devices' counters, in --disk and --net
	// order: requests and bytes, frames and bytes each way, and what was
	// dropped or refused (a guest's malformed chains among them).
	Disks   []blk.Stats       `json:"disks,omitempty"`
	Nets    []virtionet.Stats `json:"nets,omitempty"`
	RNG     *rng.Stats        `json:"rng,omitempty"`     // with --rng
	Balloon *balloon.Stats    `json:"balloon,omitempty"` // with --balloon
	Vsock   *vsock.Stats      `json:"vsock,omitempty"`   // with --vsock
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (m *Machine) report() Report {
	mt := &m.metrics
	mt.mu.Lock()
	defer mt.mu.Unlock()
	// m.result is written before stopped closes; a running VM (the
	// control socket's status) has no stop reason yet.
	reason := ""
	select {
	case <-m.stopped:
		reason = m.result.Reason.String()
	default:
	}
	r := Report{
		StopReason: reason, CPUs: m.cfg.CPUs, MemoryMiB: m.cfg.MemoryMiB,
		StartToEntryMs: ms(mt.sinceStart), StartToEntryCPUMs: ms(mt.entryCPU),
		ExitsTotal: m.exitsSoFar(), ExitsToInit: mt.markerExits,
		StartPhases:  mt.phases,
		KernelLoader: m.kernelLoader, KASLR: m.kaslr,
	}
	r.KVMExitStats, r.KVMExitStatsToInit = m.kvmExitStats(), mt.markerKVM
	r.KVMExitsTotal, r.KVMExitsToInit = r.KVMExitStats["exits"], r.KVMExitStatsToInit["exits"]
	if !mt.marker.IsZero() {
		r.StartToInitMs = ms(mt.marker.Sub(m.start))
		r.EntryToInitMs = ms(mt.marker.Sub(mt.entry))
	}
	for _, c := range m.vcpus {
		r.VCPUExits = append(r.VCPUExits, c.ExitCounts())
	}
	for _, d := range m.disks {
		r.Disks = append(r.Disks, d.Stats())
	}
	for _, n := range m.nets {
		r.Nets = append(r.Nets, n.Stats())
	}
	if m.rng != nil {
		s := m.rng.Stats()
		r.RNG = &s
	}
	if m.balloon != nil {
		s := m.balloon.Stats()
		r.Balloon = &s
	}
	if m.vsock != nil {
		s := m.vsock.Stats()
		r.Vsock = &s
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		r.MaxRSSKiB = ru.Maxrss
	}
	if m.mem != nil && mt.pagemap != nil {
		var hosts [][]byte
		for _, reg := range m.mem.Regions() {
			hosts = append(hosts, reg.Host())
		}
		if n, err := residentBytes(mt.pagemap, hosts); err == nil {
			r.GuestRSSKiB = int64(n >> 10)
		}
	}
	return r
}

// residentBytes counts the bytes of the given page-aligned host buffers
// (guest RAM regions) that are mapped to memory, from pagemap, this
// process's /proc/self/pagemap (bit 63, "page present"). reflect gives
// their addresses without unsafe. Pages the guest has only read may map
// the shared zero page; they count.
func residentBytes(pagemap io.ReaderAt, mappings [][]byte) (uint64, error) {
	page := uint64(unix.Getpagesize())
	var total uint64
	buf := make([]byte, 8*4096)
	for _, m := range mappings {
		if len(m) == 0 {
			continue
		}
		addr := uint64(reflect.ValueOf(m).Pointer())
		pages := (uint64(len(m)) + addr%page + page - 1) / page
		off := addr / page * 8
		for pages > 0 {
			n := min(pages, uint64(len(buf)/8))
			if _, err := pagemap.ReadAt(buf[:n*8], int64(off)); err != nil {
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
	b, err := json.MarshalIndent(m.report(), "", "  ")
	if err != nil {
		return err
	}
	if _, err := m.metrics.out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
