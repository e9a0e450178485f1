package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/api"
	"github.com/vmm-dev/vmm/console"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/machine"
	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/sandbox"
)

const runExample = `Example:
   vmm run --kernel images/out/vmlinuz --initrd images/out/initrd.img \
       --cmdline "console=ttyS0 vmm.test=shell" --cpus 2 --memory 512M \
       --disk path=images/out/disk.ext4 --disk path=base.img,readonly=on \
       --net user,hostfwd=tcp:127.0.0.1:8080-:80

Networking (--net, repeatable; one virtio-net device each):
   tap=NAME[,mac=MAC]            attach to an existing TAP (ip tuntap add NAME mode tap user $USER)
   tap[,bridge=BR][,mac=MAC]     create vmmtapN (needs CAP_NET_ADMIN), optionally in bridge BR;
                                 it is deleted when vmm exits
   user[,hostfwd=FWD]...[,mac=MAC]  rootless NAT: guest 10.0.2.15/24 by DHCP, gateway 10.0.2.2
                                 (the gateway stands for the host's 127.0.0.1), no DNS;
                                 FWD is tcp|udp:[HOSTADDR]:HOSTPORT-:GUESTPORT
   Without mac=, the MAC is a stable locally administered address derived from the backend,
   the device index and the TAP name.

Host-guest sockets (--vsock cid=CID,path=SOCKET; virtio-vsock, streams only):
   a host program connects to SOCKET, writes "CONNECT <guest port>\n" and reads
   "OK <host port>\n" once the guest accepted; a guest connect to CID 2 port P
   reaches whoever listens on the Unix socket SOCKET_P. A stale SOCKET is replaced.

The guest's serial console is this terminal; type Ctrl-A x to quit (SIGINT and
SIGTERM stop the VM the same way; a TAP vmm created vanishes with it).
Exit status: 0 guest powered off or rebooted (or Ctrl-A x), 1 bad input or
VMM/KVM failure, 2 guest panic or triple fault.`

func runCommand(start time.Time) *cli.Command {
	return &cli.Command{
		Name:        "run",
		Usage:       "boot a kernel with its console on this terminal",
		Description: runExample,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kernel", Usage: "bzImage or ELF vmlinux (PVH) `FILE`, e.g. images/out/vmlinuz", Required: true},
			&cli.StringFlag{Name: "initrd", Usage: "initramfs `FILE`, e.g. images/out/initrd.img"},
			&cli.BoolFlag{Name: "guest-decompress", Usage: "let a bzImage decompress itself in the guest; by default vmm unpacks an LZ4 bzImage itself " +
				"and starts the kernel proper, placed at random (KASLR) like the kernel's own decompressor would unless the command line has nokaslr"},
			&cli.StringFlag{Name: "cmdline", Value: "console=ttyS0", Usage: "kernel command line, e.g. \"console=ttyS0 root=/dev/vda\""},
			&cli.IntFlag{Name: "cpus", Value: 1, Usage: fmt.Sprintf("number of vCPUs, 1..%d", machine.MaxCPUs)},
			&cli.StringFlag{Name: "memory", Value: "512M", Usage: "guest RAM `SIZE`, e.g. 512M or 2G"},
			&cli.StringSliceFlag{Name: "disk", Usage: "virtio-blk disk `SPEC` path=FILE[,readonly=on]; repeat for /dev/vdb, ..."},
			&cli.StringSliceFlag{Name: "net", Usage: "virtio-net device `SPEC`: tap=NAME, tap[,bridge=BR] or user[,hostfwd=tcp::8080-:80], each [,mac=MAC]; repeatable"},
			&cli.BoolFlag{Name: "rng", Usage: "add a virtio entropy device (virtio-rng) that gives the guest bytes from the host's getrandom(2)"},
			&cli.BoolFlag{Name: "balloon", Usage: "add a virtio balloon with free page reporting: memory the guest frees goes back to the host (the guest needs virtio_balloon)"},
			&cli.StringFlag{Name: "vsock", Usage: "virtio socket device `SPEC` cid=CID,path=SOCKET: the guest's address CID (3 or more); host programs connect to SOCKET " +
				"and send \"CONNECT <port>\\n\", guest connects to port P reach SOCKET_P"},
			&cli.StringFlag{Name: "api-socket", Usage: "serve the control socket at `PATH`: one JSON request per line " +
				"({\"op\":\"status\"}, pause, resume, stop, {\"op\":\"balloon\",\"mib\":N}), one JSON response per line"},
			&cli.StringFlag{Name: "metrics-file", Usage: "write exit counts and boot times as JSON to `FILE` when the VM stops (created when it starts)"},
			&cli.StringFlag{Name: "kvm", Value: "/dev/kvm", Usage: "KVM device `PATH`"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error (logs go to stderr)"},
			&cli.StringFlag{Name: "seccomp", Value: "on", EnvVars: []string{"VMM_SECCOMP"}, Usage: "confine vmm with a seccomp filter once the VM is built: " +
				"on (a refused system call fails with EPERM), log (allowed, and logged by the kernel as an audit record) or off"},
			&cli.StringFlag{Name: "cpu-profile", Hidden: true, Usage: "write a Go CPU profile of the VMM to `FILE` (for finding where the VMM spends its time)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return cli.Exit(fmt.Sprintf("run: unexpected argument %q (flags only)", c.Args().First()), exitVMMError)
			}
			cfg, log, err := runConfig(c)
			if err != nil {
				return cli.Exit(err.Error(), exitVMMError)
			}
			confine, err := parseSeccomp(c.String("seccomp"))
			if err != nil {
				return cli.Exit(err.Error(), exitVMMError)
			}
			if p := c.String("cpu-profile"); p != "" {
				stop, err := startCPUProfile(p)
				if err != nil {
					return cli.Exit(err.Error(), exitVMMError)
				}
				defer stop()
			}
			apiPath := c.String("api-socket")
			if err := checkSocketPath("--api-socket", apiPath); err != nil {
				return cli.Exit(err.Error(), exitVMMError)
			}
			return cli.Exit(runVM(cfg, apiPath, log, start, confine))
		},
	}
}

