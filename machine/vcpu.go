package machine

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/kvm"
)

// KVM_SYSTEM_EVENT types (linux/kvm.h).
const (
	systemEventShutdown = 1
	systemEventReset    = 2
	systemEventCrash    = 3
)

// runVCPU is one vCPU's loop. It owns its OS thread for its whole life, as
// KVM requires, and returns when the machine stops.
func (m *Machine) runVCPU(c *kvm.VCPU) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c.ID() == 0 {
		m.metrics.markEntry(m.start)
	}
	for {
		exit, err := c.Run()
		if err != nil {
			m.Stop(Result{Reason: StopError, Err: fmt.Errorf("vcpu %d: %w", c.ID(), err)})
			return
		}
		if m.handleExit(c.ID(), exit) {
			return
		}
	}
}

// cpuState summarises a stopped vCPU's registers for an error message.
func cpuState(c *kvm.VCPU) string {
	r, err := c.GetRegs()
	if err != nil {
		return fmt.Sprintf("registers unavailable: %v", err)
	}
	s, err := c.GetSregs()
	if err != nil {
		return fmt.Sprintf("rip=%#x rsp=%#x (special registers unavailable: %v)", r.RIP, r.RSP, err)
	}
	// KVM on AMD (SVM) INITs the vCPU when it exits for a shutdown, so
	// after a triple fault there the registers are the reset state and
	// say nothing about where the guest was.
	if r.RIP == 0xfff0 && s.CS.Selector == 0xf000 && s.CR0&1 == 0 {
		return "registers already reset by KVM (AMD re-INITs a vCPU on shutdown), so where the guest was is unknown"
	}
	return fmt.Sprintf("rip=%#x rsp=%#x rflags=%#x cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x cs=%#x idt=%#x/%#x",
		r.RIP, r.RSP, r.RFLAGS, s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.CS.Selector, s.IDT.Base, s.IDT.Limit)
}

// handleExit serves one exit of vCPU id and reports whether the vCPU is
// done. Port and MMIO accesses, the exits a running guest makes all the
// time, allocate nothing (TestHandleExitDoesNotAllocate): garbage made per
// exit would grow the heap, and the VMM's resident memory, until a GC.
func (m *Machine) handleExit(id int, exit kvm.Exit) (done bool) {
	switch e := exit.(type) {
	case *kvm.ExitIO:
		for i := 0; i < e.Count; i++ {
			chunk := e.Data[i*e.Size : (i+1)*e.Size]
			if e.Out {
				m.pio.Write(uint64(e.Port), chunk)
			} else if !m.pio.Read(uint64(e.Port), chunk) {
				fill(chunk)
			}
		}
	case *kvm.ExitMMIO:
		if e.Write {
			m.mmio.Write(e.Addr, e.Data)
		} else if !m.mmio.Read(e.Addr, e.Data) {
			fill(e.Data)
		}
	case *kvm.ExitHLT:
		// With the in-kernel local APIC, HLT is handled by KVM; an
		// exit here means this vCPU is done.
		if m.stopping.Load() {
			return true
		}
		time.Sleep(time.Millisecond)
	case *kvm.ExitInterrupted:
		if m.stopping.Load() {
			return true
		}
		return m.park(id) // kicked by Pause
	case *kvm.ExitShutdown:
		// Say where the guest was: a triple fault leaves nothing on its
		// console. (This is the vCPU's own thread, as KVM requires.)
		res := Result{Reason: StopTripleFault}
		if id >= 0 && id < len(m.vcpus) {
			res.Err = fmt.Errorf("vcpu %d: %s", id, cpuState(m.vcpus[id]))
		}
		m.Stop(res)
		return true
	case *kvm.ExitSystemEvent:
		switch e.Type {
		case systemEventShutdown:
			m.Stop(Result{Reason: StopPowerOff})
		case systemEventReset:
			m.Stop(Result{Reason: StopReboot})
		case systemEventCrash:
			m.Stop(Result{Reason: StopPanic})
		default:
			m.Stop(Result{Reason: StopError, Err: fmt.Errorf("vcpu %d: unknown system event %d", id, e.Type)})
		}
		return true
	case *kvm.ExitInternalError:
		m.Stop(Result{Reason: StopError, Err: fmt.Errorf("vcpu %d: %v", id, e)})
		return true
	case *kvm.ExitFailEntry:
		m.Stop(Result{Reason: StopError, Err: fmt.Errorf("vcpu %d: KVM entry failed: hardware reason %#x", id, e.Reason)})
		return true
	default:
		m.Stop(Result{Reason: StopError, Err: fmt.Errorf("vcpu %d: unhandled exit %T %+v", id, exit, exit)})
		return true
	}
	return false
}

// fill answers a read from nothing with all ones, as an open bus does.
func fill(b []byte) {
	for i := range b {
		b[i] = 0xFF
	}
}

// eventFD is an edge-triggered interrupt line: a write to an eventfd that
// KVM injects through irqfd, so raising it costs no vCPU exit.
type eventFD struct{ fd int }

func newEventFD() (*eventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &eventFD{fd: fd}, nil
}

func (e *eventFD) Trigger() error {
	one := [8]byte{1}
	_, err := unix.Write(e.fd, one[:])
	if errors.Is(err, unix.EAGAIN) {
		return nil // counter saturated: an interrupt is already pending
	}
	return err
}

func (e *eventFD) Close() error { return unix.Close(e.fd) }
