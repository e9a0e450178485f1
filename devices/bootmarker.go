package devices

import (
	"sync"
	"time"
)

// BootMarkerSize is the boot-marker port's window: one byte at port 0x440.
const BootMarkerSize = 1

// MaxBootMarks bounds how many marks a BootMarker keeps; the guest can write
// the port any number of times.
const MaxBootMarks = 256

// Mark is one write to the boot-marker port.
type Mark struct {
	Value byte
	At    time.Time
}

// BootMarker timestamps writes to the debug port the guest's init uses to
// say how far it got (the first write means init was reached). Each write
// calls onMark with the byte and the time it arrived; the first MaxBootMarks
// are also kept for Marks. Reads return 0xFF: the port is write-only.
type BootMarker struct {
	onMark func(value byte, at time.Time)

	mu      sync.Mutex // protects marks and dropped
	marks   []Mark
	dropped uint64
}

// NewBootMarker returns the device; onMark may be nil.
func NewBootMarker(onMark func(value byte, at time.Time)) *BootMarker {
	return &BootMarker{onMark: onMark}
}

// Read implements Device.
func (b *BootMarker) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
}

// Write implements Device. Only a write's first byte at offset 0 counts.
func (b *BootMarker) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	m := Mark{Value: data[0], At: time.Now()}
	b.mu.Lock()
	if len(b.marks) < MaxBootMarks {
		b.marks = append(b.marks, m)
	} else {
		b.dropped++
	}
	b.mu.Unlock()
	if b.onMark != nil {
		b.onMark(m.Value, m.At)
	}
}

// Marks returns a copy of the kept marks, oldest first, and how many later
// marks were not kept.
func (b *BootMarker) Marks() ([]Mark, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Mark(nil), b.marks...), b.dropped
}
