package kvm

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const testRunSize = 3 * 4096 // kvm_run, PIO data page, coalesced MMIO ring

// fakeRun returns a kvm_run buffer with exit reason r.
func fakeRun(r uint32) []byte {
	run := make([]byte, testRunSize)
	binary.LittleEndian.PutUint32(run[runExitReason:], r)
	return run
}

func putIO(run []byte, out bool, size uint8, port uint16, count uint32, off uint64) {
	if out {
		run[runIODirection] = exitIOOut
	}
	run[runIOSize] = size
	binary.LittleEndian.PutUint16(run[runIOPort:], port)
	binary.LittleEndian.PutUint32(run[runIOCount:], count)
	binary.LittleEndian.PutUint64(run[runIODataOffset:], off)
}

func TestDecodeIO(t *testing.T) {
	c := &VCPU{fd: -1}
	run := fakeRun(exitIO)
	putIO(run, true, 2, 0x3f8, 3, 4096)
	copy(run[4096:], "abcdef")
	e, err := decodeExit(c, run)
	if err != nil {
		t.Fatal(err)
	}
	io := e.(*ExitIO)
	if io.Port != 0x3f8 || io.Size != 2 || io.Count != 3 || !io.Out || string(io.Data) != "abcdef" || cap(io.Data) != 6 {
		t.Errorf("decoded %+v", *io)
	}
	// Data aliases kvm_run, so IN data the VMM writes reaches the kernel.
	io.Data[0] = 'X'
	if run[4096] != 'X' {
		t.Error("I/O data does not alias kvm_run")
	}
	for _, bad := range []struct {
		name  string
		size  uint8
		count uint32
		off   uint64
	}{
		{"size 3", 3, 1, 4096},
		{"size 8", 8, 1, 4096},
		{"count 0", 1, 0, 4096},
		{"offset past end", 1, 1, testRunSize},
		{"data past end", 4, 2, testRunSize - 4},
		{"huge count", 4, 0xffffffff, 4096},
		{"huge offset", 1, 1, 1<<64 - 1},
	} {
		run := fakeRun(exitIO)
		putIO(run, false, bad.size, 0x60, bad.count, bad.off)
		if e, err := decodeExit(c, run); err == nil {
			t.Errorf("%s: decoded %+v", bad.name, e)
		}
	}
}

