// Package machine assembles a VM from a Config (KVM objects, guest memory,
// kernel and firmware tables, devices, vCPUs) and runs it until the guest
// powers off, reboots or crashes, or the VMM fails.
//
// Each vCPU runs on its own goroutine locked to an OS thread. The first stop
// event (from any vCPU or device) wins: it records the reason and kicks
// every vCPU out of KVM_RUN, so the process exits promptly.
package machine

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/boot/acpi"
	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	virtionet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/rng"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// StopReason says why a VM stopped.
type StopReason int

const (
	StopPowerOff    StopReason = iota + 1 // the guest powered off (ACPI S5)
	StopReboot                            // the guest asked for a reset (ACPI reset register, i8042)
	StopPanic                             // the guest kernel panicked (pvpanic or its console said so)
	StopTripleFault                       // KVM reported a shutdown exit (triple fault)
	StopError                             // the VMM or KVM failed; Result.Err says how
	StopUser                              // the user quit (console escape)
)

func (r StopReason) String() string {
	switch r {
	case StopPowerOff:
		return "poweroff"
	case StopReboot:
		return "reboot"
	case StopPanic:
		return "panic"
	case StopTripleFault:
		return "triple-fault"
	case StopError:
		return "error"
	case StopUser:
		return "user-quit"
	}
	return "unknown"
}

// Result is how a VM ended.
type Result struct {
	Reason StopReason
	Err    error // set for StopError
}

// Machine is one VM. Build it with New, run it once with Run.
type Machine struct {
	cfg Config
	log *slog.Logger
	// kernelLoader and kaslr say how the kernel was loaded (metrics).
	kernelLoader string
	kaslr        bool
	start        time.Time // process-level reference for boot timing

	sys   *kvm.System
	vm    *kvm.VM
	mem   *memory.Guest
	vcpus []*kvm.VCPU
	// vcpuStats are KVM's counters of each vCPU, for the metrics; empty
	// where the kernel has no KVM_GET_STATS_FD.
	vcpuStats []*kvm.Stats

	pio, mmio *devices.Bus
	serial    *devices.Serial
	pciWindow *acpi.PCIWindow // set when there is a PCI bus to describe
	closers   []io.Closer
	disks     []*blk.Device       // in --disk order, for their counters
	nets      []*virtionet.Device // in --net order, for their counters
	rng       *rng.Device         // with Config.RNG, for its counters
	vsock     *vsock.Device       // with Config.Vsock, for its counters
	balloon   *balloon.Device     // with Config.Balloon, for its counters

	metrics metrics
	pause   pauser

	stopOnce sync.Once
	panicked atomic.Bool // the console showed a kernel panic
	stopping atomic.Bool
	stopped  chan struct{}
	result   Result
}

