package kvm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Run enters the guest (KVM_RUN) and returns the next exit that needs the
// VMM. It must be called on a goroutine locked to its OS thread
// (runtime.LockOSThread): Kick signals that thread.
//
// Run completes the previous exit first: for an IN or an MMIO read, fill the
// previous exit's Data before calling Run again. The returned Exit is reused
// by the next Run (see Exit). A signal that interrupts KVM_RUN without a Kick
// is absorbed and the guest re-entered; after a Kick, Run returns
// *ExitInterrupted, and keeps doing so on every later call until ClearKick,
// so a kick can never be lost between two Runs. The kernel still completes a
// pending I/O exit on such a call before returning.
//
// An application processor that has not received its startup IPI makes
// KVM_RUN block and then fail with EAGAIN; Run retries it.
//
// The hot path performs no allocations: exit values live in the VCPU.
func (c *VCPU) Run() (Exit, error) {
	c.tid.Store(int32(unix.Gettid()))
	for {
		_, err := ioctlVal(c.fd, io(nrRun), 0)
		if err == nil && binary.LittleEndian.Uint32(c.run[runExitReason:]) != exitIntr {
			return c.decodeExit()
		}
		if err == unix.EAGAIN {
			// An application processor still waiting for INIT/SIPI: KVM
			// blocked it until some event and asks to be called again.
			if c.kicked.Load() {
				c.counts.interrupted.Add(1)
				return &ExitInterrupted{}, nil
			}
			continue
		}
		if err != nil && err != unix.EINTR {
			return nil, fmt.Errorf("kvm: vCPU %d: KVM_RUN: %w", c.id, err)
		}
		// Interrupted by a signal: a kick, or one meant for the Go runtime.
		if c.kicked.Load() {
			c.counts.interrupted.Add(1)
			return &ExitInterrupted{}, nil
		}
	}
}

// Kick makes the vCPU leave the guest promptly and stay out: the current or
// next Run returns *ExitInterrupted, as does every Run after it until
// ClearKick. It may be called from any goroutine, at any time, any number of
// times; after Close it does nothing.
//
// It sets kvm_run.immediate_exit, which makes a future KVM_RUN return at once,
// then sends SIGURG (which the Go runtime tolerates) to the thread that last
// entered Run, which forces a KVM_RUN already in progress, or blocked in an
// in-kernel HLT, to return.
func (c *VCPU) Kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.kicked.Store(true)
	c.setImmediateExit(true)
	if tid := c.tid.Load(); tid != 0 {
		// ESRCH (the thread has exited) is harmless: immediate_exit stops
		// whichever thread enters KVM_RUN next. Nothing else can fail.
		_ = unix.Tgkill(c.pid, int(tid), unix.SIGURG)
	}
}

// ClearKick undoes Kick so that Run enters the guest again. Call it from
// the vCPU's goroutine, between Runs.
func (c *VCPU) ClearKick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.kicked.Store(false)
	c.setImmediateExit(false)
}

// Kicked reports whether the vCPU has been kicked and not yet cleared.
func (c *VCPU) Kicked() bool { return c.kicked.Load() }

// ExitCounts returns how many exits of each kind Run has returned so far.
// It may be called from any goroutine.
func (c *VCPU) ExitCounts() ExitCounts {
	return ExitCounts{
		IO:            c.counts.io.Load(),
		MMIO:          c.counts.mmio.Load(),
		HLT:           c.counts.hlt.Load(),
		Shutdown:      c.counts.shutdown.Load(),
		SystemEvent:   c.counts.systemEvent.Load(),
		InternalError: c.counts.internalError.Load(),
		FailEntry:     c.counts.failEntry.Load(),
		Interrupted:   c.counts.interrupted.Load(),
		Unknown:       c.counts.unknown.Load(),
	}
}

// decodeExit turns the exit recorded in kvm_run into an Exit. Every offset
// and length the kernel reports is checked against the mapping.
func (c *VCPU) decodeExit() (Exit, error) {
	return decodeExit(c, c.run)
}

