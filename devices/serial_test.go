package devices

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countIRQ counts edges.
type countIRQ struct {
	n   atomic.Int64
	err error
}

func (c *countIRQ) Trigger() error {
	c.n.Add(1)
	return c.err
}

// guest drives a Serial the way a driver does, one byte at a time.
type guest struct {
	t *testing.T
	s *Serial
}

func (g guest) in(off uint64) byte {
	var b [1]byte
	g.s.Read(off, b[:])
	return b[0]
}

func (g guest) out(off uint64, v byte) { g.s.Write(off, []byte{v}) }

// syncBuffer is an io.Writer that records each Write call.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

func (b *syncBuffer) snapshot() (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.writes
}

// TestSerialLinuxProbe replays the register accesses of Linux's 8250
// autoconfig() and autoconfig_16550a() and checks the port is found to be a
// plain 16550A.
func TestSerialLinuxProbe(t *testing.T) {
	out := &syncBuffer{}
	s := NewSerial(nil, out)
	g := guest{t, s}

	// IER scratch test.
	save := g.in(regIER)
	g.out(regIER, 0)
	if v := g.in(regIER) & 0x0F; v != 0 {
		t.Fatalf("IER after writing 0 = %#x", v)
	}
	g.out(regIER, 0x0F)
	if v := g.in(regIER) & 0x0F; v != 0x0F {
		t.Fatalf("IER after writing 0x0F = %#x", v)
	}
	g.out(regIER, save)

	// Loopback test: MCR = LOOP | OUT2 | RTS must read back as DCD | CTS.
	saveMCR, saveLCR := g.in(regMCR), g.in(regLCR)
	g.out(regMCR, mcrLoop|0x0A)
	if v := g.in(regMSR) & 0xF0; v != 0x90 {
		t.Fatalf("loopback MSR = %#x, want 0x90", v)
	}
	g.out(regMCR, saveMCR)

	// FIFO detection: "EFR" write in config mode B, then FCR and IIR >> 6.
	g.out(regLCR, 0xBF)
	g.out(regIIR, 0)
	g.out(regLCR, 0)
	g.out(regIIR, fcrEnable)
	if v := g.in(regIIR) >> 6; v != 3 {
		t.Fatalf("IIR>>6 after enabling FIFOs = %d, want 3 (16550A)", v)
	}

	// autoconfig_16550a: no EFR in config mode A or B...
	g.out(regLCR, 0x80)
	if g.in(regIIR) == 0 {
		t.Fatal("EFR reads 0 with DLAB set: would be taken for an ST16C650V1")
	}
	g.out(regLCR, 0xBF)
	if g.in(regIIR) == 0 {
		t.Fatal("EFR reads 0 in config mode B: would be taken for a 16650")
	}
	// ...not a National SuperIO (MCR.LOOP is not visible at offset 2 with LCR=0xE0)...
	g.out(regLCR, 0)
	st1 := g.in(regMCR)
	g.out(regLCR, 0xE0)
	st2 := g.in(regIIR)
	if (st1^st2)&mcrLoop == 0 {
		g.out(regLCR, 0)
		g.out(regMCR, st1^mcrLoop)
		g.out(regLCR, 0xE0)
		st2 = g.in(regIIR)
		g.out(regLCR, 0)
		g.out(regMCR, st1)
		if (st2^st1)&mcrLoop != 0 {
			t.Fatal("looks like a National SuperIO")
		}
	}
	// ...not a TI16750 (no 64-byte FIFO bit in IIR)...
	g.out(regLCR, 0)
	g.out(regIIR, fcrEnable|0x20)
	s1 := g.in(regIIR) & 0xE0
	g.out(regIIR, fcrEnable)
	g.out(regLCR, 0x80)
	g.out(regIIR, fcrEnable|0x20)
	s2 := g.in(regIIR) & 0xE0
	g.out(regIIR, fcrEnable)
	g.out(regLCR, 0)
	if s1 != 0xC0 || s2 != 0xC0 {
		t.Fatalf("IIR FIFO bits %#x/%#x, want 0xC0/0xC0", s1, s2)
	}
	// ...and not an XScale (IER bit 6 does not stick).
	ier := g.in(regIER)
	g.out(regIER, ier|0x40)
	if g.in(regIER)&0x40 != 0 {
		t.Fatal("IER.UUE sticks: would be taken for an XScale")
	}
	g.out(regIER, ier)
	g.out(regLCR, saveLCR)

	// Scratch register.
	for _, v := range []byte{0xA5, 0x5A, 0} {
		g.out(regSCR, v)
		if got := g.in(regSCR); got != v {
			t.Fatalf("SCR = %#x, want %#x", got, v)
		}
	}

	// Start-up: LSR must not read 0xFF, and must show the transmitter empty.
	if lsr := g.in(regLSR); lsr == 0xFF || lsr&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR = %#x", lsr)
	}
	// Outside loopback a terminal is connected.
	if msr := g.in(regMSR) & 0xF0; msr != msrDCD|msrDSR|msrCTS {
		t.Fatalf("MSR = %#x", msr)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); got != "" {
		t.Fatalf("probe produced output %q", got)
	}
}

