package devices

import "sync"

// ACPISize is the window of the hardware-reduced ACPI registers: register
// one ACPI at port 0x600 with this size. Offset 0 is the sleep control
// register, 1 the sleep status register, 2 the reset register; each is one
// byte wide, as the FADT must describe them.
const ACPISize = 3

// Sleep control and status register bits (ACPI 6.5, "Sleep Control and Status
// Registers" of the fixed hardware for hardware-reduced platforms) and
// the values the firmware tables promise.
const (
	acpiSleepEnable    = 0x20 // SLP_EN
	acpiSleepTypeShift = 2    // SLP_TYP is bits 2..4
	acpiSleepTypeMask  = 0x07
	acpiWakeStatus     = 0x80 // WAK_STS, write 1 to clear

	// ACPISleepTypeS5 is the SLP_TYP value of _S5 (soft off) in the DSDT.
	ACPISleepTypeS5 = 5
	// ACPIResetValue is the FADT RESET_VALUE written to the reset register.
	ACPIResetValue = 0x01
)

// ACPI implements the sleep control, sleep status and reset registers of a
// hardware-reduced ACPI platform.
//
// Writing SLP_EN with SLP_TYP = 5 (S5) calls onPowerOff; the sleep status
// then stays clear, so the guest spins reading it until the machine stops the
// vCPUs. Other sleep states are not implemented: the request wakes at once
// (WAK_STS is set), so a guest waiting for wake-up resumes rather than
// spinning forever. Writing ACPIResetValue to the reset register calls
// onReset. The control and reset registers read as 0.
type ACPI struct {
	onPowerOff func()
	onReset    func()

	mu     sync.Mutex // protects status
	status byte       // sleep status register
}

// NewACPI returns the registers; either callback may be nil.
func NewACPI(onPowerOff, onReset func()) *ACPI {
	return &ACPI{onPowerOff: onPowerOff, onReset: onReset}
}

// Read implements Device.
func (a *ACPI) Read(offset uint64, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range data {
		switch offset + uint64(i) {
		case 1:
			data[i] = a.status
		case 0, 2:
			data[i] = 0
		default:
			data[i] = 0xFF
		}
	}
}

// Write implements Device.
func (a *ACPI) Write(offset uint64, data []byte) {
	var powerOff, reset bool
	a.mu.Lock()
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			if v&acpiSleepEnable == 0 {
				continue
			}
			if (v>>acpiSleepTypeShift)&acpiSleepTypeMask == ACPISleepTypeS5 {
				powerOff = true
			} else {
				a.status |= acpiWakeStatus
			}
		case 1:
			a.status &^= v & acpiWakeStatus
		case 2:
			if v == ACPIResetValue {
				reset = true
			}
		}
	}
	a.mu.Unlock()
	if powerOff && a.onPowerOff != nil {
		a.onPowerOff()
	}
	if reset && a.onReset != nil {
		a.onReset()
	}
}