// New builds the VM described by cfg: nothing runs until Run. cfg should
// have passed Validate. start is when the VMM process started, for the boot
// timer.
func New(cfg Config, log *slog.Logger, start time.Time) (*Machine, error) {
	m := &Machine{cfg: cfg, log: log, start: start, stopped: make(chan struct{})}
	if err := m.build(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// build creates everything in order, timing each step for the metrics;
// on error, Close releases what exists.
func (m *Machine) build() error {
	if err := m.openMetrics(); err != nil {
		return err
	}
	last := time.Now()
	m.metrics.phases = append(m.metrics.phases, Phase{Name: "process", Ms: ms(last.Sub(m.start))})
	step := func(name string, f func() error) error {
		err := f()
		now := time.Now()
		m.metrics.phases = append(m.metrics.phases, Phase{Name: name, Ms: ms(now.Sub(last))})
		last = now
		return err
	}
	var entry bootEntry
	for _, s := range []struct {
		name string
		f    func() error
	}{
		{"kvm", m.setupVM},
		{"memory", m.setupMemory},
		{"devices", func() error {
			if err := m.setupDevices(); err != nil {
				return err
			}
			return m.setupPCI()
		}},
		{"load", func() (err error) { entry, err = m.loadGuest(); return err }},
		{"vcpus", func() error { return m.setupVCPUs(entry) }},
	} {
		if err := step(s.name, s.f); err != nil {
			return err
		}
	}
	m.metrics.built = last
	return nil
}

// setupVM opens KVM and creates the VM with its in-kernel interrupt
// controllers and PIT.
func (m *Machine) setupVM() error {
	kvmPath := m.cfg.KVMPath
	if kvmPath == "" {
		kvmPath = "/dev/kvm"
	}
	var err error
	if m.sys, err = kvm.Open(kvmPath); err != nil {
		return err
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return fmt.Errorf("create vm: %w", err)
	}
	if err := m.vm.SetTSSAddr(boot.KVMTSSAddr); err != nil {
		return fmt.Errorf("set tss address: %w", err)
	}
	if err := m.vm.SetIdentityMapAddr(boot.KVMIdentityMapAddr); err != nil {
		return fmt.Errorf("set identity map address: %w", err)
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("create irqchip: %w", err)
	}
	if err := m.vm.CreatePIT2(); err != nil {
		return fmt.Errorf("create pit: %w", err)
	}
	return nil
}

func (m *Machine) setupMemory() error {
	var err error
	m.mem, err = memory.New(boot.RAMRegions(m.cfg.MemoryMiB << 20))
	if err != nil {
		return err
	}
	for i, r := range m.mem.Regions() {
		if err := m.vm.SetUserMemoryRegion(uint32(i), r.Base, r.Host(), 0); err != nil {
			return fmt.Errorf("register guest memory %#x+%#x: %w", r.Base, r.Size(), err)
		}
	}
	return nil
}

// bootEntry is the boot vCPU's state at the kernel entry point.
type bootEntry struct {
	regs     kvm.Regs
	setSregs func(*kvm.Sregs) // adjusts the vCPU's reset-state sregs
}

// loadGuest puts the kernel, initrd, command line and firmware tables in
// guest memory and returns the boot vCPU's entry state.
func (m *Machine) loadGuest() (bootEntry, error) {
	var regs kvm.Regs
	var entry bootEntry
	kf, err := os.Open(m.cfg.KernelPath)
	if err != nil {
		return bootEntry{}, fmt.Errorf("kernel: %w", err)
	}
	defer kf.Close()
	fi, err := kf.Stat()
	if err != nil {
		return bootEntry{}, fmt.Errorf("kernel: %w", err)
	}
	format, err := SniffKernel(kf)
	if err != nil {
		return bootEntry{}, fmt.Errorf("kernel %s: %w", m.cfg.KernelPath, err)
	}

	rsdp, err := acpi.Write(m.mem, acpi.Config{NumCPUs: m.cfg.CPUs, PCI: m.pciWindow})
	if err != nil {
		return bootEntry{}, fmt.Errorf("acpi tables: %w", err)
	}
	if err := boot.WriteResetVector(m.mem); err != nil {
		return bootEntry{}, err
	}
	if err := boot.WriteGDT(m.mem); err != nil {
		return bootEntry{}, err
	}
	cr3, err := boot.WritePageTables(m.mem)
	if err != nil {
		return bootEntry{}, err
	}
	e820 := boot.E820Map(m.mem.Regions())

	switch format {
	case KernelBzImage:
		k, initrdAddr, initrdSize, err := m.loadBzImage(kf, fi.Size())
		if err != nil {
			return bootEntry{}, err
		}
		if err := boot.WriteCmdline(m.mem, boot.CmdlineAddr, m.cfg.Cmdline, int(k.CmdlineSize)); err != nil {
			return bootEntry{}, fmt.Errorf("--cmdline: %w", err)
		}
		err = boot.WriteBootParams(m.mem, k, boot.LinuxParams{
			CmdlineAddr: boot.CmdlineAddr, CmdlineLen: len(m.cfg.Cmdline),
			InitrdAddr: initrdAddr, InitrdSize: initrdSize,
			E820: e820, RSDPAddr: rsdp,
		})
		if err != nil {
			return bootEntry{}, err
		}
		entry.setSregs = func(s *kvm.Sregs) { boot.LongModeSregs(s, cr3) }
		regs = boot.LinuxRegs(k.Entry64, boot.ZeroPageAddr)
	case KernelELFPVH:
		k, err := boot.LoadPVH(m.mem, kf, fi.Size())
		if err != nil {
			return bootEntry{}, fmt.Errorf("kernel %s: %w", m.cfg.KernelPath, err)
		}
		if err := boot.WriteCmdline(m.mem, boot.CmdlineAddr, m.cfg.Cmdline, boot.CmdlineMax); err != nil {
			return bootEntry{}, fmt.Errorf("--cmdline: %w", err)
		}
		initrdAddr, initrdSize, err := m.loadInitrd(k.End, boot.LowRAMEnd)
		if err != nil {
			return bootEntry{}, err
		}
		startInfo, err := boot.WritePVHStartInfo(m.mem, boot.PVHParams{
			CmdlineAddr: boot.CmdlineAddr,
			InitrdAddr:  initrdAddr, InitrdSize: initrdSize,
			E820: e820, RSDPAddr: rsdp,
		})
		if err != nil {
			return bootEntry{}, err
		}
		entry.setSregs = boot.ProtectedModeSregs
		regs = boot.PVHRegs(k.Entry32, startInfo)
		m.kernelLoader = LoaderPVH
	}
	entry.regs = regs
	return entry, nil
}

// Kernel loaders, as the metrics name them.
const (
	// LoaderUnpacked: vmm decompressed the bzImage's kernel itself and
	// entered the kernel proper (boot.OpenBzImage).
	LoaderUnpacked = "bzimage-unpacked"
	// LoaderBzImage: the bzImage decompressed itself in the guest.
	LoaderBzImage = "bzimage"
	// LoaderPVH: an ELF vmlinux entered through its PVH note.
	LoaderPVH = "pvh"
)

// loadBzImage loads a bzImage and the initrd. Unless the configuration
// says otherwise, vmm unpacks the kernel itself (boot.OpenBzImage): the
// initrd goes to the top of low RAM first, and the kernel below it, at a
// random place unless the command line says "nokaslr". A bzImage vmm
// cannot unpack (another compression format), or a command line with
// options that steer the decompressor's KASLR (mem=, memmap=, ...),
// leaves the kernel to decompress itself in the guest.
func (m *Machine) loadBzImage(kf *os.File, size int64) (k *boot.BzImage, initrdAddr, initrdSize uint64, err error) {
	guest := m.cfg.GuestDecompress
	if opt := boot.NeedsGuestDecompress(m.cfg.Cmdline); opt != "" && !guest {
		m.log.Debug("the kernel decompresses itself: its KASLR reads an option vmm does not", "option", opt)
		guest = true
	}
	if !guest {
		p, err := boot.OpenBzImage(kf, size)
		switch {
		case err == nil:
			defer p.Close()
			initrdAddr, initrdSize, err := m.loadInitrd(p.MinAddr()+p.Span(), p.InitrdAddrMax())
			if err != nil {
				return nil, 0, 0, err
			}
			limit := uint64(boot.LowRAMEnd)
			if initrdSize != 0 {
				limit = initrdAddr
			}
			k, err := p.Load(m.mem, boot.Placement{
				Limit:     limit,
				Randomize: !boot.HasCmdlineWord(m.cfg.Cmdline, "nokaslr"),
				Rand:      rand.Reader,
			})
			if err != nil {
				return nil, 0, 0, fmt.Errorf("kernel %s: %w", m.cfg.KernelPath, err)
			}
			m.kernelLoader, m.kaslr = LoaderUnpacked, k.KASLR
			m.log.Debug("kernel unpacked", "load", fmt.Sprintf("%#x", k.LoadAddr), "kaslr", k.KASLR)
			return k, initrdAddr, initrdSize, nil
		case !errors.Is(err, boot.ErrNotUnpackable):
			return nil, 0, 0, fmt.Errorf("kernel %s: %w", m.cfg.KernelPath, err)
		}
		m.log.Debug("the kernel decompresses itself", "reason", err)
	}
	k, err = boot.LoadBzImage(m.mem, kf, size)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("kernel %s: %w", m.cfg.KernelPath, err)
	}
	initrdAddr, initrdSize, err = m.loadInitrd(k.End, k.InitrdAddrMax)
	if err != nil {
		return nil, 0, 0, err
	}
	m.kernelLoader = LoaderBzImage
	return k, initrdAddr, initrdSize, nil
}

// loadInitrd reads the initrd file straight into guest memory, as high as
// the kernel allows, and returns where it went (0, 0 without an initrd).
func (m *Machine) loadInitrd(kernelEnd, addrMax uint64) (addr, size uint64, err error) {
	if m.cfg.InitrdPath == "" {
		return 0, 0, nil
	}
	f, err := os.Open(m.cfg.InitrdPath)
	if err != nil {
		return 0, 0, fmt.Errorf("initrd: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("initrd: %w", err)
	}
	size = uint64(fi.Size())
	addr, err = boot.PlaceInitrd(m.mem.Regions(), kernelEnd, addrMax, size)
	if err != nil {
		return 0, 0, fmt.Errorf("initrd %s: %w", m.cfg.InitrdPath, err)
	}
	dst, err := m.mem.Slice(addr, size)
	if err != nil {
		return 0, 0, fmt.Errorf("initrd: %w", err)
	}
	if _, err := io.ReadFull(f, dst); err != nil {
		return 0, 0, fmt.Errorf("initrd %s: read: %w", m.cfg.InitrdPath, err)
	}
	return addr, size, nil
}

func (m *Machine) setupVCPUs(entry bootEntry) error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("supported cpuid: %w", err)
	}
	tscDeadline, _ := m.sys.CheckExtension(kvm.CapTSCDeadlineTimer)
	statsFD, _ := m.vm.CheckExtension(kvm.CapBinaryStatsFD)
	for id := 0; id < m.cfg.CPUs; id++ {
		c, err := m.vm.CreateVCPU(id)
		if err != nil {
			return fmt.Errorf("create vcpu %d: %w", id, err)
		}
		m.vcpus = append(m.vcpus, c)
		if statsFD > 0 {
			if st, err := c.OpenStats(); err == nil {
				m.vcpuStats = append(m.vcpuStats, st)
				m.closers = append(m.closers, st)
			} else {
				m.log.Debug("metrics: no KVM statistics", "vcpu", id, "err", err)
			}
		}
		if err := configureVCPU(c, vcpuCPUID(supported, id, m.cfg.CPUs, tscDeadline > 0)); err != nil {
			return err
		}
	}
	// Only the boot vCPU starts at the kernel entry; the others wait for
	// INIT/SIPI from the guest, as the in-kernel local APIC models.
	bsp := m.vcpus[0]
	sregs, err := bsp.GetSregs()
	if err != nil {
		return fmt.Errorf("vcpu 0: get sregs: %w", err)
	}
	entry.setSregs(&sregs)
	if err := bsp.SetSregs(&sregs); err != nil {
		return fmt.Errorf("vcpu 0: set sregs: %w", err)
	}
	if err := bsp.SetRegs(&entry.regs); err != nil {
		return fmt.Errorf("vcpu 0: set regs: %w", err)
	}
	return nil
}

