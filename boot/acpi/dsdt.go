package acpi

import (
	"fmt"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/boot/acpi/aml"
)

// DSDT revision 2: integers are 64 bits.
const dsdtRevision = 2

// buildDSDT returns the DSDT: \_S5_ for poweroff, and in \_SB_ COM1, the
// pvpanic device, the virtio-mmio devices and the PCI host bridge.
func buildDSDT(cfg *Config) ([]byte, error) {
	devs := []aml.Object{com1(), pvpanic()}
	for i, d := range cfg.VirtioMMIO {
		devs = append(devs, virtioMMIO(i, d))
	}
	if cfg.PCI != nil {
		devs = append(devs, pciHostBridge(cfg.PCI))
	}
	body, err := aml.Encode(
		// SLP_TYPa = 5 (boot.ACPISleepTypeS5); the rest is unused in
		// hardware-reduced mode. At the root, "_S5" and "_SB" need no '\'
		// (iasl drops it too).
		aml.Name("_S5", aml.Package(aml.Integer(boot.ACPISleepTypeS5), aml.Integer(0), aml.Integer(0), aml.Integer(0))),
		aml.Scope("_SB", devs...),
	)
	if err != nil {
		return nil, fmt.Errorf("acpi: DSDT: %w", err)
	}
	t := newTable("DSDT", headerSize+len(body), dsdtRevision)
	copy(t[headerSize:], body)
	return finish(t), nil
}

func com1() aml.Object {
	return aml.Device("COM1",
		aml.Name("_HID", aml.EISAID("PNP0501")),
		aml.Name("_UID", aml.Integer(0)),
		aml.Name("_CRS", aml.ResourceTemplate(
			aml.IO{Min: boot.COM1Port, Max: boot.COM1Port, Align: 0, Len: boot.COM1PortLen},
			aml.IRQNoFlags{IRQs: []uint8{boot.COM1GSI}},
		)),
	)
}

// pvpanic is QEMU's pvpanic ISA device, which Linux's pvpanic driver binds
// by _HID.
func pvpanic() aml.Object {
	return aml.Device("PEVT",
		aml.Name("_HID", aml.String("QEMU0001")),
		aml.Name("_CRS", aml.ResourceTemplate(
			aml.IO{Min: boot.PVPanicPort, Max: boot.PVPanicPort, Align: 1, Len: 1},
		)),
		aml.Name("_STA", aml.Integer(0x0f)),
	)
}

// virtioMMIO describes virtio-mmio device i, named VRxx with xx its index
// in hex, bound by Linux's virtio_mmio driver through _HID LNRO0005.
func virtioMMIO(i int, d MMIODevice) aml.Object {
	return aml.Device(fmt.Sprintf("VR%02X", i),
		aml.Name("_HID", aml.String("LNRO0005")),
		aml.Name("_UID", aml.Integer(uint64(i))),
		aml.Name("_CRS", aml.ResourceTemplate(
			aml.Memory32Fixed{ReadWrite: true, Base: uint32(d.Base), Len: d.Size},
			aml.Interrupt{Edge: true, GSIs: []uint32{d.GSI}},
		)),
	)
}

// pciHostBridge describes the host bridge: its bus range, the conf1 ports
// it consumes and the windows it forwards to the bus.
func pciHostBridge(p *PCIWindow) aml.Object {
	res := []aml.Resource{
		aml.WordBusNumber{Min: uint16(p.BusStart), Max: uint16(p.BusEnd)},
		aml.IO{Min: boot.PCIConfigAddressPort, Max: boot.PCIConfigAddressPort, Align: 1, Len: boot.PCIConfigPortLen},
	}
	if p.IOSize > 0 {
		res = append(res, aml.WordIO{Min: p.IOBase, Max: uint16(uint32(p.IOBase) + p.IOSize - 1)})
	}
	if p.Mem32Size > 0 {
		res = append(res, aml.DWordMemory{Min: p.Mem32Base, Max: p.Mem32Base + p.Mem32Size - 1})
	}
	return aml.Device("PCI0",
		aml.Name("_HID", aml.EISAID("PNP0A08")),
		aml.Name("_CID", aml.EISAID("PNP0A03")),
		aml.Name("_UID", aml.Integer(0)),
		aml.Name("_SEG", aml.Integer(0)),
		aml.Name("_BBN", aml.Integer(uint64(p.BusStart))),
		aml.Name("_CRS", aml.ResourceTemplate(res...)),
	)
}
