// Command kvmsmoke proves that a /dev/kvm can run a guest: it creates a VM
// with one vCPU in real mode that writes two bytes to I/O port 0x440 and
// halts, prints every exit, and exits 0 only if they are exactly the
// expected ones. With -loop N it then runs a guest that does N port writes
// and reports the cost of one I/O exit round trip.
//
// It is the nested lane's own smoke test (images/testbed/run --add), built
// with CGO_ENABLED=0 so it runs in the test host without libraries.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

const (
	codeAddr = 0x1000
	memSize  = 1 << 16
	port     = 0x440
	// runTimeout bounds each KVM_RUN: a watchdog kicks the vCPU after it.
	runTimeout = 30 * time.Second
)

func main() {
	dev := flag.String("dev", "/dev/kvm", "KVM device")
	loop := flag.Int("loop", 0, "also time a guest doing this many port writes (0..65535)")
	flag.Parse()
	runtime.LockOSThread()
	if err := smoke(*dev, *loop); err != nil {
		fmt.Fprintf(os.Stderr, "kvmsmoke: FAIL: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("kvmsmoke: PASS")
}

func smoke(dev string, loop int) error {
	if loop < 0 || loop > 0xffff {
		return fmt.Errorf("-loop %d out of range 0..65535", loop)
	}
	hw, why := kvm.HardwareBacked()
	fmt.Printf("kvmsmoke: %s: hardware-backed=%v (%s)\n", dev, hw, why)
	sys, err := kvm.Open(dev)
	if err != nil {
		return err
	}
	defer sys.Close()
	v, err := sys.APIVersion()
	if err != nil {
		return err
	}
	fmt.Printf("kvmsmoke: KVM API version %d\n", v)

	// mov al, 'K'; mov dx, 0x440; out dx, al; inc al; out dx, al; hlt
	code := []byte{0xb0, 'K', 0xba, port & 0xff, port >> 8, 0xee, 0xfe, 0xc0, 0xee, 0xf4}
	exits, _, err := runGuest(sys, code, 3)
	if err != nil {
		return err
	}
	want := []string{"IO out port=0x440 data=4b", "IO out port=0x440 data=4c", "HLT"}
	if len(exits) != len(want) {
		return fmt.Errorf("exits %q, want %q", exits, want)
	}
	for i, e := range exits {
		fmt.Printf("kvmsmoke: exit %d: %s\n", i+1, e)
		if e != want[i] {
			return fmt.Errorf("exit %d is %q, want %q", i+1, e, want[i])
		}
	}

	if loop > 0 {
		// mov cx, N; mov dx, 0x440; 1: out dx, al; loop 1b; hlt
		code := []byte{0xb9, byte(loop), byte(loop >> 8), 0xba, port & 0xff, port >> 8, 0xee, 0xe2, 0xfd, 0xf4}
		exits, d, err := runGuest(sys, code, loop+1)
		if err != nil {
			return err
		}
		if last := exits[len(exits)-1]; last != "HLT" {
			return fmt.Errorf("loop guest ended with %q, want HLT", last)
		}
		fmt.Printf("kvmsmoke: %d I/O exits in %v: %.1f us per exit\n",
			loop, d.Round(time.Microsecond), float64(d.Microseconds())/float64(loop))
	}
	return nil
}

// runGuest runs code in real mode at 0000:codeAddr until it halts or n exits
// have been seen, and returns the exits as text and the time spent.
func runGuest(sys *kvm.System, code []byte, n int) ([]string, time.Duration, error) {
	vm, err := sys.CreateVM()
	if err != nil {
		return nil, 0, err
	}
	defer vm.Close()
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: memSize}})
	if err != nil {
		return nil, 0, err
	}
	defer mem.Close()
	if err := vm.SetUserMemoryRegion(0, 0, mem.Regions()[0].Host(), 0); err != nil {
		return nil, 0, err
	}
	if err := mem.WriteAt(code, codeAddr); err != nil {
		return nil, 0, err
	}
	c, err := vm.CreateVCPU(0)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	s, err := c.GetSregs()
	if err != nil {
		return nil, 0, err
	}
	s.CS.Base, s.CS.Selector = 0, 0
	if err := c.SetSregs(&s); err != nil {
		return nil, 0, err
	}
	if err := c.SetRegs(&kvm.Regs{RIP: codeAddr, RFLAGS: 2}); err != nil {
		return nil, 0, err
	}

	var exits []string
	start := time.Now()
	for len(exits) < n {
		w := time.AfterFunc(runTimeout, c.Kick)
		e, err := c.Run()
		w.Stop()
		if err != nil {
			return exits, 0, err
		}
		switch e := e.(type) {
		case *kvm.ExitIO:
			dir := "in"
			if e.Out {
				dir = "out"
			}
			exits = append(exits, fmt.Sprintf("IO %s port=%#x data=%x", dir, e.Port, e.Data))
		case *kvm.ExitHLT:
			exits = append(exits, "HLT")
			return exits, time.Since(start), nil
		case *kvm.ExitInterrupted:
			return exits, 0, fmt.Errorf("guest still running after %v", runTimeout)
		case *kvm.ExitInternalError:
			return exits, 0, fmt.Errorf("internal error exit: %v", e)
		default:
			return exits, 0, fmt.Errorf("unexpected exit %T %+v", e, e)
		}
	}
	return exits, 0, errors.New("guest did not halt")
}