func runConfig(c *cli.Context) (machine.Config, *slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return machine.Config{}, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	mem, err := machine.ParseMemory(c.String("memory"))
	if err != nil {
		return machine.Config{}, nil, fmt.Errorf("--memory: %w", err)
	}
	cfg := machine.Config{
		KVMPath:     c.String("kvm"),
		KernelPath:  c.String("kernel"),
		InitrdPath:  c.String("initrd"),
		Cmdline:     c.String("cmdline"),
		CPUs:        c.Int("cpus"),
		MemoryMiB:   mem,
		MetricsPath: c.String("metrics-file"),
		RNG:         c.Bool("rng"),
		Balloon:     c.Bool("balloon"),
		Console:     os.Stdout,

		GuestDecompress: c.Bool("guest-decompress"),
	}
	for _, d := range c.StringSlice("disk") {
		disk, err := parseDisk(d)
		if err != nil {
			return machine.Config{}, nil, err
		}
		cfg.Disks = append(cfg.Disks, disk)
	}
	if s := c.String("vsock"); s != "" {
		v, err := parseVsock(s)
		if err != nil {
			return machine.Config{}, nil, err
		}
		cfg.Vsock = &v
	}
	for _, n := range c.StringSlice("net") {
		nc, err := parseNet(n)
		if err != nil {
			return machine.Config{}, nil, err
		}
		cfg.Nets = append(cfg.Nets, nc)
	}
	if err := cfg.Validate(); err != nil {
		return machine.Config{}, nil, err
	}
	return cfg, log, nil
}

// seccompMode is how --seccomp confines the VMM.
type seccompMode int

const (
	seccompOn  seccompMode = iota // refused calls fail with EPERM
	seccompLog                    // refused calls are logged and go through
	seccompOff
)

func parseSeccomp(s string) (seccompMode, error) {
	switch s {
	case "on", "true", "yes":
		return seccompOn, nil
	case "log":
		return seccompLog, nil
	case "off", "false", "no":
		return seccompOff, nil
	}
	return seccompOff, fmt.Errorf("--seccomp %q: want on, log or off", s)
}

