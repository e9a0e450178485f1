package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	d := dist([]float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5})
	if d.N != 10 || d.Median != 5.5 || d.Min != 1 || d.Max != 10 {
		t.Fatalf("dist = %+v", d)
	}
	if math.Abs(d.P10-1.9) > 1e-9 || math.Abs(d.P90-9.1) > 1e-9 {
		t.Fatalf("p10 %v p90 %v, want 1.9 and 9.1", d.P10, d.P90)
	}
	if d := dist([]float64{7}); d.Median != 7 || d.P10 != 7 || d.P90 != 7 {
		t.Fatalf("one sample: %+v", d)
	}
	if d := dist(nil); d.N != 0 {
		t.Fatalf("no samples: %+v", d)
	}
}

func TestParseSmaps(t *testing.T) {
	text := `55d4c0000000-55d4c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  60 kB
7f0000000000-7f0020000000 rw-p 00000000 00:00 0
Size:             524288 kB
KernelPageSize:        4 kB
Rss:              130600 kB
Pss:              130600 kB
7f0020000000-7f0020200000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                2048 kB
VmFlags: rd wr mr mw me ac sd
`
	r, ok := parseSmaps(strings.NewReader(text), 512*1024/2)
	if !ok || r.guest != 130600 || r.own != 60+2048 {
		t.Fatalf("parseSmaps = %+v, %v; want guest 130600, own 2108, true", r, ok)
	}
	if _, ok := parseSmaps(strings.NewReader(""), 1); ok {
		t.Fatal("empty smaps (a zombie) reported ok")
	}
}

func TestOutputLine(t *testing.T) {
	var o output
	if o.line("[    1.0] booting", time.Second) {
		t.Fatal("a kernel line was taken for the marker")
	}
	if !o.line("VMM-INIT-MARKER uptime=2.32", 3*time.Second) {
		t.Fatal("marker line not recognised")
	}
	if o.line("VMM-INIT-MARKER uptime=9.99", 4*time.Second) {
		t.Fatal("second marker line counted")
	}
	o.line("VMM-BLKBENCH read bytes=268435456 seconds=1.25", 5*time.Second)
	o.line("VMM-BLKBENCH write bytes=-1 seconds=1.25", 5*time.Second)
	o.line("VMM-TEST-RESULT boot PASS", 6*time.Second)
	if o.markerAt != 3*time.Second || o.uptime != 2.32 || !o.passed {
		t.Fatalf("marker %v uptime %v passed %v", o.markerAt, o.uptime, o.passed)
	}
	if got := o.blk["read"]; got != [2]float64{268435456, 1.25} {
		t.Fatalf("read = %v", got)
	}
	if _, ok := o.blk["write"]; ok {
		t.Fatal("negative byte count accepted")
	}
}

func TestParseBlkLine(t *testing.T) {
	for _, s := range []string{"", "VMM-BLKBENCH", "VMM-BLKBENCH read bytes=1", "VMM-BLKBENCH erase bytes=1 seconds=1",
		"VMM-BLKBENCH read bytes=x seconds=1", "VMM-BLKBENCH read seconds=1 bytes=1", "VMM-BLKBENCH read bytes=NaN seconds=1"} {
		if _, _, _, ok := parseBlkLine(s); ok {
			t.Errorf("parseBlkLine(%q) accepted", s)
		}
	}
}

func sampleRaw() *Raw {
	m := json.RawMessage(`{"start_to_entry_ms":250,"start_to_entry_cpu_ms":320,"start_to_init_ms":5300,"entry_to_init_ms":5050,
		"exits_total":487,"exits_to_init":351,"vcpu_exits":[{"IO":486,"Interrupted":1}],"guest_rss_kib":124324,
		"start_phases":[{"name":"process","ms":3},{"name":"kvm","ms":20},{"name":"load","ms":120}]}`)
	r := &Raw{Date: "2026-11-26T00:00:00Z", Rounds: 2, GuestMiB: 512, Cmdline: bootCmdline,
		Flavours: []Flavour{{Name: "ours"}, {Name: "qemu-q35"}}}
	for i := -1; i < 2; i++ {
		r.Boots = append(r.Boots,
			BootRun{Flavour: "ours", Round: i, MarkerMs: 5000 + float64(i)*100, ExitMs: 5200, MaxRSSKiB: 130000, GuestRSSKiB: 124000,
				OwnRSSKiB: 5000 + 1024*int64(i), Metrics: m, Passed: true,
				KVMExits: map[string]uint64{"exits": 3000 + 100*uint64(i+1), "io_exits": 351}},
			BootRun{Flavour: "qemu-q35", Round: i, MarkerMs: 7500, ExitMs: 7600, MaxRSSKiB: 180000, GuestRSSKiB: 127000, Passed: true,
				KVMExits: map[string]uint64{"exits": 26000, "io_exits": 19000}})
	}
	r.Boots = append(r.Boots, BootRun{Flavour: "qemu-q35", Round: 1, Error: "no VMM-INIT-MARKER line"})
	r.BlkMiB = 256
	r.BlkRuns = []BlkRun{
		{Flavour: "ours", ReadBytes: 256 << 20, ReadS: 1, WriteBytes: 256 << 20, WriteS: 2},
		{Flavour: "qemu-q35", ReadBytes: 256 << 20, ReadS: 2, WriteBytes: 256 << 20, WriteS: 2},
		{Flavour: "host-dd", ReadBytes: 256 << 20, ReadS: 0.5, WriteBytes: 256 << 20, WriteS: 1},
	}
	return r
}

