package boot

import (
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// WriteResetVector puts real-mode code at ResetVectorAddr for the reset vector: pulse the reset line
// through the i8042 (mov al, 0xFE; out 0x64, al), then halt forever.
//
// There is no BIOS. Linux on hardware-reduced ACPI without EFI reboots by
// jumping to F000:FFF0 in real mode ("BIOS" reboot, chosen because
// efi_reboot_required() is true for such platforms and EFI is absent); with
// plain RAM there it would spin on zero bytes and never exit. With the stub,
// that path ends in the VMM's i8042 reset like reboot=k does.
func WriteResetVector(mem *memory.Guest) error {
	stub := [...]byte{
		0xB0, I8042ResetCommand, // mov al, 0xFE
		0xE6, I8042CommandPort, // out 0x64, al
		0xF4,       // hlt
		0xEB, 0xFD, // jmp back to hlt
	}
	if err := mem.WriteAt(stub[:], ResetVectorAddr); err != nil {
		return fmt.Errorf("boot: reset vector: %w", err)
	}
	return nil
}
