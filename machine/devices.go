package machine

import (
	"fmt"
	"io"
	"time"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/devices"
)

// Legacy ISA interrupt lines (GSIs on the IOAPIC).
const gsiCOM1 = 4

// setupDevices creates the buses and the legacy devices on them: COM1,
// the ACPI sleep/reset registers, i8042 (reset only), pvpanic and the boot
// marker. Their callbacks turn guest requests into stop reasons.
func (m *Machine) setupDevices() error {
	m.pio = devices.NewBus("pio")
	m.mmio = devices.NewBus("mmio")

	irq, err := newEventFD()
	if err != nil {
		return fmt.Errorf("serial: %w", err)
	}
	m.closers = append(m.closers, irq)
	if err := m.vm.RegisterIRQFD(irq.fd, gsiCOM1); err != nil {
		return fmt.Errorf("serial: irqfd: %w", err)
	}
	out := m.cfg.Console
	if out == nil {
		out = io.Discard
	}
	watch := newPanicWatcher(out, func() {
		m.panicked.Store(true)
		// Let the rest of the panic report reach the console first.
		time.AfterFunc(300*time.Millisecond, func() { m.Stop(Result{Reason: StopPanic}) })
	})
	m.serial = devices.NewSerial(irq, watch)
	m.closers = append(m.closers, m.serial)

	reboot := func() { m.Stop(Result{Reason: StopReboot}) }
	poweroff := func() { m.Stop(Result{Reason: StopPowerOff}) }
	panicked := func(byte) { m.Stop(Result{Reason: StopPanic}) }
	marker := func(_ byte, at time.Time) {
		if m.metrics.markBoot(at, m.exitsSoFar(), m.kvmExitStats()) {
			m.log.Info("guest reached init", "since_start", at.Sub(m.start).Round(time.Microsecond))
		}
	}

	for _, d := range []struct {
		name       string
		base, size uint64
		dev        devices.Device
	}{
		{"com1", boot.COM1Port, devices.SerialSize, m.serial},
		{"i8042", boot.I8042DataPort, devices.I8042Size, devices.NewI8042(reboot)},
		{"acpi", boot.ACPISleepControlPort, devices.ACPISize, devices.NewACPI(poweroff, reboot)},
		{"pvpanic", boot.PVPanicPort, devices.PVPanicSize, devices.NewPVPanic(panicked)},
		{"boot-marker", boot.BootMarkerPort, devices.BootMarkerSize, devices.NewBootMarker(marker)},
	} {
		if err := m.pio.Register(d.base, d.size, d.dev); err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
	}
	return nil
}

// startConsoleInput feeds Config.Input to the serial port until it ends.
func (m *Machine) startConsoleInput() {
	if m.cfg.Input == nil {
		return
	}
	go func() {
		if _, err := m.serial.ReadFrom(m.cfg.Input); err != nil {
			m.log.Debug("console input ended", "err", err)
		}
	}()
}

// flushConsole pushes out buffered guest output once the vCPUs have stopped.
func (m *Machine) flushConsole() {
	if err := m.serial.Close(); err != nil {
		m.log.Warn("console", "err", err)
	}
}