func TestSummarize(t *testing.T) {
	s := summarize(sampleRaw())
	ours, q := s.Flavours[0], s.Flavours[1]
	if ours.OK != 2 || q.OK != 2 || q.Failed != 1 {
		t.Fatalf("ok/failed: ours %d/%d, q35 %d/%d", ours.OK, ours.Failed, q.OK, q.Failed)
	}
	if ours.MarkerMs.Median != 5050 || math.Abs(q.MarkerRatio-5050.0/7500) > 1e-9 {
		t.Fatalf("ours marker median %v, ratio %v", ours.MarkerMs.Median, q.MarkerRatio)
	}
	// Ours' guest RAM comes from its own pagemap count.
	if want := (130000.0 - 124324) / 1024; math.Abs(ours.OverheadMiB.Median-want) > 1e-9 {
		t.Fatalf("ours overhead %v MiB, want %v", ours.OverheadMiB.Median, want)
	}
	// Own Rss from smaps, rounds 0 and 1 only; QEMU's runs have none.
	if want := (5000.0 + 512) / 1024; ours.OwnRSSMiB.N != 2 || math.Abs(ours.OwnRSSMiB.Median-want) > 1e-9 || q.OwnRSSMiB.N != 0 {
		t.Fatalf("own rss: ours %+v (want median %v), q35 %+v", ours.OwnRSSMiB, want, q.OwnRSSMiB)
	}
	if ours.Ours == nil || ours.Ours.ExitsByKind["IO"].Median != 486 || ours.Ours.ExitsToInit.Median != 351 {
		t.Fatalf("ours metrics: %+v", ours.Ours)
	}
	if o := ours.Ours; strings.Join(o.PhaseOrder, " ") != "process kvm load" || o.StartPhasesMs["load"].Median != 120 {
		t.Fatalf("start phases %v %+v", o.PhaseOrder, o.StartPhasesMs)
	}
	if q.Ours != nil {
		t.Fatal("QEMU has our metrics")
	}
	// KVM's exit counters, warm-up rounds left out: ours 3100 and 3200.
	if ours.KVMExits["exits"].Median != 3150 || q.KVMExits["io_exits"].Median != 19000 || math.Abs(q.KVMExitRatio-3150.0/26000) > 1e-9 {
		t.Fatalf("KVM exits: ours %+v, q35 %+v, ratio %v", ours.KVMExits, q.KVMExits, q.KVMExitRatio)
	}
	b := s.Blk
	if len(b) != 3 || b[0].ReadOfQEMU != 2 || b[0].WriteOfQEMU != 1 || b[1].ReadOfHost != 0.25 {
		t.Fatalf("blk summary: %+v", b)
	}
	// Issue 6's targets: boot 0.67 > 0.5, 3,150 exits > 2,000, overhead
	// 5.5 MiB > 5; disk read 2 and write 1 >= 1.
	met := map[string]bool{}
	for _, tg := range s.Targets {
		met[tg.Name] = tg.Met
	}
	want := map[string]bool{"boot ours / qemu-q35": false, "VM exits to init, ours": false, "VMM overhead MiB, ours": false,
		"disk read / QEMU's": true, "disk write / QEMU's": true}
	if len(met) != len(want) {
		t.Fatalf("targets %+v", s.Targets)
	}
	for n, w := range want {
		if got, ok := met[n]; !ok || got != w {
			t.Errorf("target %q: met %v (present %v), want %v", n, got, ok, w)
		}
	}
}

