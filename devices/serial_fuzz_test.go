package devices

import (
	"bytes"
	"testing"
)

// FuzzSerial feeds a random sequence of register reads, writes (of every
// access width) and host input to a Serial and checks its invariants after
// each step: the FIFO stays within bounds and in order, registers keep only
// their defined bits, IIR names a real source, LSR.DR matches the FIFO, and
// no edge is raised for a source that is not enabled.
//
// Each op is 3 bytes: kind, offset, value.
func FuzzSerial(f *testing.F) {
	f.Add([]byte{})
	// Linux-style probe and start-up.
	f.Add([]byte{1, 1, 0, 1, 1, 0x0F, 0, 1, 0, 1, 4, 0x1A, 0, 6, 0, 1, 3, 0xBF, 1, 2, 0, 1, 3, 0, 1, 2, 1, 0, 2, 0})
	// Loopback overrun with all interrupts on.
	f.Add([]byte{1, 1, 0x0F, 1, 4, 0x10, 5, 0, 70, 0, 2, 0, 0, 5, 0, 0, 0, 0, 0, 6, 0})
	// Host input, DLAB, FIFO clear.
	f.Add([]byte{4, 0, 100, 1, 3, 0x80, 0, 0, 0, 1, 3, 3, 0, 0, 0, 1, 2, 3, 0, 5, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		irq := &countIRQ{}
		out := &bytes.Buffer{}
		s := NewSerial(irq, out)
		var wide [8]byte
		var model []byte // expected FIFO contents when only host input is used
		modelOK := true
		for len(ops) >= 3 {
			kind, off, val := ops[0], uint64(ops[1]%9), ops[2]
			ops = ops[3:]
			size := []int{1, 2, 4, 8}[kind>>6]
			if off+uint64(size) > SerialSize {
				size = 1
			}
			switch kind % 6 {
			case 0: // read
				s.Read(off, wide[:size])
				if off == regData && s.lcr&lcrDLAB == 0 || size > 1 {
					modelOK = false // bytes may have been consumed
				}
			case 1: // write
				for i := range wide[:size] {
					wide[i] = val + byte(i)
				}
				s.Write(off, wide[:size])
				modelOK = false
			case 2: // IIR read, as an interrupt handler does first
				s.Read(regIIR, wide[:1])
				if it := wide[0] & 0x0F; it != iirNoInt && it != iirMSI && it != iirTHRI && it != iirRDI && it != iirRLSI {
					t.Fatalf("IIR = %#x", wide[0])
				}
			case 3, 4: // host input
				in := bytes.Repeat([]byte{val}, int(ops2n(kind)))
				n := s.Enqueue(in)
				if n > len(in) {
					t.Fatalf("Enqueue took %d of %d", n, len(in))
				}
				model = append(model, in[:n]...)
			case 5: // drain like a polling driver
				for i := 0; i < 100; i++ {
					s.Read(regLSR, wide[:1])
					if wide[0]&lsrDR == 0 {
						break
					}
					s.Read(regData, wide[:1])
					if modelOK && s.lcr&lcrDLAB == 0 {
						if len(model) == 0 || model[0] != wide[0] {
							t.Fatalf("FIFO returned %#x, want % x", wide[0], model)
						}
						model = model[1:]
					}
				}
			}
			checkSerialInvariants(t, s)
			if modelOK && s.rxLen != len(model) {
				t.Fatalf("FIFO holds %d bytes, model %d", s.rxLen, len(model))
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// ops2n derives an input length (0..RXFIFOSize+8) from an op's kind byte.
func ops2n(kind byte) int { return int(kind) % (RXFIFOSize + 9) }

func checkSerialInvariants(t *testing.T, s *Serial) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rxLen < 0 || s.rxLen > RXFIFOSize || s.rxHead < 0 || s.rxHead >= RXFIFOSize {
		t.Fatalf("FIFO state head=%d len=%d", s.rxHead, s.rxLen)
	}
	if s.ier&^ierMask != 0 || s.mcr&^mcrMask != 0 {
		t.Fatalf("reserved bits kept: IER %#x MCR %#x", s.ier, s.mcr)
	}
	if s.msrDelta&0xF0 != 0 || s.lsrErr&^lsrOE != 0 {
		t.Fatalf("MSR delta %#x LSR errors %#x", s.msrDelta, s.lsrErr)
	}
	if s.asserted&^s.ier != 0 {
		t.Fatalf("asserted %#x outside IER %#x", s.asserted, s.ier)
	}
	iir := s.iirLocked()
	if (iir&iirNoInt != 0) != (s.pendingLocked() == 0) {
		t.Fatalf("IIR %#x disagrees with pending %#x", iir, s.pendingLocked())
	}
	if s.fifo != (iir&iirFIFO == iirFIFO) {
		t.Fatalf("IIR FIFO bits %#x with FIFO enabled %v", iir, s.fifo)
	}
}