// TestSerialTHREStartupTest replays serial8250_do_startup's THRE checks: the
// THR-empty interrupt must appear when ETBEI is enabled, be cleared by the
// IIR read, and reappear when ETBEI is enabled again.
func TestSerialTHREStartupTest(t *testing.T) {
	irq := &countIRQ{}
	s := NewSerial(irq, nil)
	g := guest{t, s}
	g.out(regIER, ierTHRI)
	if iir := g.in(regIIR); iir&0x0F != iirTHRI {
		t.Fatalf("IIR after enabling ETBEI = %#x", iir)
	}
	if iir := g.in(regIIR); iir&iirNoInt == 0 {
		t.Fatalf("IIR read did not clear the THRE interrupt: %#x", iir)
	}
	g.out(regIER, 0)
	g.out(regIER, ierTHRI)
	if iir := g.in(regIIR); iir&0x0F != iirTHRI {
		t.Fatalf("THRE interrupt not reasserted: IIR = %#x", iir)
	}
	g.out(regIER, 0)
	if n := irq.n.Load(); n != 2 {
		t.Fatalf("%d edges, want 2", n)
	}
}

func TestSerialTXInterrupts(t *testing.T) {
	irq := &countIRQ{}
	out := &syncBuffer{}
	s := NewSerial(irq, out)
	g := guest{t, s}

	g.out(regData, 'x') // ETBEI off: no interrupt
	if irq.n.Load() != 0 {
		t.Fatal("edge with interrupts disabled")
	}
	g.out(regIER, ierTHRI) // enable while THR empty: edge 1
	if irq.n.Load() != 1 {
		t.Fatalf("edges = %d, want 1", irq.n.Load())
	}
	g.out(regData, 'y') // still pending (IIR not read): no new edge
	if irq.n.Load() != 1 {
		t.Fatalf("edges = %d, want 1", irq.n.Load())
	}
	// The driver's handler: read IIR, then fill the FIFO; the first byte
	// makes THR-empty pending again (edge 2), the rest keep it pending.
	if iir := g.in(regIIR); iir&0x0F != iirTHRI {
		t.Fatalf("IIR = %#x", iir)
	}
	for _, c := range []byte("z\n") {
		g.out(regData, c)
	}
	if irq.n.Load() != 2 {
		t.Fatalf("edges = %d, want 2", irq.n.Load())
	}
	g.out(regIER, 0) // stop_tx
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); got != "xyz\n" {
		t.Fatalf("output %q", got)
	}
}

func TestSerialRXInterruptsAndFIFO(t *testing.T) {
	irq := &countIRQ{}
	s := NewSerial(irq, nil)
	g := guest{t, s}

	if n := s.Enqueue([]byte("ab")); n != 2 {
		t.Fatalf("Enqueue = %d", n)
	}
	if irq.n.Load() != 0 {
		t.Fatal("edge with ERBFI off")
	}
	g.out(regIER, ierRDI) // data already waiting: edge 1
	if irq.n.Load() != 1 {
		t.Fatalf("edges = %d, want 1", irq.n.Load())
	}
	s.Enqueue([]byte("c")) // still pending
	if irq.n.Load() != 1 {
		t.Fatalf("edges = %d, want 1", irq.n.Load())
	}
	if iir := g.in(regIIR); iir != iirRDI {
		t.Fatalf("IIR = %#x, want %#x (FIFOs off)", iir, iirRDI)
	}
	var got []byte
	for g.in(regLSR)&lsrDR != 0 {
		got = append(got, g.in(regData))
	}
	if string(got) != "abc" {
		t.Fatalf("received %q", got)
	}
	if iir := g.in(regIIR); iir != iirNoInt {
		t.Fatalf("IIR after draining = %#x", iir)
	}
	s.Enqueue([]byte("d")) // empty -> non-empty: edge 2
	if irq.n.Load() != 2 {
		t.Fatalf("edges = %d, want 2", irq.n.Load())
	}
	g.in(regData)

	// The FIFO holds RXFIFOSize bytes; Enqueue takes what fits, in order.
	in := make([]byte, 100)
	for i := range in {
		in[i] = byte(i)
	}
	if n := s.Enqueue(in); n != RXFIFOSize {
		t.Fatalf("Enqueue took %d, want %d", n, RXFIFOSize)
	}
	if n := s.Enqueue(in); n != 0 {
		t.Fatalf("Enqueue into a full FIFO took %d", n)
	}
	for i := range RXFIFOSize {
		if lsr := g.in(regLSR); lsr&lsrDR == 0 {
			t.Fatalf("LSR.DR clear with %d bytes left", RXFIFOSize-i)
		}
		if v := g.in(regData); v != byte(i) {
			t.Fatalf("byte %d = %#x", i, v)
		}
	}
	if g.in(regLSR)&lsrDR != 0 {
		t.Fatal("LSR.DR set on an empty FIFO")
	}
	if g.in(regData) != 0 {
		t.Fatal("empty RBR reads non-zero")
	}

	// FCR: enabling FIFOs resets them; so does an explicit clear.
	s.Enqueue([]byte("xyz"))
	g.out(regIIR, fcrEnable)
	if g.in(regLSR)&lsrDR != 0 {
		t.Fatal("FIFO not reset when enabled")
	}
	s.Enqueue([]byte("xyz"))
	g.out(regIIR, fcrEnable|fcrClearRX)
	if g.in(regLSR)&lsrDR != 0 {
		t.Fatal("FCR clear left data")
	}
	if iir := g.in(regIIR); iir != iirFIFO|iirNoInt {
		t.Fatalf("IIR = %#x", iir)
	}
}

