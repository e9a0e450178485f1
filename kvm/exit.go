package kvm

import (
	"fmt"
	"strings"
)

// Exit is why Run returned: one of *ExitIO, *ExitMMIO, *ExitHLT,
// *ExitShutdown, *ExitSystemEvent, *ExitInternalError, *ExitFailEntry,
// *ExitInterrupted or *ExitUnknown. Only pointers implement Exit, so a type
// switch on a value type does not compile.
//
// Exit values are owned by the VCPU and reused: an Exit, and any slice in
// it, is valid only until the next call to Run on the same VCPU.
type Exit interface{ exit() }

// ExitIO is a port I/O access (KVM_EXIT_IO). Data aliases the kvm_run page
// and holds Size*Count bytes: for Out the bytes written by the guest; for an
// IN, the VMM fills Data before the next Run, which completes the
// instruction. Count > 1 for string instructions (INS/OUTS with REP).
type ExitIO struct {
	Port  uint16
	Size  int // 1, 2 or 4
	Count int
	Out   bool
	Data  []byte
}

// ExitMMIO is an access to a guest-physical address with no memory slot
// (KVM_EXIT_MMIO). Data aliases kvm_run and holds 1 to 8 bytes: the value
// written, or for a read the bytes to fill before the next Run.
type ExitMMIO struct {
	Addr  uint64
	Data  []byte
	Write bool
}

// ExitHLT: the guest executed HLT and no in-kernel irqchip handles it.
type ExitHLT struct{}

// ExitShutdown: the vCPU shut down, typically a triple fault.
type ExitShutdown struct{}

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// ExitSystemEvent is a platform event raised inside KVM
// (KVM_EXIT_SYSTEM_EVENT). Data is the event data the kernel reports (empty
// on kernels without KVM_CAP_SYSTEM_EVENT_DATA).
type ExitSystemEvent struct {
	Type uint32
	Data []uint64
}

// ExitInternalError: KVM could not continue (KVM_EXIT_INTERNAL_ERROR), most
// often because its instruction emulator met an instruction it cannot
// handle. RIP is read with GetRegs when the exit happens (0 if that failed);
// Insn holds the failing instruction's bytes when KVM provides them.
type ExitInternalError struct {
	Suberror uint32
	Data     []uint64
	Insn     []byte
	RIP      uint64
}

// Internal error suberrors (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation            = 1
	InternalErrorSimultaneousExc      = 2
	InternalErrorDeliveryEvent        = 3
	InternalErrorUnexpectedExitReason = 4
)

// SuberrorName names an internal error suberror.
func SuberrorName(s uint32) string {
	switch s {
	case InternalErrorEmulation:
		return "instruction emulation failed"
	case InternalErrorSimultaneousExc:
		return "unexpected simultaneous exceptions"
	case InternalErrorDeliveryEvent:
		return "unexpected exit while delivering an event"
	case InternalErrorUnexpectedExitReason:
		return "unexpected hardware exit reason"
	}
	return fmt.Sprintf("unknown suberror %d", s)
}

// String describes the error with the suberror's name, RIP, the instruction
// bytes if known and the raw data words.
func (e ExitInternalError) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "KVM internal error: %s (suberror %d) at RIP %#x", SuberrorName(e.Suberror), e.Suberror, e.RIP)
	if len(e.Insn) > 0 {
		fmt.Fprintf(&b, ", instruction % x", e.Insn)
	}
	if len(e.Data) > 0 {
		b.WriteString(", data")
		for _, d := range e.Data {
			fmt.Fprintf(&b, " %#x", d)
		}
	}
	return b.String()
}

// ExitFailEntry: the hardware refused to enter the guest
// (KVM_EXIT_FAIL_ENTRY); Reason is the hardware's reason code.
type ExitFailEntry struct {
	Reason uint64
	CPU    uint32
}

// ExitInterrupted: KVM_RUN was interrupted because the VCPU was kicked (see
// Kick). Signals that arrive without a kick do not surface: Run re-enters the
// guest.
type ExitInterrupted struct{}

// ExitUnknown is any other exit reason (KVM_EXIT_*). For KVM_EXIT_UNKNOWN
// (Reason 0), Hardware is the hardware exit reason.
type ExitUnknown struct {
	Reason   uint32
	Hardware uint64
}

func (*ExitIO) exit()            {}
func (*ExitMMIO) exit()          {}
func (*ExitHLT) exit()           {}
func (*ExitShutdown) exit()      {}
func (*ExitSystemEvent) exit()   {}
func (*ExitInternalError) exit() {}
func (*ExitFailEntry) exit()     {}
func (*ExitInterrupted) exit()   {}
func (*ExitUnknown) exit()       {}

// ExitCounts counts the exits a VCPU's Run has returned, by kind. Counting
// is done here so every VMM gets it for free; the counters are atomic and
// may be read from any goroutine.
type ExitCounts struct {
	IO, MMIO, HLT, Shutdown, SystemEvent uint64
	InternalError, FailEntry             uint64
	Interrupted, Unknown                 uint64
}