func TestReportOutputs(t *testing.T) {
	raw := sampleRaw()
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Text before the document (the lane's own lines) is skipped.
	got, err := readRaw(bytes.NewReader(append([]byte("testbed noise\n"), bytes.ReplaceAll(b, []byte("{\"date\""), []byte("{\n\"date\""))...)))
	if err != nil {
		t.Fatalf("readRaw: %v", err)
	}
	if len(got.Boots) != len(raw.Boots) {
		t.Fatalf("readRaw: %d boots, want %d", len(got.Boots), len(raw.Boots))
	}
	if _, err := readRaw(strings.NewReader(`{"flavours":[]}`)); err == nil {
		t.Fatal("readRaw accepted a document without boots")
	}
	// The checkpoint after the boots, then the whole document: the last
	// one wins; cut short, the checkpoint stays.
	partial := *raw
	partial.BlkRuns = nil
	pb, err := json.Marshal(&partial)
	if err != nil {
		t.Fatal(err)
	}
	both := append(append(pb, '\n'), b...)
	for cut, want := range map[int]int{len(both): len(raw.BlkRuns), len(both) - 10: 0} {
		got, err := readRaw(bytes.NewReader(both[:cut]))
		if err != nil {
			t.Fatalf("readRaw of two documents (%d bytes): %v", cut, err)
		}
		if len(got.BlkRuns) != want {
			t.Errorf("readRaw of two documents (%d bytes): %d disk runs, want %d", cut, len(got.BlkRuns), want)
		}
	}
	s := summarize(got)
	var tbl bytes.Buffer
	printTable(&tbl, got, s)
	for _, want := range []string{"ours", "qemu-q35", "0.67", "failed: qemu-q35 round 1", "host-dd", "(target <= 0.5)  NOT met", "(target >= 1)  met"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	checkXML(t, bootSVG(got, s))
}

func checkXML(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
	}
}

// FuzzReport feeds arbitrary documents through the host half: it must not
// panic and must emit well-formed SVG.
func FuzzReport(f *testing.F) {
	b, _ := json.Marshal(sampleRaw())
	f.Add(string(b))
	f.Add(`{"flavours":[{"name":"<&>"}],"boots":[{"flavour":"<&>","round":0,"marker_ms":1e308,"exit_ms":-5}]}`)
	f.Add(`{"flavours":[{"name":"ours"}],"boots":[{"flavour":"ours","metrics":{"vcpu_exits":[{"IO":"x"}]}}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		raw, err := readRaw(strings.NewReader(doc))
		if err != nil {
			return
		}
		s := summarize(raw)
		printTable(io.Discard, raw, s)
		checkXML(t, bootSVG(raw, s))
	})
}

// FuzzOutputLine feeds arbitrary console lines to the line parser.
func FuzzOutputLine(f *testing.F) {
	f.Add("VMM-INIT-MARKER uptime=2.32")
	f.Add("VMM-BLKBENCH write bytes=268435456 seconds=0.47")
	f.Fuzz(func(t *testing.T, s string) {
		var o output
		for range 40 {
			o.line(s, time.Millisecond)
		}
		if len(o.tail) > 30 {
			t.Fatalf("tail grew to %d lines", len(o.tail))
		}
	})
}

func FuzzParseSmaps(f *testing.F) {
	f.Add("7f0000000000-7f0020000000 rw-p 00000000 00:00 0\nSize:             524288 kB\nRss:              130600 kB\n", int64(1024))
	f.Add("Size: 4 kB\nRss: 4 kB\nRss: x kB\nSize 4\nRss:: 3 kB\n", int64(0))
	f.Fuzz(func(t *testing.T, text string, minKiB int64) {
		r, ok := parseSmaps(strings.NewReader(text), minKiB)
		if !ok && (r.guest != 0 || r.own != 0) && !strings.Contains(text, "Rss") {
			t.Fatalf("nothing seen but %+v", r)
		}
	})
}

func TestMicroFlavours(t *testing.T) {
	c := runConfig{vmm: "vmm", qemu: "qemu", images: "/images", memMiB: 512, micro: "/m"}
	fs := c.flavours("/tmp/m.json")
	if len(fs) != 9 || fs[8].Name != "ours-guestdc" {
		t.Fatalf("%d flavours, want 8 and ours-guestdc", len(fs))
	}
	for _, f := range fs[4:8] {
		argv := strings.Join(f.Argv, " ")
		if !strings.HasSuffix(f.Name, "-micro") || !strings.Contains(argv, "/m/vmlinu") || strings.Contains(argv, "/images/vmlinu") {
			t.Errorf("%s: %s", f.Name, argv)
		}
	}
	if fs[5].Name != "ours-pvh-micro" || !strings.Contains(strings.Join(fs[5].Argv, " "), "--kernel /m/vmlinux-micro") {
		t.Errorf("%s: %v", fs[5].Name, fs[5].Argv)
	}
	// The stock-kernel flavours are unchanged.
	if !strings.Contains(strings.Join(fs[0].Argv, " "), "--kernel /images/vmlinuz") {
		t.Errorf("ours: %v", fs[0].Argv)
	}
}
