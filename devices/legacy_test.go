package devices

import (
	"testing"
	"time"
)

// rd and wr access a device one byte at a time.
func rd(d Device, off uint64) byte {
	var b [1]byte
	d.Read(off, b[:])
	return b[0]
}

func wr(d Device, off uint64, v byte) { d.Write(off, []byte{v}) }

// kbcCommand replays Linux's i8042_command(): wait for the input buffer,
// write the command and its parameters, then poll for each result byte. It
// fails the test where Linux would wait out a timeout.
func kbcCommand(t *testing.T, k *I8042, cmd byte, params []byte, nres int) []byte {
	t.Helper()
	if rd(k, 4)&0x02 != 0 {
		t.Fatalf("command %#x: input buffer full", cmd)
	}
	wr(k, 4, cmd)
	for _, p := range params {
		if rd(k, 4)&0x02 != 0 {
			t.Fatalf("command %#x: input buffer full", cmd)
		}
		wr(k, 0, p)
	}
	var res []byte
	for range nres {
		if rd(k, 4)&kbcStatusOBF == 0 {
			t.Fatalf("command %#x: no result (Linux would time out)", cmd)
		}
		res = append(res, rd(k, 0))
	}
	return res
}

func TestI8042LinuxProbe(t *testing.T) {
	resets := 0
	k := NewI8042(func() { resets++ })

	// i8042_flush: nothing pending.
	st := rd(k, 4)
	if st&kbcStatusOBF != 0 {
		t.Fatalf("status %#x: output buffer full at start", st)
	}
	if st&kbcStatusUnlock == 0 {
		t.Fatalf("status %#x: keylock active", st)
	}
	// i8042_controller_init: two equal CTR reads, then a CTR write.
	c1 := kbcCommand(t, k, kbcReadCTR, nil, 1)[0]
	c2 := kbcCommand(t, k, kbcReadCTR, nil, 1)[0]
	if c1 != c2 {
		t.Fatalf("unstable CTR %#x/%#x", c1, c2)
	}
	ctr := (c1 | kbcCTRKbdDisable) &^ 0x01
	kbcCommand(t, k, kbcWriteCTR, []byte{ctr}, 0)
	if got := kbcCommand(t, k, kbcReadCTR, nil, 1)[0]; got != ctr {
		t.Fatalf("CTR = %#x after writing %#x", got, ctr)
	}
	// i8042_check_aux: the loop test answers at once without the aux bit,
	// and the interface test reports a fault, so Linux decides there is no
	// mouse port without waiting.
	wr(k, 4, kbcWriteAuxBuf)
	wr(k, 0, 0x5A)
	if st := rd(k, 4); st&kbcStatusOBF == 0 || st&0x20 != 0 {
		t.Fatalf("status after AUX_LOOP = %#x", st)
	}
	rd(k, 0)
	if r := kbcCommand(t, k, kbcAuxTest, nil, 1)[0]; r == 0 || r == 0xFA || r == 0xFF {
		t.Fatalf("AUX_TEST = %#x: Linux would probe a mouse", r)
	}
	// Self-tests.
	if r := kbcCommand(t, k, kbcSelfTest, nil, 1)[0]; r != 0x55 {
		t.Fatalf("self test = %#x", r)
	}
	if r := kbcCommand(t, k, kbcKbdTest, nil, 1)[0]; r != 0 {
		t.Fatalf("keyboard test = %#x", r)
	}
	// A20 through the output port and the null command must not reset.
	kbcCommand(t, k, kbcWriteOutPort, []byte{0xDF}, 0)
	if r := kbcCommand(t, k, kbcReadOutPort, nil, 1)[0]; r != 0xDF {
		t.Fatalf("output port = %#x", r)
	}
	kbcCommand(t, k, 0xFF, nil, 0)
	// Bytes for the absent keyboard vanish; the data port then reads 0.
	wr(k, 0, 0xF2)
	if rd(k, 4)&kbcStatusOBF != 0 || rd(k, 0) != 0 {
		t.Fatal("absent keyboard answered")
	}
	if resets != 0 {
		t.Fatalf("%d resets during probe", resets)
	}
	// Ports 0x61..0x63 are not the controller's.
	for off := uint64(1); off < 4; off++ {
		if v := rd(k, off); v != 0xFF {
			t.Fatalf("offset %d reads %#x", off, v)
		}
	}
}

func TestI8042Reset(t *testing.T) {
	resets := 0
	k := NewI8042(func() { resets++ })
	// Linux's reboot=k path: wait for the input buffer, then pulse reset.
	if rd(k, 4)&0x02 != 0 {
		t.Fatal("input buffer full")
	}
	wr(k, 4, 0xFE)
	if resets != 1 {
		t.Fatalf("resets = %d after 0xFE", resets)
	}
	wr(k, 4, kbcWriteOutPort)
	wr(k, 0, 0xFE) // reset line low
	if resets != 2 {
		t.Fatalf("resets = %d after output-port write", resets)
	}
	wr(k, 4, 0xF1) // pulse without the reset line
	if resets != 2 {
		t.Fatal("0xF1 reset the machine")
	}
	// A nil callback is allowed.
	wr(NewI8042(nil), 4, 0xFE)
}