// parseDisk parses "path=FILE[,readonly=on|off]".
func parseDisk(s string) (machine.DiskConfig, error) {
	var d machine.DiskConfig
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return d, fmt.Errorf("--disk %q: %q is not key=value", s, kv)
		}
		switch k {
		case "path":
			d.Path = v
		case "readonly", "ro":
			switch v {
			case "on", "true", "yes":
				d.ReadOnly = true
			case "off", "false", "no":
				d.ReadOnly = false
			default:
				return d, fmt.Errorf("--disk %q: readonly must be on or off", s)
			}
		default:
			return d, fmt.Errorf("--disk %q: unknown key %q (want path, readonly)", s, k)
		}
	}
	if d.Path == "" {
		return d, fmt.Errorf("--disk %q: path= is required", s)
	}
	return d, nil
}

// checkSocketPath checks, before anything is built, that a Unix socket
// can be made at path (empty: none asked for).
func checkSocketPath(flag, path string) error {
	if path == "" {
		return nil
	}
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		return fmt.Errorf("%s %s: too long for a Unix socket address", flag, path)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return fmt.Errorf("%s %s: its directory does not exist", flag, path)
	}
	return nil
}

// parseVsock parses "cid=CID,path=SOCKET".
func parseVsock(s string) (vsock.Config, error) {
	var v vsock.Config
	for _, kv := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return v, fmt.Errorf("--vsock %q: %q is not key=value", s, kv)
		}
		switch k {
		case "cid":
			cid, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return v, fmt.Errorf("--vsock %q: cid %q is not a number", s, val)
			}
			v.GuestCID = cid
		case "path", "socket":
			v.Path = val
		default:
			return v, fmt.Errorf("--vsock %q: unknown key %q (want cid, path)", s, k)
		}
	}
	if v.GuestCID == 0 || v.Path == "" {
		return v, fmt.Errorf("--vsock %q: cid= and path= are required", s)
	}
	return v, nil
}

// parseNet parses one --net value: a backend (tap, tap=NAME or user)
// followed by key=value options.
func parseNet(s string) (machine.NetConfig, error) {
	var n machine.NetConfig
	parts := strings.Split(s, ",")
	kind, name, hasName := strings.Cut(parts[0], "=")
	switch {
	case kind == "tap" && hasName && name == "":
		return n, fmt.Errorf("--net %q: tap= needs a name (or plain tap to create one)", s)
	case kind == "tap":
		n.Backend, n.TAP = machine.NetTAP, name
	case kind == "user" && !hasName:
		n.Backend = machine.NetUser
	default:
		return n, fmt.Errorf("--net %q: unknown backend %q (want tap, tap=NAME or user)", s, parts[0])
	}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return n, fmt.Errorf("--net %q: %q is not key=value", s, kv)
		}
		switch {
		case k == "mac":
			mac, err := network.ParseMAC(v)
			if err != nil {
				return n, fmt.Errorf("--net %q: %w", s, err)
			}
			n.MAC = mac
		case k == "bridge" && n.Backend == machine.NetTAP && n.TAP == "":
			n.Bridge = v
		case k == "hostfwd" && n.Backend == machine.NetUser:
			f, err := network.ParseHostFwd(v)
			if err != nil {
				return n, fmt.Errorf("--net %q: %w", s, err)
			}
			n.HostForwards = append(n.HostForwards, f)
		default:
			want := "mac"
			switch {
			case n.Backend == machine.NetUser:
				want = "mac, hostfwd"
			case n.TAP == "":
				want = "mac, bridge"
			}
			return n, fmt.Errorf("--net %q: unknown key %q here (want %s)", s, k, want)
		}
	}
	return n, nil
}

// builtFilter is the result of building the VMM's seccomp filter.
type builtFilter struct {
	f   *sandbox.Filter
	err error
}

// buildFilter starts building the seccomp filter for a VM of cfg (nil
// with --seccomp off). It takes a few ms of CPU (far more under
// emulation), so it runs on another goroutine while New builds the VM;
// installFilter installs it after.
func buildFilter(cfg machine.Config, rawTerminal, apiSocket bool, mode seccompMode) <-chan builtFilter {
	if mode == seccompOff {
		return nil
	}
	p := machine.Confinement(cfg)
	p.AcceptUnix = apiSocket
	if rawTerminal {
		p.Ioctls = append(p.Ioctls, console.RunningRequests()...)
	}
	p.LogOnly = mode == seccompLog
	c := make(chan builtFilter, 1)
	go func() {
		f, err := sandbox.VMMFilter(p)
		c <- builtFilter{f, err}
	}()
	return c
}