func decodeExit(c *VCPU, run []byte) (Exit, error) {
	if len(run) < runMinSize {
		return nil, fmt.Errorf("kvm: vCPU %d: kvm_run of %d bytes", c.id, len(run))
	}
	le := binary.LittleEndian
	reason := le.Uint32(run[runExitReason:])
	switch reason {
	case exitIO:
		size := int(run[runIOSize])
		count := uint64(le.Uint32(run[runIOCount:]))
		off := le.Uint64(run[runIODataOffset:])
		if size != 1 && size != 2 && size != 4 {
			return nil, fmt.Errorf("kvm: vCPU %d: I/O exit with size %d", c.id, size)
		}
		n := uint64(size) * count
		if count == 0 || off > uint64(len(run)) || n > uint64(len(run))-off {
			return nil, fmt.Errorf("kvm: vCPU %d: I/O exit data [%#x+%d*%d) outside kvm_run (%d bytes)", c.id, off, size, count, len(run))
		}
		c.exitIO = ExitIO{
			Port:  le.Uint16(run[runIOPort:]),
			Size:  size,
			Count: int(count),
			Out:   run[runIODirection] == exitIOOut,
			Data:  run[off : off+n : off+n],
		}
		c.counts.io.Add(1)
		return &c.exitIO, nil
	case exitMMIO:
		n := le.Uint32(run[runMMIOLen:])
		if n < 1 || n > 8 {
			return nil, fmt.Errorf("kvm: vCPU %d: MMIO exit with length %d", c.id, n)
		}
		c.exitMMIO = ExitMMIO{
			Addr:  le.Uint64(run[runMMIOPhysAddr:]),
			Data:  run[runMMIOData : runMMIOData+n : runMMIOData+n],
			Write: run[runMMIOIsWrite] != 0,
		}
		c.counts.mmio.Add(1)
		return &c.exitMMIO, nil
	case exitHLT:
		c.counts.hlt.Add(1)
		return &ExitHLT{}, nil
	case exitShutdown:
		c.counts.shutdown.Add(1)
		return &ExitShutdown{}, nil
	case exitFailEntry:
		c.exitFail = ExitFailEntry{Reason: le.Uint64(run[runFailReason:]), CPU: le.Uint32(run[runFailCPU:])}
		c.counts.failEntry.Add(1)
		return &c.exitFail, nil
	case exitSystemEvent:
		nd := min(int(le.Uint32(run[runSystemEventNData:])), maxExitData)
		for i := range nd {
			c.systemData[i] = le.Uint64(run[runSystemEventData+8*i:])
		}
		c.exitSystem = ExitSystemEvent{Type: le.Uint32(run[runSystemEventType:]), Data: c.systemData[:nd:nd]}
		c.counts.systemEvent.Add(1)
		return &c.exitSystem, nil
	case exitInternalError:
		sub := le.Uint32(run[runInternalSuberror:])
		nd := min(int(le.Uint32(run[runInternalNData:])), maxExitData)
		for i := range nd {
			c.internalData[i] = le.Uint64(run[runInternalData+8*i:])
		}
		var insn []byte
		// emulation_failure overlays internal: data[0] is flags, data[1..2]
		// hold insn_size and insn_bytes.
		if sub == InternalErrorEmulation && nd >= 3 && le.Uint64(run[runEmulationFlags:])&emuFlagInsnBytes != 0 {
			k := min(int(run[runEmulationInsnLen]), maxInsnBytes)
			copy(c.insn[:], run[runEmulationInsn:runEmulationInsn+k])
			insn = c.insn[:k:k]
		}
		var rip uint64
		if c.fd >= 0 {
			if regs, err := c.GetRegs(); err == nil {
				rip = regs.RIP
			}
		}
		c.exitInternal = ExitInternalError{Suberror: sub, Data: c.internalData[:nd:nd], Insn: insn, RIP: rip}
		c.counts.internalError.Add(1)
		return &c.exitInternal, nil
	}
	c.exitUnknown = ExitUnknown{Reason: reason}
	if reason == exitUnknown {
		c.exitUnknown.Hardware = le.Uint64(run[runHWExitReason:])
	}
	c.counts.unknown.Add(1)
	return &c.exitUnknown, nil
}
