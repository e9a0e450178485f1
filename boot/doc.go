// Package boot owns everything that puts a Linux kernel into guest memory and
// describes the machine to it, without touching KVM: the fixed guest-physical
// layout (layout.go), the bzImage and ELF/PVH loaders, the zero page and PVH
// start info, the command line, the e820 map and initrd placement, the boot
// GDT, identity page tables and initial register state. Firmware tables live
// in the acpi subpackage.
//
// Loading is not configuring: LoadBzImage and LoadPVH only copy the kernel
// and report what they found (entry point, end address, setup header); the
// Write* functions then describe the machine. Every value read from a kernel
// file is validated before it is used as an address, length or offset, and
// every guest access goes through memory.Guest's checked accessors.
package boot