func TestACPI(t *testing.T) {
	var offs, resets int
	a := NewACPI(func() { offs++ }, func() { resets++ })
	// S5: SLP_TYP=5, SLP_EN.
	wr(a, 0, ACPISleepTypeS5<<2|0x20)
	if offs != 1 {
		t.Fatalf("power-offs = %d after S5", offs)
	}
	if rd(a, 1)&0x80 != 0 {
		t.Fatal("WAK_STS set after S5: the guest would resume")
	}
	// SLP_TYP without SLP_EN does nothing.
	wr(a, 0, ACPISleepTypeS5<<2)
	// Another sleep state wakes at once; WAK_STS is write-1-to-clear.
	wr(a, 0, 3<<2|0x20)
	if offs != 1 {
		t.Fatalf("power-offs = %d", offs)
	}
	if rd(a, 1) != 0x80 {
		t.Fatal("WAK_STS not set after an unsupported sleep")
	}
	wr(a, 1, 0x7F)
	if rd(a, 1) != 0x80 {
		t.Fatal("WAK_STS cleared by writing 0")
	}
	wr(a, 1, 0x80)
	if rd(a, 1) != 0 {
		t.Fatal("WAK_STS not cleared")
	}
	// Reset register.
	wr(a, 2, 0x02)
	if resets != 0 {
		t.Fatal("reset on a wrong value")
	}
	wr(a, 2, ACPIResetValue)
	if resets != 1 {
		t.Fatalf("resets = %d", resets)
	}
	if rd(a, 0) != 0 || rd(a, 2) != 0 {
		t.Fatal("control/reset registers read non-zero")
	}
	// A 4-byte access at offset 0 would straddle the window on a bus; a
	// device reached directly ignores bytes past its registers.
	var four [4]byte
	a.Read(0, four[:])
	if four[3] != 0xFF {
		t.Fatalf("byte past the registers = %#x", four[3])
	}
	a.Write(0, []byte{0, 0, ACPIResetValue, 0xFF})
	if resets != 2 {
		t.Fatalf("wide write: resets = %d", resets)
	}
	// Nil callbacks are allowed.
	n := NewACPI(nil, nil)
	wr(n, 0, ACPISleepTypeS5<<2|0x20)
	wr(n, 2, ACPIResetValue)
}

func TestPVPanic(t *testing.T) {
	var events []byte
	p := NewPVPanic(func(e byte) { events = append(events, e) })
	if v := rd(p, 0); v != PVPanicPanicked|PVPanicCrashLoaded {
		t.Fatalf("read = %#x", v)
	}
	wr(p, 0, 0)
	wr(p, 0, PVPanicCrashLoaded) // crash kernel takes over: not a stop
	wr(p, 0, 0xFF)
	wr(p, 0, PVPanicPanicked)
	if len(events) != 2 || events[0] != 0x03 || events[1] != 0x01 {
		t.Fatalf("events = % x", events)
	}
	wr(NewPVPanic(nil), 0, 1)
}

func TestBootMarker(t *testing.T) {
	var got []Mark
	b := NewBootMarker(func(v byte, at time.Time) { got = append(got, Mark{v, at}) })
	before := time.Now()
	wr(b, 0, 1)
	wr(b, 0, 2)
	b.Write(0, []byte{3, 4}) // first byte only
	if len(got) != 3 || got[0].Value != 1 || got[1].Value != 2 || got[2].Value != 3 {
		t.Fatalf("marks = %v", got)
	}
	if got[0].At.Before(before) || got[1].At.Before(got[0].At) {
		t.Fatal("timestamps out of order")
	}
	if rd(b, 0) != 0xFF {
		t.Fatal("read not 0xFF")
	}
	for range MaxBootMarks {
		wr(b, 0, 9)
	}
	kept, dropped := b.Marks()
	if len(kept) != MaxBootMarks || dropped != 3 || kept[0].Value != 1 {
		t.Fatalf("kept %d, dropped %d", len(kept), dropped)
	}
	if len(got) != MaxBootMarks+3 {
		t.Fatal("callback not called for every write")
	}
	wr(NewBootMarker(nil), 0, 1)
}

func TestDiscard(t *testing.T) {
	var d Discard
	var buf [4]byte
	d.Write(0, buf[:])
	d.Read(0, buf[:])
	if buf != [4]byte{0xFF, 0xFF, 0xFF, 0xFF} {
		t.Fatalf("read % x", buf)
	}
}

// FuzzLegacyPorts throws arbitrary accesses at the small devices registered
// at their machine ports; none may panic, and each callback fires only for
// its documented trigger.
func FuzzLegacyPorts(f *testing.F) {
	f.Add([]byte{0x64, 0xFE, 1})
	f.Add([]byte{0x64, 0x20, 1, 0x60, 0, 0, 0x00, 0x06, 0x34, 0x02, 0x06, 0x01, 0x05, 0x05, 0x01})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var resets, offs, panics int
		bus := NewBus("pio")
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(bus.Register(0x60, I8042Size, NewI8042(func() { resets++ })))
		must(bus.Register(0x600, ACPISize, NewACPI(func() { offs++ }, func() { resets++ })))
		must(bus.Register(0x505, PVPanicSize, NewPVPanic(func(e byte) {
			if e&PVPanicPanicked == 0 || e&^0x03 != 0 {
				t.Fatalf("panic event %#x", e)
			}
			panics++
		})))
		must(bus.Register(0x440, BootMarkerSize, NewBootMarker(nil)))
		must(bus.Register(0x80, 1, Discard{}))
		ports := []uint64{0x60, 0x61, 0x64, 0x600, 0x601, 0x602, 0x505, 0x440, 0x80}
		var buf [4]byte
		for len(ops) >= 3 {
			port := ports[int(ops[0])%len(ports)]
			size := []int{1, 2, 4}[int(ops[0]>>4)%3]
			for i := range buf {
				buf[i] = ops[2]
			}
			if ops[1]&1 == 0 {
				bus.Read(port, buf[:size])
			} else {
				bus.Write(port, buf[:size])
			}
			ops = ops[3:]
		}
		_ = resets + offs + panics
	})
}
