package machine

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/kvm"
)

// exitMachine is a Machine with the legacy port devices and empty buses,
// enough to serve exits without KVM.
func exitMachine(t *testing.T) *Machine {
	m := &Machine{log: slog.New(slog.DiscardHandler), stopped: make(chan struct{})}
	m.pio = devices.NewBus("pio")
	m.mmio = devices.NewBus("mmio")
	irq := devices.InterruptFunc(func() error { return nil })
	m.serial = devices.NewSerial(irq, newPanicWatcher(io.Discard, func() {}))
	t.Cleanup(func() { m.serial.Close() })
	for _, d := range []struct {
		base, size uint64
		dev        devices.Device
	}{
		{boot.COM1Port, devices.SerialSize, m.serial},
		{boot.ACPISleepControlPort, devices.ACPISize, devices.NewACPI(func() {}, func() {})},
		{boot.PVPanicPort, devices.PVPanicSize, devices.NewPVPanic(func(byte) {})},
	} {
		if err := m.pio.Register(d.base, d.size, d.dev); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestHandleExitDoesNotAllocate guards the exit path: console output,
// register reads, unclaimed ports and MMIO must not allocate per exit.
func TestHandleExitDoesNotAllocate(t *testing.T) {
	m := exitMachine(t)
	buf := make([]byte, 8)
	exits := []kvm.Exit{
		&kvm.ExitIO{Port: boot.COM1Port, Size: 1, Count: 1, Out: true, Data: []byte{'x'}}, // THR
		&kvm.ExitIO{Port: boot.COM1Port + 5, Size: 1, Count: 1, Data: buf[:1]},            // LSR
		&kvm.ExitIO{Port: boot.COM1Port, Size: 1, Count: 4, Out: true, Data: []byte("outs")},
		&kvm.ExitIO{Port: boot.ACPISleepControlPort + 1, Size: 1, Count: 1, Data: buf[:1]},
		&kvm.ExitIO{Port: boot.PVPanicPort, Size: 1, Count: 1, Data: buf[:1]},
		&kvm.ExitIO{Port: 0x80, Size: 1, Count: 1, Out: true, Data: buf[:1]}, // POST code: nobody
		&kvm.ExitIO{Port: 0xCFC, Size: 4, Count: 1, Data: buf[:4]},           // no PCI bus here
		&kvm.ExitMMIO{Addr: 0xD000_0000, Data: buf[:4]},
		&kvm.ExitMMIO{Addr: 0xD000_0000, Data: buf[:8], Write: true},
		&kvm.ExitInterrupted{},
	}
	for _, e := range exits {
		if m.handleExit(0, e) {
			t.Fatalf("%T %+v: vCPU done", e, e)
		}
		if allocs := testing.AllocsPerRun(200, func() { m.handleExit(0, e) }); allocs != 0 {
			t.Errorf("%T %+v: %v allocations per exit, want 0", e, e, allocs)
		}
	}
	if m.stopping.Load() {
		t.Fatal("an ordinary exit stopped the machine")
	}
}

func TestHandleExitStops(t *testing.T) {
	cases := []struct {
		exit kvm.Exit
		want StopReason
	}{
		{&kvm.ExitShutdown{}, StopTripleFault},
		{&kvm.ExitSystemEvent{Type: systemEventShutdown}, StopPowerOff},
		{&kvm.ExitSystemEvent{Type: systemEventReset}, StopReboot},
		{&kvm.ExitSystemEvent{Type: systemEventCrash}, StopPanic},
		{&kvm.ExitSystemEvent{Type: 99}, StopError},
		{&kvm.ExitInternalError{Suberror: 1}, StopError},
		{&kvm.ExitFailEntry{Reason: 7}, StopError},
		{&kvm.ExitUnknown{Reason: 1234}, StopError},
	}
	for _, tc := range cases {
		m := exitMachine(t)
		if !m.handleExit(0, tc.exit) {
			t.Errorf("%T: vCPU goes on", tc.exit)
		}
		if m.result.Reason != tc.want {
			t.Errorf("%T %+v: stopped with %v, want %v", tc.exit, tc.exit, m.result.Reason, tc.want)
		}
		// After the stop, an interrupted or halted vCPU is done too.
		if !m.handleExit(0, &kvm.ExitInterrupted{}) || !m.handleExit(0, &kvm.ExitHLT{}) {
			t.Errorf("%T: vCPU goes on after the stop", tc.exit)
		}
	}
}

// TestCPUStateAfterReset: registers in the reset state (what KVM leaves on
// AMD after a triple fault) are reported as such, not as a location.
func TestCPUStateAfterReset(t *testing.T) {
	sys, err := kvm.Open("/dev/kvm")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			t.Skipf("no usable KVM: %v", err)
		}
		t.Fatal(err)
	}
	defer sys.Close()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := cpuState(c); !strings.Contains(got, "already reset") {
		t.Errorf("fresh vCPU: %q", got)
	}
	s, err := c.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CR0 |= 1 // protected mode: no longer the reset state
	if err := c.SetSregs(&s); err != nil {
		t.Fatal(err)
	}
	if got := cpuState(c); !strings.Contains(got, "rip=0xfff0") {
		t.Errorf("vCPU in protected mode: %q", got)
	}
}

// TestPauseStates: without vCPUs Pause has nothing to wait for; the state
// follows Pause and Resume, and a stopped VM refuses both, also from a
// Pause that was waiting.
func TestPauseStates(t *testing.T) {
	m := exitMachine(t)
	if err := m.Pause(); err != nil || !m.Paused() {
		t.Fatalf("pause: %v, paused %v", err, m.Paused())
	}
	if err := m.Pause(); err != nil {
		t.Fatalf("pause again: %v", err)
	}
	// A kicked vCPU that finds the VM running again goes on.
	if err := m.Resume(); err != nil || m.Paused() {
		t.Fatalf("resume: %v, paused %v", err, m.Paused())
	}
	if m.handleExit(0, &kvm.ExitInterrupted{}) {
		t.Fatal("an interrupted vCPU of a running VM is done")
	}
	m.Stop(Result{Reason: StopUser})
	if err := m.Pause(); !errors.Is(err, ErrStopped) {
		t.Fatalf("pause after stop: %v", err)
	}
	if err := m.Resume(); !errors.Is(err, ErrStopped) {
		t.Fatalf("resume after stop: %v", err)
	}
	if err := m.SetBalloon(1); err == nil {
		t.Fatal("a balloon target without a balloon was accepted")
	}
}