// installFilter waits for the filter and installs it on every thread.
func installFilter(c <-chan builtFilter) error {
	// Log lines carry the local time zone, read from a file the first
	// time it is needed: read it while files can still be opened.
	_, _ = time.Now().Zone()
	b := <-c
	if b.err != nil {
		return b.err
	}
	return b.f.Install()
}

// runVM builds and runs the VM and maps how it ended to a message and an
// exit status.
func runVM(cfg machine.Config, apiPath string, log *slog.Logger, start time.Time, confine seccompMode) (string, int) {
	reserveSchedulerProcs(cfg)
	var m *machine.Machine
	quit := func() { m.Stop(machine.Result{Reason: machine.StopUser}) }
	stdin := int(os.Stdin.Fd())
	rawTerminal := console.IsTerminal(stdin)
	if rawTerminal {
		restore, err := console.MakeRaw(stdin)
		if err != nil {
			return "terminal raw mode: " + err.Error(), exitVMMError
		}
		defer restore()
		cfg.Input = console.NewInput(os.Stdin, func() { quit() })
	} else {
		cfg.Input = os.Stdin
	}
	filter := buildFilter(cfg, rawTerminal, apiPath != "", confine)
	// SIGINT and SIGTERM stop the VM like Ctrl-A x, so that Close runs and
	// releases what the VMM created (TAP devices, forwarded ports). They are
	// caught from before New; one that arrives during New is acted on after.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	m, err := machine.New(cfg, log, start)
	if err != nil {
		return err.Error(), exitVMMError
	}
	defer m.Close()
	var ctl *api.Server
	if apiPath != "" {
		// Listening needs socket and bind: before the filter.
		if ctl, err = api.Listen(apiPath); err != nil {
			return err.Error(), exitVMMError
		}
		defer ctl.Close()
	}
	if filter != nil {
		if err := installFilter(filter); err != nil {
			return err.Error(), exitVMMError
		}
		log.Debug("confined by seccomp", "log_only", confine == seccompLog)
	}
	if ctl != nil {
		ctl.Serve(vmControl{m})
	}
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("stopping on signal", "signal", sig)
			quit()
		case <-stopSignals:
		}
	}()
	res := m.Run()
	switch res.Reason {
	case machine.StopPowerOff, machine.StopReboot, machine.StopUser:
		log.Info("guest stopped", "reason", res.Reason)
		return "", exitOK
	case machine.StopPanic, machine.StopTripleFault:
		msg := "guest stopped: " + res.Reason.String()
		if res.Err != nil {
			msg += " (" + res.Err.Error() + ")"
		}
		return msg, exitGuestCrash
	}
	if res.Err == nil {
		res.Err = errors.New(res.Reason.String())
	}
	return res.Err.Error(), exitVMMError
}

// vmControl is the machine as the control socket sees it.
type vmControl struct{ m *machine.Machine }

func (c vmControl) Pause() error                { return c.m.Pause() }
func (c vmControl) Resume() error               { return c.m.Resume() }
func (c vmControl) Paused() bool                { return c.m.Paused() }
func (c vmControl) Stop()                       { c.m.Stop(machine.Result{Reason: machine.StopUser}) }
func (c vmControl) SetBalloon(mib uint64) error { return c.m.SetBalloon(mib) }
func (c vmControl) Metrics() any                { return c.m.Metrics() }
func (c vmControl) Balloon() any {
	if b := c.m.Balloon(); b != nil {
		return b
	}
	return nil // no balloon: the field is left out
}

// reserveSchedulerProcs makes the Go scheduler's P count (GOMAXPROCS) at
// least the number of threads that wait in system calls outside Go's
// netpoller, unless the user set GOMAXPROCS: one per vCPU (KVM_RUN) and one
// per TAP device (its event loop blocks in epoll_wait on its own thread). A
// thread returning from such a call needs a free P before it can run Go
// code; with the default (one P per host CPU) a 2-vCPU guest with a TAP on
// a 2-CPU host left it waiting. Measured together with the TAP loop's own
// thread: about +9 % TCP throughput in the nested lane (docs/benchmarks.md).
// Without a TAP nothing changes (the user-mode network showed no gain
// from an extra P).
func reserveSchedulerProcs(cfg machine.Config) {
	taps := 0
	for _, n := range cfg.Nets {
		if n.Backend == machine.NetTAP {
			taps++
		}
	}
	if taps == 0 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if want := cfg.CPUs + taps; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}
