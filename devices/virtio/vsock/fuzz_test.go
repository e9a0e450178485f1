package vsock

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzTxPackets sends the device sequences of transmitted packets built
// from the input: raw headers, some steered to the guest's and host's
// addresses and to a port a host program listens on, with payloads whose
// declared length may lie. The device must not panic, must not fail (the
// ring itself is well-formed) and must still connect the guest afterwards.
func FuzzTxPackets(f *testing.F) {
	seed := func(ctl byte, h header, payload string) []byte {
		b := make([]byte, 1+hdrLen)
		b[0] = ctl
		h.encode(b[1:])
		return append(b, payload...)
	}
	f.Add(seed(0, hdr(opRequest, 1025, 5000), ""))
	f.Add(append(seed(0, hdr(opRequest, 1025, 5000), ""), seed(0, header{srcCID: testCID, dstCID: HostCID, srcPort: 1025, dstPort: 5000, typ: typeStream, op: opRW, len: 5}, "hello")...))
	f.Add(append(seed(0, hdr(opRequest, 1025, 5000), ""), seed(0, header{srcCID: testCID, dstCID: HostCID, srcPort: 1025, dstPort: 5000, typ: typeStream, op: opShutdown, flags: 3}, "")...))
	f.Add(seed(1|2|4|8|0x40, header{len: 1 << 20}, "xyz"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := newFakeGuest(t)
		ln := g.hostListen(5000)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func(c net.Conn) {
					defer c.Close()
					c.Write([]byte("from the host"))
					c.SetReadDeadline(time.Now().Add(time.Second))
					io.Copy(io.Discard, c)
				}(c)
			}
		}()
		for n := 0; len(data) >= 1+hdrLen && n < 32; n++ {
			ctl := data[0]
			h := decodeHeader(data[1 : 1+hdrLen])
			data = data[1+hdrLen:]
			if ctl&1 != 0 {
				h.srcCID, h.dstCID, h.typ = testCID, HostCID, typeStream
			}
			if ctl&2 != 0 {
				h.srcPort, h.dstPort = 1025+uint32(ctl>>6), 5000
			}
			if ctl&4 != 0 {
				h.op = uint16(ctl>>3) % 8
			}
			k := min(len(data), 4096)
			if ctl&8 != 0 {
				k = min(k, int(h.len))
			}
			g.sendRaw(h, data[:k])
			data = data[k:]
			g.poll()
		}
		// Everything transmitted comes back.
		deadline := time.Now().Add(10 * time.Second)
		for g.reclaimTx(); len(g.txAddr) > 0; g.reclaimTx() {
			if time.Now().After(deadline) {
				t.Fatalf("%d transmitted chains never completed", len(g.txAddr))
			}
			g.poll()
			time.Sleep(time.Millisecond)
		}
		if s := g.dev.Stats(); s.Failures != 0 {
			t.Fatalf("the device failed: %+v", s)
		}
		// The device still connects the guest (from a port the input did
		// not use).
		g.send(hdr(opRequest, 4000, 5000), nil)
		deadline = time.Now().Add(10 * time.Second)
		for {
			for _, p := range g.poll() {
				if p.h.op == opResponse && p.h.dstPort == 4000 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no response to a connection request after the input")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// FuzzConnectLine checks the host programs' request line parser.
func FuzzConnectLine(f *testing.F) {
	for _, s := range []string{"CONNECT 5000", "CONNECT ", "CONNECT -1", "CONNECT 4294967296", "CONNECT 0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		port, err := parseConnect(line)
		if err == nil && line != "CONNECT "+itoa(port) && len(line) > len("CONNECT ") {
			// Leading zeros or a plus sign are the only other forms.
			if p2, err := parseConnect("CONNECT " + itoa(port)); err != nil || p2 != port {
				t.Fatalf("%q parsed as %d, which does not round-trip", line, port)
			}
		}
	})
}

func itoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