func TestSerialLoopback(t *testing.T) {
	irq := &countIRQ{}
	out := &syncBuffer{}
	s := NewSerial(irq, out)
	g := guest{t, s}
	g.out(regMCR, mcrLoop)
	if n := s.Enqueue([]byte("host")); n != 0 {
		t.Fatalf("Enqueue in loopback took %d bytes", n)
	}
	g.out(regData, 'L')
	if g.in(regLSR)&lsrDR == 0 {
		t.Fatal("loopback byte not received")
	}
	if v := g.in(regData); v != 'L' {
		t.Fatalf("loopback byte = %q", v)
	}
	// Overrun: the FIFO keeps the first RXFIFOSize bytes, OE is raised and
	// cleared by reading LSR; with ELSI it outranks data available.
	g.out(regIER, ierRLSI|ierRDI|ierTHRI)
	for i := range RXFIFOSize + 1 {
		g.out(regData, byte(i))
	}
	if iir := g.in(regIIR); iir&0x0F != iirRLSI {
		t.Fatalf("IIR = %#x, want line status", iir)
	}
	if lsr := g.in(regLSR); lsr&(lsrOE|lsrDR) != lsrOE|lsrDR {
		t.Fatalf("LSR = %#x", lsr)
	}
	if lsr := g.in(regLSR); lsr&lsrOE != 0 {
		t.Fatal("OE not cleared by reading LSR")
	}
	if iir := g.in(regIIR); iir&0x0F != iirRDI {
		t.Fatalf("IIR = %#x, want data available", iir)
	}
	for i := range RXFIFOSize {
		if v := g.in(regData); v != byte(i) {
			t.Fatalf("byte %d = %#x", i, v)
		}
	}
	if iir := g.in(regIIR); iir&0x0F != iirTHRI {
		t.Fatalf("IIR = %#x, want THR empty", iir)
	}
	if iir := g.in(regIIR); iir&0x0F != iirNoInt {
		t.Fatalf("IIR = %#x, want none", iir)
	}

	// Modem status: each MCR output maps to its MSR input, with deltas.
	g.out(regIER, ierMSI)
	g.in(regMSR)
	before := irq.n.Load()
	g.out(regMCR, mcrLoop|mcrDTR|mcrRTS|mcrOUT1|mcrOUT2)
	if irq.n.Load() != before+1 {
		t.Fatal("modem status change raised no edge")
	}
	if iir := g.in(regIIR); iir&0x0F != iirMSI {
		t.Fatalf("IIR = %#x, want modem status", iir)
	}
	if msr := g.in(regMSR); msr != msrCTS|msrDSR|msrRI|msrDCD|msrDCTS|msrDDSR|msrDDCD {
		t.Fatalf("MSR = %#x", msr)
	}
	g.out(regMCR, mcrLoop|mcrDTR|mcrRTS|mcrOUT2) // RI falls: trailing edge
	if msr := g.in(regMSR); msr != msrCTS|msrDSR|msrDCD|msrTERI {
		t.Fatalf("MSR = %#x", msr)
	}
	if msr := g.in(regMSR); msr != msrCTS|msrDSR|msrDCD {
		t.Fatalf("MSR deltas not cleared: %#x", msr)
	}
	g.out(regMCR, 0)
	if n := s.Enqueue([]byte("h")); n != 1 {
		t.Fatal("input refused after loopback ended")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); got != "" {
		t.Fatalf("loopback bytes reached the output: %q", got)
	}
}

