package main

import "encoding/json"

// Raw is what "lanebench run" prints: every measurement, unreduced.
type Raw struct {
	Date        string     `json:"date"`         // UTC, RFC 3339, when the lane run started
	LaneKernel  string     `json:"lane_kernel"`  // uname -r of the test host
	LaneCPUs    int        `json:"lane_cpus"`    // CPUs of the test host
	Rounds      int        `json:"rounds"`       // measured rounds of every boot flavour
	GuestMiB    int        `json:"guest_mib"`    // guest RAM of every boot
	Cmdline     string     `json:"cmdline"`      // guest kernel command line of the boot runs
	Flavours    []Flavour  `json:"flavours"`     // in the order of the first round
	Boots       []BootRun  `json:"boots"`        // in the order they ran
	BlkMiB      int        `json:"blk_mib"`      // bytes read and written per direction, in MiB
	BlkCache    string     `json:"blk_cache"`    // how the disk file is opened on the host side
	BlkRuns     []BlkRun   `json:"blk_runs"`     // in the order they ran
	Notes       []string   `json:"notes"`        // anything the run wants the reader to know
	ElapsedS    float64    `json:"elapsed_s"`    // wall time of the whole lane run
	BlkFlavours []BlkSetup `json:"blk_flavours"` // command lines of the disk runs
}

// Flavour names one VMM configuration and its command line.
type Flavour struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
}

// BlkSetup names one disk-benchmark configuration.
type BlkSetup struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
}

// BootRun is one boot of one flavour. Times are from just before the
// process was started.
type BootRun struct {
	Flavour string `json:"flavour"`
	Round   int    `json:"round"` // -1 for the warm-up round
	// MarkerMs is when the "VMM-INIT-MARKER" console line was read from the
	// process's stdout; 0 if it never came.
	MarkerMs float64 `json:"marker_ms"`
	// MarkerUptimeS is the guest's own /proc/uptime printed on that line.
	MarkerUptimeS float64 `json:"marker_uptime_s"`
	ExitMs        float64 `json:"exit_ms"` // process exit (guest power-off)
	ExitStatus    int     `json:"exit_status"`
	Passed        bool    `json:"passed"` // "VMM-TEST-RESULT <mode> PASS" was printed
	// MaxRSSKiB is the process's peak RSS (wait4 ru_maxrss).
	MaxRSSKiB int64 `json:"max_rss_kib"`
	// GuestRSSKiB is the largest Rss seen, while it ran, of its guest RAM
	// mappings in /proc/PID/smaps (sampled every SampleMs and at the
	// marker): the guest memory touched.
	GuestRSSKiB int64 `json:"guest_rss_kib"`
	// OwnRSSKiB is the largest Rss seen, in the same samples, of all its
	// other mappings (binary, libraries, heap, stacks): the process's own
	// memory measured from its page tables.
	OwnRSSKiB int64 `json:"own_rss_kib,omitempty"`
	Samples   int   `json:"samples"` // smaps samples taken
	// KVMExits are the process's VM exit counters in KVM's debugfs
	// ("exits": all of them; "io_exits", "irq_exits", ...: kinds KVM
	// counts), read when the marker line came; nil without debugfs.
	KVMExits map[string]uint64 `json:"kvm_exits_at_marker,omitempty"`
	// Metrics is the VMM's --metrics-file document (ours only).
	Metrics json.RawMessage `json:"metrics,omitempty"`
	Error   string          `json:"error,omitempty"`
	Tail    []string        `json:"tail,omitempty"` // last output lines, kept on failure
}

// BlkRun is one disk benchmark: a guest (or the test host itself) reading
// and then writing BlkMiB sequentially.
type BlkRun struct {
	Flavour    string   `json:"flavour"`
	Round      int      `json:"round"`
	ReadBytes  int64    `json:"read_bytes"`
	ReadS      float64  `json:"read_s"`
	WriteBytes int64    `json:"write_bytes"`
	WriteS     float64  `json:"write_s"`
	ExitMs     float64  `json:"exit_ms"` // process exit, from just before its start
	ExitStatus int      `json:"exit_status"`
	Error      string   `json:"error,omitempty"`
	Tail       []string `json:"tail,omitempty"`
}

// SampleMs is the smaps sampling period of a boot run.
const SampleMs = 200
