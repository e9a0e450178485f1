package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Dist summarises one sample: median and the 10th and 90th percentiles
// (linear interpolation between order statistics).
type Dist struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P10    float64 `json:"p10"`
	P90    float64 `json:"p90"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// FlavourSummary is the reduced result of one boot flavour.
type FlavourSummary struct {
	Name     string `json:"name"`
	OK       int    `json:"ok"`     // measured runs that reached the marker, passed and exited 0
	Failed   int    `json:"failed"` // measured runs that did not
	MarkerMs Dist   `json:"marker_ms"`
	ExitMs   Dist   `json:"exit_ms"`
	// GuestUptimeS is the guest kernel's own uptime at the marker.
	GuestUptimeS Dist `json:"guest_uptime_s"`
	MaxRSSMiB    Dist `json:"max_rss_mib"`
	GuestRSSMiB  Dist `json:"guest_rss_mib"`
	// OverheadMiB is, per run, max RSS minus guest RAM resident.
	OverheadMiB Dist `json:"overhead_mib"`
	// OwnRSSMiB is, per run, the largest smaps Rss seen outside the guest
	// RAM block: the overhead from page tables instead of ru_maxrss.
	OwnRSSMiB Dist `json:"own_rss_mib_smaps"`
	// MarkerRatio and ExitRatio are ours' median divided by this flavour's.
	MarkerRatio float64 `json:"ours_over_this_marker"`
	ExitRatio   float64 `json:"ours_over_this_exit"`
	// KVMExits are KVM's exit counters when the marker line came
	// (debugfs), by name: "exits" counts every VM exit, the others the
	// kinds KVM tells apart ("irq_exits": host interrupts). KVMExitRatio
	// is ours' median "exits" divided by this flavour's.
	KVMExits     map[string]Dist `json:"kvm_exits_at_marker,omitempty"`
	KVMExitRatio float64         `json:"ours_over_this_kvm_exits,omitempty"`
	// Ours only, from --metrics-file.
	Ours *OursSummary `json:"ours,omitempty"`
}

// OursSummary holds the medians of our VMM's own metrics.
type OursSummary struct {
	StartToEntryMs    Dist `json:"start_to_entry_ms"`
	StartToEntryCPUMs Dist `json:"start_to_entry_cpu_ms"`
	StartToInitMs     Dist `json:"start_to_init_ms"`
	EntryToInitMs     Dist `json:"entry_to_init_ms"`
	ExitsToInit       Dist `json:"exits_to_init"`
	ExitsTotal        Dist `json:"exits_total"`
	// KVMExitsToInit counts every VM exit to the marker's port write, from
	// KVM's statistics read by the VMM itself (kvm_exits_to_init).
	KVMExitsToInit Dist            `json:"kvm_exits_to_init,omitempty"`
	ExitsByKind    map[string]Dist `json:"exits_by_kind_whole_run"`
	GuestRSSMiB    Dist            `json:"guest_rss_mib_pagemap"`
	// StartPhasesMs splits start -> entry by step (machine.Report
	// start_phases); PhaseOrder is their order.
	StartPhasesMs map[string]Dist `json:"start_phases_ms,omitempty"`
	PhaseOrder    []string        `json:"start_phase_order,omitempty"`
}

// BlkSummary is the reduced disk benchmark of one flavour.
type BlkSummary struct {
	Name        string  `json:"name"`
	OK          int     `json:"ok"`
	Failed      int     `json:"failed"`
	ReadMBs     Dist    `json:"read_mb_s"` // MB = 10^6 bytes
	WriteMBs    Dist    `json:"write_mb_s"`
	ReadOfHost  float64 `json:"read_over_host_dd"` // median / host dd's median
	WriteOfHost float64 `json:"write_over_host_dd"`
	ReadOfQEMU  float64 `json:"read_over_qemu,omitempty"` // ours only
	WriteOfQEMU float64 `json:"write_over_qemu,omitempty"`
}

// Pair compares the medians of two flavours: A's divided by B's.
type Pair struct {
	A           string  `json:"a"`
	B           string  `json:"b"`
	MarkerRatio float64 `json:"marker_ratio"`
	ExitRatio   float64 `json:"exit_ratio"`
}

// Summary is the reduced form of a Raw.
type Summary struct {
	Pairs    []Pair           `json:"pairs"`
	Flavours []FlavourSummary `json:"flavours"`
	Blk      []BlkSummary     `json:"blk"`
	Targets  []Target         `json:"targets"`
}

// Target is one of issue 6's targets as this run measured it: Value
// against Limit, met when it is at most (or, with AtLeast, at least) the
// limit. The benchmark reports them; nothing asserts them.
type Target struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Limit   float64 `json:"limit"`
	AtLeast bool    `json:"at_least,omitempty"`
	Met     bool    `json:"met"`
}

// Results is the document written to results.json.
type Results struct {
	Summary Summary `json:"summary"`
	Raw     *Raw    `json:"raw"`
}

func reportMain(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "-", "raw JSON from \"lanebench run\" (- for stdin)")
	outDir := fs.String("out", "bench/out", "directory for results.json and boot-times.svg")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		defer f.Close()
		r = f
	}
	raw, err := readRaw(r)
	if err != nil {
		return err
	}
	sum := summarize(raw)
	printTable(os.Stdout, raw, sum)
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	b, err := json.MarshalIndent(Results{Summary: sum, Raw: raw}, "", " ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*outDir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*outDir, "boot-times.svg"), []byte(bootSVG(raw, sum)), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(*outDir, "results.json"), filepath.Join(*outDir, "boot-times.svg"))
	return nil
}

// readRaw decodes and checks the document "lanebench run" printed. The lane
// may put other text before it; decoding starts at the first line that is
// exactly "{".
func readRaw(r io.Reader) (*Raw, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("report: read: %w", err)
	}
	s := string(b)
	if i := strings.Index(s, "\n{\n"); !strings.HasPrefix(s, "{\n") && i >= 0 {
		s = s[i+1:]
	}
	// The lane writes the document after the boots and again at the end;
	// the last one that is whole wins (a lane that died mid-document
	// leaves a truncated one behind).
	var last *Raw
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var raw Raw
		err := dec.Decode(&raw)
		if err == nil {
			last = &raw
			continue
		}
		if last == nil {
			return nil, fmt.Errorf("report: decode the lane's JSON: %w", err)
		}
		break
	}
	if len(last.Flavours) == 0 || len(last.Boots) == 0 {
		return nil, errors.New("report: the lane's JSON holds no boots")
	}
	return last, nil
}

// dist summarises xs; NaN-free, empty input gives a zero Dist.
func dist(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Dist{N: len(s), Median: quantile(s, 0.5), P10: quantile(s, 0.1), P90: quantile(s, 0.9), Min: s[0], Max: s[len(s)-1]}
}

// quantile of sorted s, linear between order statistics (Hyndman-Fan 7).
func quantile(s []float64, q float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	h := q * float64(len(s)-1)
	lo := math.Floor(h)
	i := int(lo)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (h-lo)*(s[i+1]-s[i])
}

func ratio(a, b float64) float64 {
	if b == 0 || a == 0 {
		return 0
	}
	return a / b
}

// oursMetrics is the part of machine.Report the summary reads.
type oursMetrics struct {
	StartToEntryMs    float64                      `json:"start_to_entry_ms"`
	StartToEntryCPUMs float64                      `json:"start_to_entry_cpu_ms"`
	StartToInitMs     float64                      `json:"start_to_init_ms"`
	EntryToInitMs     float64                      `json:"entry_to_init_ms"`
	ExitsTotal        float64                      `json:"exits_total"`
	ExitsToInit       float64                      `json:"exits_to_init"`
	KVMExitsToInit    float64                      `json:"kvm_exits_to_init"`
	VCPUExits         []map[string]json.RawMessage `json:"vcpu_exits"`
	GuestRSSKiB       float64                      `json:"guest_rss_kib"`
	StartPhases       []struct {
		Name string  `json:"name"`
		Ms   float64 `json:"ms"`
	} `json:"start_phases"`
}

func summarize(raw *Raw) Summary {
	var sum Summary
	for _, f := range raw.Flavours {
		fsum := FlavourSummary{Name: f.Name}
		var marker, exit, uptime, maxRSS, guest, over, own []float64
		var om struct{ entry, entryCPU, init, entryInit, toInit, kvmToInit, total, guest []float64 }
		kinds := map[string][]float64{}
		kvmExits := map[string][]float64{}
		phases := map[string][]float64{}
		var phaseOrder []string
		for _, b := range raw.Boots {
			if b.Flavour != f.Name || b.Round < 0 {
				continue
			}
			if b.Error != "" || b.MarkerMs <= 0 {
				fsum.Failed++
				continue
			}
			fsum.OK++
			for k, n := range b.KVMExits {
				kvmExits[k] = append(kvmExits[k], float64(n))
			}
			marker = append(marker, b.MarkerMs)
			exit = append(exit, b.ExitMs)
			uptime = append(uptime, b.MarkerUptimeS)
			maxRSS = append(maxRSS, float64(b.MaxRSSKiB)/1024)
			g := float64(b.GuestRSSKiB)
			var m oursMetrics
			if len(b.Metrics) > 0 && json.Unmarshal(b.Metrics, &m) == nil {
				om.entry = append(om.entry, m.StartToEntryMs)
				om.entryCPU = append(om.entryCPU, m.StartToEntryCPUMs)
				om.init = append(om.init, m.StartToInitMs)
				om.entryInit = append(om.entryInit, m.EntryToInitMs)
				om.toInit = append(om.toInit, m.ExitsToInit)
				if m.KVMExitsToInit > 0 {
					om.kvmToInit = append(om.kvmToInit, m.KVMExitsToInit)
				}
				om.total = append(om.total, m.ExitsTotal)
				om.guest = append(om.guest, m.GuestRSSKiB/1024)
				for _, p := range m.StartPhases {
					if _, seen := phases[p.Name]; !seen {
						phaseOrder = append(phaseOrder, p.Name)
					}
					phases[p.Name] = append(phases[p.Name], p.Ms)
				}
				byKind := map[string]float64{}
				for _, v := range m.VCPUExits {
					for k, raw := range v {
						var n float64
						if json.Unmarshal(raw, &n) == nil {
							byKind[k] += n
						}
					}
				}
				for k, n := range byKind {
					kinds[k] = append(kinds[k], n)
				}
				// Our own count at stop is exact; prefer it to the sample.
				if m.GuestRSSKiB > 0 {
					g = m.GuestRSSKiB
				}
			}
			guest = append(guest, g/1024)
			over = append(over, float64(b.MaxRSSKiB)/1024-g/1024)
			if b.OwnRSSKiB > 0 {
				own = append(own, float64(b.OwnRSSKiB)/1024)
			}
		}
		fsum.MarkerMs, fsum.ExitMs, fsum.GuestUptimeS = dist(marker), dist(exit), dist(uptime)
		fsum.MaxRSSMiB, fsum.GuestRSSMiB, fsum.OverheadMiB = dist(maxRSS), dist(guest), dist(over)
		fsum.OwnRSSMiB = dist(own)
		if len(kvmExits) > 0 {
			fsum.KVMExits = map[string]Dist{}
			for k, v := range kvmExits {
				fsum.KVMExits[k] = dist(v)
			}
		}
		if len(om.entry) > 0 {
			o := &OursSummary{
				StartToEntryMs: dist(om.entry), StartToEntryCPUMs: dist(om.entryCPU),
				StartToInitMs: dist(om.init), EntryToInitMs: dist(om.entryInit),
				ExitsToInit: dist(om.toInit), ExitsTotal: dist(om.total), GuestRSSMiB: dist(om.guest),
				KVMExitsToInit: dist(om.kvmToInit),
				ExitsByKind:    map[string]Dist{},
			}
			for k, v := range kinds {
				o.ExitsByKind[k] = dist(v)
			}
			if len(phaseOrder) > 0 {
				o.StartPhasesMs, o.PhaseOrder = map[string]Dist{}, phaseOrder
				for k, v := range phases {
					o.StartPhasesMs[k] = dist(v)
				}
			}
			fsum.Ours = o
		}
		sum.Flavours = append(sum.Flavours, fsum)
	}
	var ours *FlavourSummary
	for i := range sum.Flavours {
		if sum.Flavours[i].Name == "ours" {
			ours = &sum.Flavours[i]
		}
	}
	if ours != nil {
		for i := range sum.Flavours {
			f := &sum.Flavours[i]
			f.MarkerRatio = ratio(ours.MarkerMs.Median, f.MarkerMs.Median)
			f.ExitRatio = ratio(ours.ExitMs.Median, f.ExitMs.Median)
			f.KVMExitRatio = ratio(ours.KVMExits["exits"].Median, f.KVMExits["exits"].Median)
		}
	}
	byName := map[string]*FlavourSummary{}
	for i := range sum.Flavours {
		byName[sum.Flavours[i].Name] = &sum.Flavours[i]
	}
	// The comparisons made when both flavours ran.
	pairs := [][2]string{{"ours", "qemu-q35"}, {"ours", "qemu-microvm"}, {"ours-pvh", "qemu-microvm"}, {"ours-pvh", "qemu-q35"}, {"ours-pvh", "ours"},
		{"ours-guestdc", "qemu-q35"}, {"ours", "ours-guestdc"},
		{"ours-micro", "qemu-q35-micro"}, {"ours-pvh-micro", "qemu-microvm-micro"}, {"ours-pvh-micro", "qemu-q35-micro"}}
	for _, p := range pairs {
		a, b := byName[p[0]], byName[p[1]]
		if a == nil || b == nil || a.OK == 0 || b.OK == 0 {
			continue
		}
		sum.Pairs = append(sum.Pairs, Pair{A: p[0], B: p[1],
			MarkerRatio: ratio(a.MarkerMs.Median, b.MarkerMs.Median), ExitRatio: ratio(a.ExitMs.Median, b.ExitMs.Median)})
	}
	sum.Blk = summarizeBlk(raw)
	sum.Targets = targets(sum, byName)
	return sum
}

// targets checks this run's medians against issue 6's targets: boot to
// the init marker at most 0.5 of QEMU's (each pair that ran), at most
// 2,000 VM exits to init (all of them, KVM's count), at most 5 MiB of VMM
// memory beyond guest RAM, and disk throughput at least QEMU's.
func targets(sum Summary, byName map[string]*FlavourSummary) []Target {
	var ts []Target
	add := func(name string, v, limit float64, atLeast bool) {
		if v == 0 {
			return
		}
		met := v <= limit
		if atLeast {
			met = v >= limit
		}
		ts = append(ts, Target{Name: name, Value: v, Limit: limit, AtLeast: atLeast, Met: met})
	}
	for _, p := range sum.Pairs {
		// ours-guestdc shows the old way of booting, for comparison only.
		if strings.HasPrefix(p.A, "ours") && p.A != "ours-guestdc" && strings.HasPrefix(p.B, "qemu") {
			add("boot "+p.A+" / "+p.B, p.MarkerRatio, 0.5, false)
		}
	}
	for _, n := range []string{"ours", "ours-micro"} {
		if f := byName[n]; f != nil {
			add("VM exits to init, "+n, f.KVMExits["exits"].Median, 2000, false)
			add("VMM overhead MiB, "+n, f.OverheadMiB.Median, 5, false)
		}
	}
	for _, b := range sum.Blk {
		if b.Name == "ours" {
			add("disk read / QEMU's", b.ReadOfQEMU, 1, true)
			add("disk write / QEMU's", b.WriteOfQEMU, 1, true)
		}
	}
	return ts
}

func summarizeBlk(raw *Raw) []BlkSummary {
	var names []string
	for _, r := range raw.BlkRuns {
		if !slices.Contains(names, r.Flavour) {
			names = append(names, r.Flavour)
		}
	}
	var out []BlkSummary
	for _, n := range names {
		s := BlkSummary{Name: n}
		var rd, wr []float64
		for _, r := range raw.BlkRuns {
			if r.Flavour != n {
				continue
			}
			if r.Error != "" || r.ReadS <= 0 || r.WriteS <= 0 {
				s.Failed++
				continue
			}
			s.OK++
			rd = append(rd, float64(r.ReadBytes)/r.ReadS/1e6)
			wr = append(wr, float64(r.WriteBytes)/r.WriteS/1e6)
		}
		s.ReadMBs, s.WriteMBs = dist(rd), dist(wr)
		out = append(out, s)
	}
	find := func(name string) *BlkSummary {
		for i := range out {
			if out[i].Name == name {
				return &out[i]
			}
		}
		return nil
	}
	host, qemu, ours := find("host-dd"), find("qemu-q35"), find("ours")
	for i := range out {
		if host != nil {
			out[i].ReadOfHost = ratio(out[i].ReadMBs.Median, host.ReadMBs.Median)
			out[i].WriteOfHost = ratio(out[i].WriteMBs.Median, host.WriteMBs.Median)
		}
	}
	if ours != nil && qemu != nil {
		ours.ReadOfQEMU = ratio(ours.ReadMBs.Median, qemu.ReadMBs.Median)
		ours.WriteOfQEMU = ratio(ours.WriteMBs.Median, qemu.WriteMBs.Median)
	}
	return out
}

func printTable(w io.Writer, raw *Raw, sum Summary) {
	fmt.Fprintf(w, "Benchmark %s, nested lane (test host %s, %d CPUs), guest %d MiB, 1 vCPU, %d interleaved rounds, %.0f s\n",
		raw.Date, raw.LaneKernel, raw.LaneCPUs, raw.GuestMiB, raw.Rounds, raw.ElapsedS)
	fmt.Fprintf(w, "cmdline %q; times from process start, median [p10 .. p90]\n\n", raw.Cmdline)
	fmt.Fprintf(w, "%-13s %5s  %-26s %-26s %11s %11s  %9s\n", "flavour", "ok", "to init marker, ms", "to exit, ms", "ours/this", "ours/this", "guest up")
	fmt.Fprintf(w, "%-13s %5s  %-26s %-26s %11s %11s  %9s\n", "", "", "", "", "(marker)", "(exit)", "s")
	for _, f := range sum.Flavours {
		fmt.Fprintf(w, "%-13s %2d/%-2d  %-26s %-26s %11s %11s  %9.2f\n", f.Name, f.OK, f.OK+f.Failed,
			fmtDist(f.MarkerMs, 0), fmtDist(f.ExitMs, 0), fmtRatio(f.MarkerRatio), fmtRatio(f.ExitRatio), f.GuestUptimeS.Median)
	}
	fmt.Fprintf(w, "\nratios of medians:")
	for _, p := range sum.Pairs {
		fmt.Fprintf(w, "  %s/%s %.2f (marker) %.2f (exit);", p.A, p.B, p.MarkerRatio, p.ExitRatio)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\nmemory (MiB, median): %-13s %9s %13s %20s %20s\n", "flavour", "max RSS", "guest RAM", "overhead", "own Rss (smaps)")
	for _, f := range sum.Flavours {
		ownRSS := "-"
		if f.OwnRSSMiB.N > 0 {
			ownRSS = fmtDist(f.OwnRSSMiB, 1)
		}
		fmt.Fprintf(w, "                      %-13s %9.1f %13.1f %20s %20s\n", f.Name, f.MaxRSSMiB.Median, f.GuestRSSMiB.Median, fmtDist(f.OverheadMiB, 1), ownRSS)
	}
	printKVMExits(w, sum)
	for _, f := range sum.Flavours {
		o := f.Ours
		if o == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s, from --metrics-file (median [p10 .. p90]):\n", f.Name)
		fmt.Fprintf(w, "  start -> guest entry        %s ms wall, %s ms CPU\n", fmtDist(o.StartToEntryMs, 1), fmtDist(o.StartToEntryCPUMs, 1))
		if len(o.PhaseOrder) > 0 {
			var ps []string
			for _, name := range o.PhaseOrder {
				ps = append(ps, fmt.Sprintf("%s %.1f", name, o.StartPhasesMs[name].Median))
			}
			fmt.Fprintf(w, "  start -> entry by phase     %s (medians, ms)\n", strings.Join(ps, ", "))
		}
		fmt.Fprintf(w, "  start -> init marker (port) %s ms; entry -> marker %s ms\n", fmtDist(o.StartToInitMs, 0), fmtDist(o.EntryToInitMs, 0))
		fmt.Fprintf(w, "  exits to userspace to init  %s; whole run %s\n", fmtDist(o.ExitsToInit, 0), fmtDist(o.ExitsTotal, 0))
		if o.KVMExitsToInit.N > 0 {
			fmt.Fprintf(w, "  all VM exits to init        %s (KVM's statistics, read by vmm at the marker)\n", fmtDist(o.KVMExitsToInit, 0))
		}
		var ks []string
		for k, d := range o.ExitsByKind {
			if d.Max > 0 {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		for _, k := range ks {
			fmt.Fprintf(w, "    %-14s %s (whole run)\n", k, fmtDist(o.ExitsByKind[k], 0))
		}
	}
	if len(sum.Blk) > 0 {
		fmt.Fprintf(w, "\ndisk: %d MiB sequential, 1 MiB blocks, guest dd iflag/oflag=direct on /dev/vda (%s)\n", raw.BlkMiB, raw.BlkCache)
		fmt.Fprintf(w, "%-10s %5s  %-24s %-24s %10s %10s %10s %10s\n", "flavour", "ok", "read MB/s", "write MB/s", "rd/host", "wr/host", "rd/qemu", "wr/qemu")
		for _, b := range sum.Blk {
			fmt.Fprintf(w, "%-10s %2d/%-2d  %-24s %-24s %10s %10s %10s %10s\n", b.Name, b.OK, b.OK+b.Failed,
				fmtDist(b.ReadMBs, 0), fmtDist(b.WriteMBs, 0), fmtRatio(b.ReadOfHost), fmtRatio(b.WriteOfHost),
				fmtRatio(b.ReadOfQEMU), fmtRatio(b.WriteOfQEMU))
		}
	}
	if len(sum.Targets) > 0 {
		fmt.Fprintf(w, "\nissue 6's targets, this run's medians (TCP throughput: scripts/bench-net):\n")
		for _, t := range sum.Targets {
			rel, verdict := "<=", "met"
			if t.AtLeast {
				rel = ">="
			}
			if !t.Met {
				verdict = "NOT met"
			}
			prec := 2
			if t.Value >= 100 {
				prec = 0
			}
			fmt.Fprintf(w, "  %-40s %9.*f  (target %s %g)  %s\n", t.Name, prec, t.Value, rel, t.Limit, verdict)
		}
	}
	for _, n := range raw.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, b := range raw.Boots {
		if b.Error != "" {
			fmt.Fprintf(w, "failed: %s round %d: %s\n", b.Flavour, b.Round, b.Error)
		}
	}
	for _, b := range raw.BlkRuns {
		if b.Error != "" {
			fmt.Fprintf(w, "failed: disk %s round %d: %s\n", b.Flavour, b.Round, b.Error)
		}
	}
}

func fmtDist(d Dist, prec int) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.*f [%.*f .. %.*f]", prec, d.Median, prec, d.P10, prec, d.P90)
}

func fmtRatio(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

// kvmExitColumns are the counters printed, in order, after "exits".
var kvmExitColumns = []string{"io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits", "signal_exits"}

// printKVMExits prints every flavour's VM exits to the marker as KVM
// counted them, when the lane had debugfs.
func printKVMExits(w io.Writer, sum Summary) {
	have := false
	for _, f := range sum.Flavours {
		have = have || f.KVMExits["exits"].N > 0
	}
	if !have {
		return
	}
	fmt.Fprintf(w, "\nVM exits to the init marker, all of them, as KVM counts them (debugfs; median):\n")
	fmt.Fprintf(w, "%-13s %8s %9s", "flavour", "exits", "ours/this")
	for _, c := range kvmExitColumns {
		fmt.Fprintf(w, " %11s", strings.TrimSuffix(c, "_exits"))
	}
	fmt.Fprintln(w)
	for _, f := range sum.Flavours {
		if f.KVMExits["exits"].N == 0 {
			continue
		}
		fmt.Fprintf(w, "%-13s %8.0f %9s", f.Name, f.KVMExits["exits"].Median, fmtRatio(f.KVMExitRatio))
		for _, c := range kvmExitColumns {
			fmt.Fprintf(w, " %11.0f", f.KVMExits[c].Median)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "(irq: host interrupts; the rest of \"exits\" are CPUID, MSR, control register and nested page fault exits KVM handled itself)\n")
}
