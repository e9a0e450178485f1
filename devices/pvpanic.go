package devices

// PVPanicSize is the pvpanic device's window: one byte at port 0x505.
const PVPanicSize = 1

// pvpanic event bits (QEMU's pvpanic specification, docs/specs/pvpanic.rst).
const (
	PVPanicPanicked    = 0x01 // the guest panicked
	PVPanicCrashLoaded = 0x02 // the guest panicked and is starting a crash kernel
)

// PVPanic is the pvpanic I/O port. Reading it returns the supported events
// (PANICKED and CRASH_LOADED), which makes Linux's pvpanic driver report
// panics to it. A write with PANICKED set calls onPanic with the written
// bits that are supported; a CRASH_LOADED-only write means a crash kernel is
// taking over, so the guest should keep running, and is ignored.
type PVPanic struct {
	onPanic func(event byte)
}

// NewPVPanic returns the device; onPanic may be nil.
func NewPVPanic(onPanic func(event byte)) *PVPanic {
	return &PVPanic{onPanic: onPanic}
}

// Read implements Device.
func (p *PVPanic) Read(offset uint64, data []byte) {
	for i := range data {
		if offset+uint64(i) == 0 {
			data[i] = PVPanicPanicked | PVPanicCrashLoaded
		} else {
			data[i] = 0xFF
		}
	}
}

// Write implements Device.
func (p *PVPanic) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	ev := data[0] & (PVPanicPanicked | PVPanicCrashLoaded)
	if ev&PVPanicPanicked != 0 && p.onPanic != nil {
		p.onPanic(ev)
	}
}