// Run starts every vCPU and blocks until the VM stops.
func (m *Machine) Run() Result {
	m.startConsoleInput()
	var wg sync.WaitGroup
	for _, c := range m.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.runVCPU(c)
		}()
	}
	<-m.stopped
	wg.Wait()
	m.flushConsole()
	if m.metrics.out != nil {
		if err := m.writeMetrics(); err != nil {
			m.log.Warn("write metrics", "err", err)
		}
	}
	return m.result
}

// Stop ends the VM with the given result; the first call wins. Safe from any
// goroutine, including vCPU and device goroutines.
func (m *Machine) Stop(r Result) {
	m.stopOnce.Do(func() {
		if m.panicked.Load() && (r.Reason == StopReboot || r.Reason == StopPowerOff) {
			r = Result{Reason: StopPanic} // panic=N reboots after a panic
		}
		m.result = r
		m.log.Debug("stopping", "reason", r.Reason, "err", r.Err)
		m.stopping.Store(true)
		close(m.stopped)
		for _, c := range m.vcpus {
			c.Kick()
		}
		m.wakeParked()
	})
}

// Close releases everything New created. Call it after Run returns (or
// instead of Run).
func (m *Machine) Close() error {
	for i := len(m.closers) - 1; i >= 0; i-- {
		m.closers[i].Close()
	}
	m.closers = nil
	for _, c := range m.vcpus {
		c.Close()
	}
	m.vcpus = nil
	if m.vm != nil {
		m.vm.Close()
		m.vm = nil
	}
	if m.mem != nil {
		m.mem.Close()
		m.mem = nil
	}
	if m.sys != nil {
		m.sys.Close()
		m.sys = nil
	}
	return nil
}
