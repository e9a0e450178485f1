package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runConfig holds the flags of "lanebench run".
type runConfig struct {
	rounds    int
	blkRounds int
	blkMiB    int
	memMiB    int
	vmm       string
	qemu      string
	images    string
	tmp       string
	timeout   time.Duration
	only      string
	micro     string
}

// vmFlags registers the flags that say how to boot a flavour, shared by
// "lanebench run" and "lanebench trace".
func (c *runConfig) vmFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.memMiB, "memory-mib", 512, "guest RAM, MiB")
	fs.StringVar(&c.vmm, "vmm", "vmm", "our VMM binary")
	fs.StringVar(&c.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	fs.StringVar(&c.images, "images", "/images", "directory with vmlinuz, vmlinux, initrd.img")
	fs.StringVar(&c.tmp, "tmp", "/tmp", "scratch directory (tmpfs in the lane)")
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c runConfig
	fs.IntVar(&c.rounds, "rounds", 10, "measured boots of each flavour (interleaved)")
	fs.IntVar(&c.blkRounds, "blk-rounds", 3, "disk benchmark rounds of each flavour (0: none)")
	fs.IntVar(&c.blkMiB, "blk-mib", 256, "disk image size and bytes read/written per direction, MiB")
	c.vmFlags(fs)
	fs.DurationVar(&c.timeout, "timeout", 90*time.Second, "kill a VM that runs longer than this")
	fs.StringVar(&c.only, "only", "", "comma-separated flavours to run (default all)")
	fs.StringVar(&c.micro, "micro", "", "directory with vmlinuz-micro and vmlinux-micro (the micro-VM kernel): adds the *-micro flavours")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.rounds < 1 || c.rounds > 100 || c.blkRounds < 0 || c.blkRounds > 20 || c.blkMiB < 1 || c.blkMiB > 4096 ||
		c.memMiB < 64 || c.memMiB > 4096 {
		return errors.New("run: -rounds 1..100, -blk-rounds 0..20, -blk-mib 1..4096, -memory-mib 64..4096")
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	// The boots are written out as soon as they are done, so that a lane
	// that dies in the disk benchmark (the test host has crashed there)
	// still leaves them; the complete document follows and replaces that
	// one (readRaw takes the last whole document).
	checkpoint := func(raw *Raw) {
		partial := *raw
		partial.Notes = append(append([]string(nil), raw.Notes...),
			"written after the boots: the lane ended before the disk benchmark finished")
		_ = enc.Encode(&partial)
	}
	raw, err := runBench(c, checkpoint)
	if raw != nil {
		if e := enc.Encode(raw); e != nil && err == nil {
			err = e
		}
	}
	return err
}

const bootCmdline = "console=ttyS0 quiet vmm.test=boot"

func (c runConfig) flavours(metrics string) []Flavour {
	mem := strconv.Itoa(c.memMiB) + "M"
	img := func(n string) string { return c.images + "/" + n }
	qemuCommon := []string{"-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", mem,
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot"}
	all := []Flavour{
		{Name: "ours", Argv: []string{c.vmm, "run", "--kernel", img("vmlinuz"), "--initrd", img("initrd.img"),
			"--cmdline", bootCmdline, "--memory", mem, "--metrics-file", metrics}},
		{Name: "ours-pvh", Argv: []string{c.vmm, "run", "--kernel", img("vmlinux"), "--initrd", img("initrd.img"),
			"--cmdline", bootCmdline, "--memory", mem, "--metrics-file", metrics}},
		{Name: "qemu-microvm", Argv: append(append([]string{c.qemu, "-M", "microvm,acpi=on,rtc=on"}, qemuCommon...),
			"-kernel", img("vmlinux"), "-initrd", img("initrd.img"), "-append", bootCmdline)},
		{Name: "qemu-q35", Argv: append(append([]string{c.qemu, "-M", "q35"}, qemuCommon...),
			"-kernel", img("vmlinuz"), "-initrd", img("initrd.img"), "-append", bootCmdline)},
	}
	if c.micro != "" {
		// The same four, booting the micro-VM kernel (images/micro).
		for _, f := range all[:4] {
			argv := append([]string(nil), f.Argv...)
			for i, a := range argv {
				switch a {
				case img("vmlinuz"):
					argv[i] = c.micro + "/vmlinuz-micro"
				case img("vmlinux"):
					argv[i] = c.micro + "/vmlinux-micro"
				}
			}
			all = append(all, Flavour{Name: f.Name + "-micro", Argv: argv})
		}
	}
	// ours again, with the bzImage decompressing itself in the guest as
	// before vmm unpacked it: what unpacking gains, in the same session.
	all = append(all, Flavour{Name: "ours-guestdc", Argv: []string{c.vmm, "run", "--guest-decompress", "--kernel", img("vmlinuz"),
		"--initrd", img("initrd.img"), "--cmdline", bootCmdline, "--memory", mem, "--metrics-file", metrics}})
	if c.only == "" {
		return all
	}
	var out []Flavour
	for _, f := range all {
		for _, n := range strings.Split(c.only, ",") {
			if n == f.Name {
				out = append(out, f)
			}
		}
	}
	return out
}

func (c runConfig) blkSetups(disk string) []BlkSetup {
	mem := strconv.Itoa(c.memMiB) + "M"
	cmdline := fmt.Sprintf("console=ttyS0 quiet vmm.test=bench-blk vmm.bench.mib=%d", c.blkMiB)
	return []BlkSetup{
		{Name: "ours", Argv: []string{c.vmm, "run", "--kernel", c.images + "/vmlinuz", "--initrd", c.images + "/initrd.img",
			"--cmdline", cmdline, "--memory", mem, "--disk", "path=" + disk}},
		{Name: "qemu-q35", Argv: []string{c.qemu, "-M", "q35", "-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", mem,
			"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
			"-drive", "file=" + disk + ",if=none,id=d0,format=raw,cache=writeback,aio=threads",
			"-device", "virtio-blk-pci,drive=d0",
			"-kernel", c.images + "/vmlinuz", "-initrd", c.images + "/initrd.img", "-append", cmdline}},
	}
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "lanebench: "+format+"\n", a...)
}

func runBench(c runConfig, checkpoint func(*Raw)) (*Raw, error) {
	t0 := time.Now()
	metrics := c.tmp + "/lanebench-metrics.json"
	raw := &Raw{
		Date: t0.UTC().Format(time.RFC3339), Rounds: c.rounds, GuestMiB: c.memMiB, Cmdline: bootCmdline,
		LaneCPUs: runtime.NumCPU(), BlkMiB: c.blkMiB,
		BlkCache: "host page cache: ours opens the file O_RDWR (no O_DIRECT); QEMU cache=writeback,aio=threads; the file is on tmpfs",
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		raw.LaneKernel = strings.TrimSpace(string(b))
	}
	if err := ensureKVMDebugfs(); err != nil {
		raw.Notes = append(raw.Notes, "no KVM exit counters from debugfs: "+err.Error())
	}
	fl := c.flavours(metrics)
	if len(fl) == 0 {
		return nil, fmt.Errorf("run: -only %q names no flavour", c.only)
	}
	raw.Flavours = fl
	boot := func(f Flavour, round int) {
		_ = os.Remove(metrics)
		progress("boot %-12s round %2d: starting", f.Name, round)
		r := bootOnce(f, round, c.memMiB, c.timeout)
		if strings.HasPrefix(f.Name, "ours") {
			if b, err := os.ReadFile(metrics); err == nil && json.Valid(b) {
				r.Metrics = json.RawMessage(b)
			}
		}
		progress("boot %-12s round %2d: marker %8.1f ms, exit %8.1f ms, status %d, maxrss %d KiB, guest %d KiB %s",
			f.Name, round, r.MarkerMs, r.ExitMs, r.ExitStatus, r.MaxRSSKiB, r.GuestRSSKiB, r.Error)
		raw.Boots = append(raw.Boots, r)
	}
	// One warm-up boot of each, not counted, then the rounds; each round
	// starts with the next flavour so that none always runs first.
	for _, f := range fl {
		boot(f, -1)
	}
	for i := 0; i < c.rounds; i++ {
		for j := range fl {
			boot(fl[(i+j)%len(fl)], i)
		}
	}
	if c.blkRounds > 0 {
		raw.ElapsedS = time.Since(t0).Seconds()
		checkpoint(raw)
		if err := runBlk(c, raw); err != nil {
			raw.Notes = append(raw.Notes, "disk benchmark: "+err.Error())
		}
	}
	raw.ElapsedS = time.Since(t0).Seconds()
	return raw, nil
}

// output collects a process's output lines with their arrival times.
type output struct {
	mu       sync.Mutex
	tail     []string
	markerAt time.Duration
	uptime   float64
	kvmExits map[string]uint64 // KVM's counters when the marker line came
	passed   bool
	blk      map[string][2]float64 // direction -> bytes, seconds
}

func (o *output) line(s string, at time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 30 {
		o.tail = o.tail[1:]
	}
	o.tail = append(o.tail, s)
	if strings.Contains(s, "VMM-TEST-RESULT") && strings.HasSuffix(s, " PASS") {
		o.passed = true
	}
	if i := strings.Index(s, "VMM-BLKBENCH "); i >= 0 {
		if dir, b, sec, ok := parseBlkLine(s[i:]); ok {
			if o.blk == nil {
				o.blk = map[string][2]float64{}
			}
			o.blk[dir] = [2]float64{b, sec}
		}
	}
	i := strings.Index(s, "VMM-INIT-MARKER uptime=")
	if i < 0 || o.markerAt != 0 {
		return false
	}
	o.markerAt = at
	f := strings.Fields(s[i+len("VMM-INIT-MARKER uptime="):])
	if len(f) > 0 {
		o.uptime, _ = strconv.ParseFloat(f[0], 64)
	}
	return true
}

// parseBlkLine parses "VMM-BLKBENCH <dir> bytes=<n> seconds=<s>".
func parseBlkLine(s string) (dir string, bytes, seconds float64, ok bool) {
	f := strings.Fields(s)
	if len(f) != 4 || f[0] != "VMM-BLKBENCH" || (f[1] != "read" && f[1] != "write") {
		return "", 0, 0, false
	}
	b, ok1 := strings.CutPrefix(f[2], "bytes=")
	sec, ok2 := strings.CutPrefix(f[3], "seconds=")
	if !ok1 || !ok2 {
		return "", 0, 0, false
	}
	bv, err1 := strconv.ParseUint(b, 10, 50)
	sv, err2 := strconv.ParseFloat(sec, 64)
	if err1 != nil || err2 != nil || !(sv >= 0 && sv <= 1e6) {
		return "", 0, 0, false
	}
	return f[1], float64(bv), sv, true
}

// procResult is what running one process measured.
type procResult struct {
	exit     time.Duration
	status   int
	maxRSS   int64
	guestRSS int64
	ownRSS   int64
	samples  int
	err      error
}

// runProc starts argv with stdin /dev/null and stdout+stderr into o,
// samples the guest RAM's Rss every SampleMs (and when o.line reports the
// marker), and waits for it to exit or kills it after timeout.
func runProc(argv []string, o *output, guestMiB int, timeout time.Duration) procResult {
	var res procResult
	pr, pw, err := os.Pipe()
	if err != nil {
		res.err = err
		return res
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		res.err = err
		return res
	}
	pw.Close()
	pid := cmd.Process.Pid
	sampleNow := make(chan struct{}, 1)
	done := make(chan struct{})
	samplerDone := make(chan struct{})
	var mu sync.Mutex // protects guestMax, ownMax and samples
	var guestMax, ownMax int64
	var samples int
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(SampleMs * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			case <-sampleNow:
			}
			if r, ok := sampleRSS(pid, guestMiB); ok {
				mu.Lock()
				samples++
				guestMax = max(guestMax, r.guest)
				ownMax = max(ownMax, r.own)
				mu.Unlock()
			}
		}
	}()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		br := bufio.NewReader(pr)
		for {
			s, err := br.ReadString('\n')
			if s != "" {
				if o.line(strings.TrimRight(s, "\r\n"), time.Since(start)) {
					k := kvmExitCounters(pid)
					o.mu.Lock()
					o.kvmExits = k
					o.mu.Unlock()
					select {
					case sampleNow <- struct{}{}:
					default:
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	// cmd.Stdout and cmd.Stderr are *os.File, so Wait returns as soon as
	// the process has been reaped; ProcessState holds its rusage.
	// A process stuck in the kernel (seen in the lane: a VM that neither
	// finished nor died on SIGKILL) must not stall the whole session:
	// give up on it 30 s after the kill and go on without its numbers.
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(timeout + 30*time.Second):
		close(done)
		pr.Close()
		res.exit = time.Since(start)
		res.status = -1
		res.err = fmt.Errorf("process %d did not exit within %v of SIGKILL; abandoned", pid, 30*time.Second)
		return res
	}
	res.exit = time.Since(start)
	timer.Stop()
	close(done)
	// A read of /proc/PID/smaps can block while the process tears down its
	// memory; never let that hold up the benchmark.
	select {
	case <-samplerDone:
	case <-time.After(2 * time.Second):
		res.err = errors.Join(res.err, errors.New("smaps sampler still busy 2 s after exit"))
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		res.err = werr
	}
	select {
	case <-readerDone:
	case <-time.After(5 * time.Second):
		res.err = errors.Join(res.err, errors.New("output still open 5 s after exit"))
	}
	pr.Close()
	ps := cmd.ProcessState
	if ps == nil {
		res.err = errors.Join(res.err, errors.New("no process state"))
		return res
	}
	res.status = ps.ExitCode()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.status = 128 + int(ws.Signal())
		res.err = errors.Join(res.err, fmt.Errorf("killed by %v (timeout %v?)", ws.Signal(), timeout))
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		res.maxRSS = ru.Maxrss
	}
	mu.Lock()
	res.guestRSS = guestMax
	res.ownRSS = ownMax
	res.samples = samples
	mu.Unlock()
	return res
}

func bootOnce(f Flavour, round, guestMiB int, timeout time.Duration) BootRun {
	var o output
	res := runProc(f.Argv, &o, guestMiB, timeout)
	r := BootRun{Flavour: f.Name, Round: round, ExitMs: ms(res.exit), ExitStatus: res.status,
		MaxRSSKiB: res.maxRSS, GuestRSSKiB: res.guestRSS, OwnRSSKiB: res.ownRSS, Samples: res.samples}
	o.mu.Lock()
	defer o.mu.Unlock()
	r.MarkerMs, r.MarkerUptimeS, r.Passed = ms(o.markerAt), o.uptime, o.passed
	r.KVMExits = o.kvmExits
	switch {
	case res.err != nil:
		r.Error = res.err.Error()
	case o.markerAt == 0:
		r.Error = "no VMM-INIT-MARKER line"
	case !o.passed:
		r.Error = "no VMM-TEST-RESULT PASS line"
	case res.status != 0:
		r.Error = fmt.Sprintf("exit status %d", res.status)
	}
	if r.Error != "" {
		r.Tail = append([]string(nil), o.tail...)
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// smapsRSS is one smaps sample of a VM process, in KiB.
type smapsRSS struct {
	guest int64 // Rss of the mappings at least half the guest RAM in size
	own   int64 // Rss of every other mapping: the process's own memory
}

// sampleRSS reads pid's smaps: the Rss of its guest RAM block(s) (mappings
// at least half the guest RAM in size, for QEMU and for our VMM) and of
// everything else. ok is false if smaps could not be read (the process has
// gone).
func sampleRSS(pid, guestMiB int) (smapsRSS, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return smapsRSS{}, false
	}
	defer f.Close()
	return parseSmaps(f, int64(guestMiB)*1024/2)
}

// parseSmaps parses smaps text and sums the Rss (KiB) of the mappings whose
// Size is at least minKiB (guest) and of the others (own). smaps counts the
// pages each mapping has in its page tables; unlike ru_maxrss on the test
// host's Linux 6.1 it does not lag behind per-thread RSS counters.
func parseSmaps(r io.Reader, minKiB int64) (smapsRSS, bool) {
	var res smapsRSS
	var size int64
	seen := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key, rest, ok := strings.Cut(line, ":")
		if !ok || strings.Contains(key, " ") {
			continue // a mapping header line
		}
		switch key {
		case "Size", "Rss":
			fld := strings.Fields(rest)
			if len(fld) != 2 || fld[1] != "kB" {
				continue
			}
			v, err := strconv.ParseInt(fld[0], 10, 64)
			if err != nil || v < 0 {
				continue
			}
			if key == "Size" {
				size = v
				continue
			}
			seen = true
			if size >= minKiB {
				res.guest += v
			} else {
				res.own += v
			}
		}
	}
	return res, seen && sc.Err() == nil
}

// runBlk runs the disk benchmark: a scratch image on tmpfs, read and then
// written by each guest flavour and by the test host's own dd.
func runBlk(c runConfig, raw *Raw) error {
	disk := c.tmp + "/lanebench-disk.img"
	defer os.Remove(disk)
	if err := makeDisk(disk, c.blkMiB); err != nil {
		return err
	}
	setups := c.blkSetups(disk)
	raw.BlkFlavours = append(setups, BlkSetup{Name: "host-dd", Argv: []string{"dd", "if=" + disk, "of=/dev/null", "bs=1M"}})
	for i := 0; i < c.blkRounds; i++ {
		for _, s := range setups {
			var o output
			res := runProc(s.Argv, &o, c.memMiB, c.timeout+60*time.Second)
			r := BlkRun{Flavour: s.Name, Round: i, ExitMs: ms(res.exit), ExitStatus: res.status}
			o.mu.Lock()
			rd, okr := o.blk["read"]
			wr, okw := o.blk["write"]
			r.ReadBytes, r.ReadS = int64(rd[0]), rd[1]
			r.WriteBytes, r.WriteS = int64(wr[0]), wr[1]
			switch {
			case res.err != nil:
				r.Error = res.err.Error()
			case !okr || !okw || !o.passed:
				r.Error = fmt.Sprintf("no VMM-BLKBENCH lines or no PASS (exit status %d after %.0f ms)", res.status, ms(res.exit))
			}
			if r.Error != "" {
				r.Tail = append([]string(nil), o.tail...)
			}
			o.mu.Unlock()
			progress("blk %-9s round %d: read %d B in %.2f s, write %d B in %.2f s %s", s.Name, i, r.ReadBytes, r.ReadS, r.WriteBytes, r.WriteS, r.Error)
			raw.BlkRuns = append(raw.BlkRuns, r)
		}
		r := hostDD(disk, c.blkMiB, i)
		progress("blk host-dd   round %d: read %.2f s, write %.2f s %s", i, r.ReadS, r.WriteS, r.Error)
		raw.BlkRuns = append(raw.BlkRuns, r)
	}
	return nil
}

func makeDisk(path string, mib int) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>12)
	}
	for i := 0; i < mib; i++ {
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("disk image: %w", err)
		}
	}
	return nil
}

// hostDD times the test host's own busybox dd over the same file: a read to
// /dev/null and a write of zeros, 1 MiB blocks. tmpfs has no O_DIRECT, so
// this is the page-cache copy cost the guests' numbers contain as well.
func hostDD(disk string, mib, round int) BlkRun {
	r := BlkRun{Flavour: "host-dd", Round: round}
	n := strconv.Itoa(mib)
	timeIt := func(args ...string) (float64, error) {
		t := time.Now()
		out, err := exec.Command("dd", args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("dd %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return time.Since(t).Seconds(), nil
	}
	var err error
	if r.ReadS, err = timeIt("if="+disk, "of=/dev/null", "bs=1M", "count="+n); err != nil {
		r.Error = err.Error()
		return r
	}
	r.ReadBytes = int64(mib) << 20
	if r.WriteS, err = timeIt("if=/dev/zero", "of="+disk, "bs=1M", "count="+n, "conv=notrunc"); err != nil {
		r.Error = err.Error()
		return r
	}
	r.WriteBytes = int64(mib) << 20
	return r
}
