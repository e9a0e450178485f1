package acpi

import (
	"encoding/binary"

	"github.com/vmm-dev/vmm/boot"
)

// MADT (ACPI 6.5, 5.2.12), revision 5.
const (
	madtRevision   = 5
	madtFixedSize  = headerSize + 8 // + local APIC address, flags
	madtLAPICType  = 0
	madtLAPICSize  = 8
	madtIOAPICType = 1
	madtIOAPICSize = 12
	lapicEnabled   = 1 << 0
)

// buildMADT lists one enabled Processor Local APIC per vCPU (ACPI processor
// UID and APIC ID both equal to the index) and the IOAPIC with GSI base 0.
// Flags stay 0: no PCAT_COMPAT, as a hardware-reduced platform has no
// 8259 PIC to mask. Without interrupt source overrides, ISA IRQ n is GSI n,
// as KVM's default routing has it.
func buildMADT(cfg *Config) []byte {
	le := binary.LittleEndian
	t := newTable("APIC", madtFixedSize+cfg.NumCPUs*madtLAPICSize+madtIOAPICSize, madtRevision)
	le.PutUint32(t[headerSize:], boot.LAPICAddr)
	// Flags (headerSize+4) stay 0.
	off := madtFixedSize
	for i := range cfg.NumCPUs {
		e := t[off : off+madtLAPICSize]
		e[0], e[1] = madtLAPICType, madtLAPICSize
		e[2] = byte(i) // ACPI processor UID
		e[3] = byte(i) // APIC ID
		le.PutUint32(e[4:], lapicEnabled)
		off += madtLAPICSize
	}
	e := t[off : off+madtIOAPICSize]
	e[0], e[1] = madtIOAPICType, madtIOAPICSize
	e[2] = IOAPICID
	le.PutUint32(e[4:], boot.IOAPICAddr)
	le.PutUint32(e[8:], 0) // GSI base
	return finish(t)
}