func TestDecodeMMIO(t *testing.T) {
	c := &VCPU{fd: -1}
	for n := uint32(0); n <= 9; n++ {
		run := fakeRun(exitMMIO)
		binary.LittleEndian.PutUint64(run[runMMIOPhysAddr:], 0xd0000010)
		binary.LittleEndian.PutUint32(run[runMMIOLen:], n)
		run[runMMIOIsWrite] = 1
		e, err := decodeExit(c, run)
		if n < 1 || n > 8 {
			if err == nil {
				t.Errorf("len %d accepted: %+v", n, e)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m := e.(*ExitMMIO)
		if m.Addr != 0xd0000010 || len(m.Data) != int(n) || cap(m.Data) != int(n) || !m.Write {
			t.Errorf("len %d: decoded %+v", n, *m)
		}
	}
}

func TestDecodeOthers(t *testing.T) {
	c := &VCPU{fd: -1}
	le := binary.LittleEndian

	run := fakeRun(exitSystemEvent)
	le.PutUint32(run[runSystemEventType:], SystemEventReset)
	le.PutUint32(run[runSystemEventNData:], 1000) // clamped to 16
	le.PutUint64(run[runSystemEventData:], 7)
	e, err := decodeExit(c, run)
	if err != nil {
		t.Fatal(err)
	}
	if se := e.(*ExitSystemEvent); se.Type != SystemEventReset || len(se.Data) != maxExitData || se.Data[0] != 7 {
		t.Errorf("system event %+v", *se)
	}

	run = fakeRun(exitInternalError)
	le.PutUint32(run[runInternalSuberror:], InternalErrorEmulation)
	le.PutUint32(run[runInternalNData:], 3)
	le.PutUint64(run[runEmulationFlags:], emuFlagInsnBytes)
	run[runEmulationInsnLen] = 200 // clamped to 15
	copy(run[runEmulationInsn:], []byte{0x0f, 0x01, 0xca})
	e, err = decodeExit(c, run)
	if err != nil {
		t.Fatal(err)
	}
	ie := e.(*ExitInternalError)
	if len(ie.Insn) != maxInsnBytes || ie.Insn[0] != 0x0f || len(ie.Data) != 3 {
		t.Errorf("internal error %+v", *ie)
	}
	if s := ie.String(); !strings.Contains(s, "emulation") || !strings.Contains(s, "0f 01 ca") {
		t.Errorf("String() = %q", s)
	}
	// Without the flag there are no instruction bytes.
	le.PutUint64(run[runEmulationFlags:], 0)
	e, _ = decodeExit(c, run)
	if ie := e.(*ExitInternalError); ie.Insn != nil {
		t.Errorf("insn without flag: %x", ie.Insn)
	}

	run = fakeRun(exitFailEntry)
	le.PutUint64(run[runFailReason:], 0x80000021)
	le.PutUint32(run[runFailCPU:], 3)
	e, _ = decodeExit(c, run)
	if fe := e.(*ExitFailEntry); fe.Reason != 0x80000021 || fe.CPU != 3 {
		t.Errorf("fail entry %+v", *fe)
	}

	run = fakeRun(exitUnknown)
	le.PutUint64(run[runHWExitReason:], 0x30)
	e, _ = decodeExit(c, run)
	if u := e.(*ExitUnknown); u.Reason != 0 || u.Hardware != 0x30 {
		t.Errorf("unknown %+v", *u)
	}
	e, _ = decodeExit(c, fakeRun(4)) // KVM_EXIT_DEBUG
	if u := e.(*ExitUnknown); u.Reason != 4 {
		t.Errorf("unknown %+v", *u)
	}
	for r, want := range map[uint32]Exit{exitHLT: &ExitHLT{}, exitShutdown: &ExitShutdown{}} {
		e, err := decodeExit(c, fakeRun(r))
		if err != nil || e != want {
			t.Errorf("reason %d: %T %v", r, e, err)
		}
	}
	if _, err := decodeExit(c, make([]byte, runMinSize-1)); err == nil {
		t.Error("short kvm_run accepted")
	}
	n := c.ExitCounts()
	if n.SystemEvent != 1 || n.InternalError != 2 || n.FailEntry != 1 || n.Unknown != 2 || n.HLT != 1 || n.Shutdown != 1 {
		t.Errorf("counts %+v", n)
	}
}

func FuzzDecodeExit(f *testing.F) {
	for _, r := range []uint32{exitIO, exitMMIO, exitSystemEvent, exitInternalError, exitFailEntry, exitHLT, 99} {
		seed := fakeRun(r)[:runMinSize]
		if r == exitIO {
			putIO(seed, true, 1, 0x3f8, 1, 4096)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run := make([]byte, testRunSize)
		copy(run, data)
		c := &VCPU{fd: -1}
		e, err := decodeExit(c, run)
		if err != nil {
			return
		}
		switch e := e.(type) {
		case *ExitIO:
			if len(e.Data) != e.Size*e.Count || e.Count < 1 {
				t.Fatalf("bad I/O exit %+v", *e)
			}
		case *ExitMMIO:
			if len(e.Data) < 1 || len(e.Data) > 8 {
				t.Fatalf("bad MMIO exit %+v", *e)
			}
		case *ExitInternalError:
			if len(e.Data) > maxExitData || len(e.Insn) > maxInsnBytes {
				t.Fatalf("bad internal error %+v", *e)
			}
			_ = e.String()
		case *ExitSystemEvent:
			if len(e.Data) > maxExitData {
				t.Fatalf("bad system event %+v", *e)
			}
		}
	})
}

func TestCPUIDCodec(t *testing.T) {
	in := []CPUIDEntry{
		{Function: 0, EAX: 0xd, EBX: 0x756e6547},
		{Function: 7, Index: 1, Flags: CPUIDFlagSignificantIndex, ECX: 5, EDX: 6},
	}
	out, err := decodeCPUID(encodeCPUID(in), len(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Errorf("round trip %+v", out)
	}
	buf := encodeCPUID(in)
	binary.LittleEndian.PutUint32(buf, 3)
	if _, err := decodeCPUID(buf, 2); err == nil {
		t.Error("nent above capacity accepted")
	}
	if _, err := decodeCPUID(buf[:4], 2); err == nil {
		t.Error("short buffer accepted")
	}
}

func FuzzDecodeCPUID(f *testing.F) {
	f.Add(encodeCPUID([]CPUIDEntry{{Function: 1, EAX: 2}}), 1)
	f.Fuzz(func(t *testing.T, buf []byte, capacity int) {
		out, err := decodeCPUID(buf, capacity)
		if err == nil && (len(out) > capacity || flexHeaderSize+len(out)*cpuidEntrySize > len(buf)) {
			t.Fatalf("%d entries from %d bytes, capacity %d", len(out), len(buf), capacity)
		}
	})
}

func TestEncodeRouting(t *testing.T) {
	buf, err := encodeRouting([]IRQRoute{
		{GSI: 4, Kind: RouteIRQChip, IRQChip: IRQChipIOAPIC, Pin: 4},
		{GSI: 30, Kind: RouteMSI, MSIAddr: 0x1_fee0_1000, MSIData: 0x4041},
	})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	e1 := buf[flexHeaderSize+irqRoutingEntrySize:]
	if le.Uint32(buf) != 2 || le.Uint32(buf[flexHeaderSize+irqRoutingUnion+4:]) != 4 ||
		le.Uint32(e1) != 30 || le.Uint32(e1[irqRoutingTypeOffset:]) != uint32(RouteMSI) ||
		le.Uint32(e1[irqRoutingUnion:]) != 0xfee01000 || le.Uint32(e1[irqRoutingUnion+4:]) != 1 ||
		le.Uint32(e1[irqRoutingUnion+8:]) != 0x4041 {
		t.Errorf("encoded % x", buf)
	}
	for _, bad := range [][]IRQRoute{
		{{GSI: 1, Kind: RouteIRQChip, IRQChip: IRQChipPICMaster, Pin: 8}},
		{{GSI: 1, Kind: RouteIRQChip, IRQChip: IRQChipIOAPIC, Pin: 24}},
		{{GSI: 1, Kind: RouteIRQChip, IRQChip: 3}},
		{{GSI: 1, Kind: 9}},
		{{GSI: maxIRQRoutes, Kind: RouteMSI}},
		make([]IRQRoute, maxIRQRoutes+1),
	} {
		if _, err := encodeRouting(bad); err == nil {
			t.Errorf("accepted %+v", bad[0])
		}
	}
}

// TestRunDoesNotAllocate runs a guest that loops on OUT and checks that
// Run's exit path allocates nothing.
func TestRunDoesNotAllocate(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := testVM(t, 1<<16, []byte{
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xee,       // 1: out dx, al
		0xeb, 0xfd, // jmp 1b
	})
	c := realModeVCPU(t, vm)
	var failed error
	allocs := testing.AllocsPerRun(200, func() {
		e, err := c.Run()
		if err != nil {
			failed = err
		} else if _, ok := e.(*ExitIO); !ok && failed == nil {
			failed = errors.New("not an I/O exit")
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("Run allocates %.1f times per exit", allocs)
	}
}

func TestErrnoIsComparable(t *testing.T) {
	// Run compares ioctl errors with unix.EINTR directly; that relies on
	// ioctl returning the bare Errno.
	_, err := ioctlVal(-1, io(nrRun), 0)
	if err != unix.EBADF {
		t.Errorf("ioctl on fd -1: %v (%T), want bare EBADF", err, err)
	}
}
