// Package devices owns the I/O buses and the legacy devices that sit behind
// port-I/O and MMIO exits: the 16550A UART, the i8042 reset path, the
// hardware-reduced ACPI sleep and reset registers, pvpanic, the boot-marker
// port and a discarding sink for known-harmless ports.
//
// Nothing here talks to KVM. The machine routes each I/O exit to a Bus, which
// finds the Device whose register window holds the address; devices signal the
// guest through the Interrupt interface (an irqfd in the machine) and report
// lifecycle events (reset, power-off, panic) through callbacks.
//
// Concurrency: a Bus may be read from any number of vCPU goroutines at once
// without locks; each device guards its own registers with its own mutex.
// Callbacks run on the vCPU goroutine that made the access, with no device
// lock held, and must not block.
//
// Every value a device receives comes from the guest: offsets and lengths are
// checked by the Bus and again by the device, registers ignore reserved bits,
// and nothing a guest writes can make a device panic or grow without bound.
package devices
