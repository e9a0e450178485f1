package boot_test

import (
	"fmt"
	"os"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/boot/acpi"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// The order of calls to boot a bzImage through the 64-bit entry. The
// register values go to KVM_SET_SREGS/KVM_SET_REGS of vCPU 0 (sregs read
// from the vCPU first, so LongModeSregs keeps what it does not set).
func Example_bzImage() {
	run := func(kernelPath, initrdPath, cmdline string, memSize uint64, cpus int) error {
		mem, err := memory.New(boot.RAMRegions(memSize))
		if err != nil {
			return err
		}
		defer mem.Close()
		f, err := os.Open(kernelPath)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		k, err := boot.LoadBzImage(mem, f, st.Size())
		if err != nil {
			return err
		}
		p := boot.LinuxParams{CmdlineAddr: boot.CmdlineAddr, CmdlineLen: len(cmdline), E820: boot.E820Map(mem.Regions())}
		if err := boot.WriteCmdline(mem, boot.CmdlineAddr, cmdline, min(boot.CmdlineMax, int(k.CmdlineSize)+1)); err != nil {
			return err
		}
		if initrdPath != "" {
			initrd, err := os.ReadFile(initrdPath)
			if err != nil {
				return err
			}
			p.InitrdSize = uint64(len(initrd))
			if p.InitrdAddr, err = boot.PlaceInitrd(mem.Regions(), k.End, k.InitrdAddrMax, p.InitrdSize); err != nil {
				return err
			}
			if err := mem.WriteAt(initrd, p.InitrdAddr); err != nil {
				return err
			}
		}
		if p.RSDPAddr, err = acpi.Write(mem, acpi.Config{NumCPUs: cpus}); err != nil {
			return err
		}
		if err := boot.WriteBootParams(mem, k, p); err != nil {
			return err
		}
		if err := boot.WriteGDT(mem); err != nil {
			return err
		}
		cr3, err := boot.WritePageTables(mem)
		if err != nil {
			return err
		}
		var sregs kvm.Sregs // from KVM_GET_SREGS
		boot.LongModeSregs(&sregs, cr3)
		regs := boot.LinuxRegs(k.Entry64, boot.ZeroPageAddr)
		fmt.Printf("entry %#x, zero page %#x\n", regs.RIP, regs.RSI)
		return nil
	}
	_ = run
}

// The PVH entry differs in the loader, the start info and the CPU mode.
func Example_pvh() {
	run := func(mem *memory.Guest, vmlinux *os.File, size int64, cmdline string) error {
		k, err := boot.LoadPVH(mem, vmlinux, size)
		if err != nil {
			return err
		}
		if err := boot.WriteCmdline(mem, boot.CmdlineAddr, cmdline, boot.CmdlineMax); err != nil {
			return err
		}
		rsdp, err := acpi.Write(mem, acpi.Config{NumCPUs: 1})
		if err != nil {
			return err
		}
		si, err := boot.WritePVHStartInfo(mem, boot.PVHParams{
			CmdlineAddr: boot.CmdlineAddr, E820: boot.E820Map(mem.Regions()), RSDPAddr: rsdp,
		})
		if err != nil {
			return err
		}
		if err := boot.WriteGDT(mem); err != nil {
			return err
		}
		var sregs kvm.Sregs // from KVM_GET_SREGS
		boot.ProtectedModeSregs(&sregs)
		regs := boot.PVHRegs(k.Entry32, si)
		_ = regs
		return nil
	}
	_ = run
}