func TestSerialDivisorLatch(t *testing.T) {
	s := NewSerial(nil, nil)
	g := guest{t, s}
	g.out(regIER, 0x05)
	g.out(regLCR, lcrDLAB|0x03)
	g.out(regData, 0x01)
	g.out(regIER, 0x02)
	if g.in(regData) != 0x01 || g.in(regIER) != 0x02 {
		t.Fatal("divisor latch does not read back")
	}
	s.Enqueue([]byte("q"))
	g.out(regLCR, 0x03)
	if g.in(regIER) != 0x05 {
		t.Fatal("IER changed by a DLM write")
	}
	if g.in(regData) != 'q' {
		t.Fatal("RBR changed by a DLL access")
	}
	// A 2-byte access touches two consecutive registers.
	g.s.Write(regLCR, []byte{0x03, mcrRTS})
	if g.in(regMCR) != mcrRTS {
		t.Fatal("wide write did not reach the second register")
	}
	var two [2]byte
	g.s.Read(regLCR, two[:])
	if two != [2]byte{0x03, mcrRTS} {
		t.Fatalf("wide read = % x", two)
	}
}

func TestSerialErrorsReachClose(t *testing.T) {
	irq := &countIRQ{err: errors.New("irqfd gone")}
	s := NewSerial(irq, failWriter{})
	g := guest{t, s}
	g.out(regIER, ierTHRI)
	g.out(regData, '\n')
	err := s.Close()
	if err == nil || !errors.Is(err, irq.err) || !errors.Is(err, errWrite) {
		t.Fatalf("Close = %v", err)
	}
}

var errWrite = errors.New("write failed")

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errWrite }

// TestSerialReadFromBackPressure pushes more input than the FIFO holds
// through ReadFrom while a slow guest drains it: nothing may be lost.
func TestSerialReadFromBackPressure(t *testing.T) {
	irq := &countIRQ{}
	s := NewSerial(irq, nil)
	g := guest{t, s}
	g.out(regIER, ierRDI)

	want := make([]byte, 20000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.ReadFrom(&chunkReader{data: want, rng: rand.New(rand.NewPCG(3, 4))})
		done <- result{n, err}
	}()

	got := make([]byte, 0, len(want))
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d bytes", len(got), len(want))
		}
		if g.in(regLSR)&lsrDR == 0 {
			time.Sleep(10 * time.Microsecond)
			continue
		}
		got = append(got, g.in(regData))
	}
	r := <-done
	if r.err != nil || r.n != int64(len(want)) {
		t.Fatalf("ReadFrom = %d, %v", r.n, r.err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("input corrupted")
	}
	if irq.n.Load() == 0 {
		t.Fatal("no interrupts raised")
	}
}

// TestSerialReadFromClose checks ReadFrom sleeps on a full FIFO and returns
// when the port closes.
func TestSerialReadFromClose(t *testing.T) {
	s := NewSerial(nil, nil)
	done := make(chan error, 1)
	var n atomic.Int64
	go func() {
		k, err := s.ReadFrom(zeroReader{})
		n.Store(k)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("ReadFrom returned early: %v", err)
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrSerialClosed) {
			t.Fatalf("ReadFrom = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return after Close")
	}
	if n.Load() != RXFIFOSize {
		t.Fatalf("ReadFrom delivered %d bytes, want %d", n.Load(), RXFIFOSize)
	}
}

func TestSerialReadFromError(t *testing.T) {
	s := NewSerial(nil, nil)
	boom := errors.New("boom")
	n, err := s.ReadFrom(io.MultiReader(bytes.NewReader([]byte("ok")), errReader{boom}))
	if n != 2 || !errors.Is(err, boom) {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// chunkReader returns data in random-sized pieces.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(200))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestSerialConcurrent(t *testing.T) {
	irq := &countIRQ{}
	out := &syncBuffer{}
	s := NewSerial(irq, out)
	var wg sync.WaitGroup
	for v := range 2 {
		wg.Go(func() {
			g := guest{t, s}
			g.out(regIER, ierRDI|ierTHRI)
			for i := range 2000 {
				g.out(regData, byte('a'+v))
				if i%64 == 0 {
					g.out(regData, '\n')
				}
				g.in(regIIR)
				if g.in(regLSR)&lsrDR != 0 {
					g.in(regData)
				}
			}
		})
	}
	wg.Go(func() {
		for range 2000 {
			s.Enqueue([]byte("input"))
		}
	})
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := out.snapshot()
	if n := len(got); n != 2*(2000+2000/64+1) {
		t.Fatalf("output has %d bytes", n)
	}
}
