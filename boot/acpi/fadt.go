package acpi

import (
	"encoding/binary"

	"github.com/vmm-dev/vmm/boot"
)

// FADT revision 6.0 (ACPI 6.5, 5.2.9): 276 bytes. Field offsets from the
// start of the table.
const (
	fadtSize         = 276
	fadtMajor        = 6
	fadtMinor        = 0
	fadtIAPCBootArch = 109 // u16
	fadtFlags        = 112 // u32
	fadtResetReg     = 116 // GAS
	fadtResetValue   = 128 // u8
	fadtMinorVersion = 131 // u8
	fadtXDSDT        = 140 // u64
	fadtSleepControl = 244 // GAS
	fadtSleepStatus  = 256 // GAS
	fadtHypervisorID = 268 // u64

	// IAPC_BOOT_ARCH: no LEGACY_DEVICES, no 8042 (bit 1 clear: Linux then
	// does not probe the i8042), VGA not present, CMOS RTC not present.
	iapcVGANotPresent  = 1 << 2
	iapcCMOSNotPresent = 1 << 5

	fadtWBINVD         = 1 << 0
	fadtPowerButton    = 1 << 4 // no fixed-feature power button
	fadtSleepButton    = 1 << 5 // no fixed-feature sleep button
	fadtResetRegSup    = 1 << 10
	fadtHWReducedACPI  = 1 << 20
	hypervisorVendorID = "VMMDEV"
)

// buildFADT describes a hardware-reduced platform: no SCI, PM timer, GPEs or
// FACS; the sleep control/status registers at boot.ACPISleepControlPort and
// boot.ACPISleepStatusPort, the reset register at boot.ACPIResetPort.
func buildFADT(dsdtAddr uint64) []byte {
	le := binary.LittleEndian
	t := newTable("FACP", fadtSize, fadtMajor)
	le.PutUint16(t[fadtIAPCBootArch:], iapcVGANotPresent|iapcCMOSNotPresent)
	le.PutUint32(t[fadtFlags:], fadtWBINVD|fadtPowerButton|fadtSleepButton|fadtResetRegSup|fadtHWReducedACPI)
	putGAS(t[fadtResetReg:], boot.ACPIResetPort)
	t[fadtResetValue] = boot.ACPIResetValue
	t[fadtMinorVersion] = fadtMinor
	// The 32-bit DSDT field (40) stays 0: X_DSDT takes precedence.
	le.PutUint64(t[fadtXDSDT:], dsdtAddr)
	putGAS(t[fadtSleepControl:], boot.ACPISleepControlPort)
	putGAS(t[fadtSleepStatus:], boot.ACPISleepStatusPort)
	copy(t[fadtHypervisorID:fadtHypervisorID+8], hypervisorVendorID)
	return finish(t)
}
