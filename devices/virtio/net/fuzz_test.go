package net

import (
	"errors"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
	"github.com/vmm-dev/vmm/memory"
	"github.com/vmm-dev/vmm/network"
)

// FuzzTxFrame feeds guest-controlled bytes, split into up to three
// buffers, and negotiated features through the transmit path: it must never
// panic, and whatever reaches the backend must have a valid header, no
// receive-only flags and exactly the guest's frame behind it.
func FuzzTxFrame(f *testing.F) {
	seed := func(hd network.Header, n int) []byte {
		return append(hdrBytes(hd), ethFrame(n, 1)...)
	}
	all := network.OffloadFeatures
	f.Add(seed(network.Header{}, 60), uint16(5), uint16(30), uint64(0))
	f.Add(seed(network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}, 100), uint16(12), uint16(40), all)
	f.Add(seed(network.Header{Flags: network.HdrFNeedsCsum, GSOType: network.GSOTCPv4, GSOSize: 1448, HdrLen: 54, CsumStart: 34, CsumOffset: 16}, 3000), uint16(1), uint16(2), all)
	f.Add(seed(network.Header{Flags: network.HdrFNeedsCsum, CsumStart: 0xffff, CsumOffset: 0xffff}, 60), uint16(0), uint16(0), all)
	f.Add(seed(network.Header{GSOType: network.GSOTCPv6 | network.GSOECN, GSOSize: 1}, 60), uint16(3), uint16(9), all)
	f.Add([]byte{1, 2, 3}, uint16(1), uint16(2), all)
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 20}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, s1, s2 uint16, features uint64) {
		if len(data) > 1<<19 {
			return
		}
		features &= network.OffloadFeatures
		be := newFakeBackend(network.OffloadFeatures)
		be.fromGst = make(chan []byte, 1)
		d, err := New(Config{MAC: testMAC, Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		if err := mem.WriteAt(data, 0x1000); err != nil {
			t.Fatal(err)
		}
		n := uint64(len(data))
		a, b := min(uint64(s1), n), min(uint64(s2), n)
		if a > b {
			a, b = b, a
		}
		c := &queue.Chain{Descs: []queue.Desc{
			{Addr: 0x1000, Len: uint32(a)},
			{Addr: 0x1000 + a, Len: uint32(b - a)},
			{Addr: 0x1000 + b, Len: uint32(n - b)},
		}}
		r := &activation{mem: mem, features: features, done: make(chan struct{})}
		var st txState
		if err := d.transmit(r, c, &st); err != nil {
			t.Fatalf("transmit: %v", err)
		}
		select {
		case got := <-be.fromGst:
			if len(got) != len(data) {
				t.Fatalf("backend got %d bytes of %d", len(got), len(data))
			}
			h, err := network.DecodeHeader(got)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckTxHeader(h, len(got)-network.HeaderLen, features); err != nil {
				t.Fatalf("sent a frame with a bad header: %v", err)
			}
			if h.Flags&network.HdrFDataValid != 0 || h.NumBuffers != 0 {
				t.Fatalf("header not sanitized: %+v", h)
			}
			if string(got[network.HeaderLen:]) != string(data[network.HeaderLen:]) {
				t.Fatal("frame bytes changed")
			}
		default:
			h, herr := network.DecodeHeader(data)
			if herr == nil && CheckTxHeader(h, len(data)-network.HeaderLen, features) == nil {
				t.Fatal("a valid frame was dropped")
			}
		}
	})
}

// FuzzRxHeader: whatever a backend hands over, the header delivered to the
// guest only uses what the guest negotiated.
func FuzzRxHeader(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0}, 1000, network.OffloadFeatures)
	f.Add([]byte{2, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9}, 60, uint64(0))
	f.Fuzz(func(t *testing.T, hb []byte, frameLen int, features uint64) {
		h, err := network.DecodeHeader(hb)
		if err != nil {
			return
		}
		out, err := checkRxHeader(h, frameLen, features)
		if err != nil {
			return
		}
		if frameLen < MinFrameLen || frameLen > MaxFrameLen || out.NumBuffers != 0 {
			t.Fatalf("accepted %+v len %d", out, frameLen)
		}
		if features&network.FGuestCsum == 0 && out != (network.Header{}) {
			t.Fatalf("offload header %+v for a guest without GUEST_CSUM", out)
		}
		if out.Flags&network.HdrFNeedsCsum != 0 && int(out.CsumStart)+int(out.CsumOffset)+2 > frameLen {
			t.Fatalf("checksum outside the frame: %+v", out)
		}
		if g := out.GSOType &^ network.GSOECN; g != network.GSONone && out.GSOSize == 0 {
			t.Fatalf("GSO without size: %+v", out)
		}
	})
}

// FuzzRxDeliver offers receive chains of guest-chosen shapes (lengths,
// readable buffers, buffers outside RAM) to one frame: deliver must never
// write more into a chain than its writable length, and either deliver the
// whole frame with a correct num_buffers or complete what it took with 0.
func FuzzRxDeliver(f *testing.F) {
	f.Add(uint16(1500), true, []byte{0x08, 0x00, 1, 0x08, 0x00, 1})
	f.Add(uint16(3000), true, []byte{0x00, 0x04, 1, 0x00, 0x01, 0, 0x00, 0x10, 1, 0x08, 0x00, 1})
	f.Add(uint16(100), false, []byte{0x0b, 0x00, 1, 0x00, 0x02, 1})
	f.Add(uint16(60000), true, []byte{0xff, 0xff, 1, 0xff, 0xff, 2})
	f.Fuzz(func(t *testing.T, frameLen uint16, mergeable bool, shape []byte) {
		mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 4 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		drv, err := queuetest.New(mem, 16, 0x1000, 3<<20)
		if err != nil {
			t.Fatal(err)
		}
		type offer struct {
			head  uint16
			addr  uint64
			wlen  uint32
			valid bool
		}
		var offers []offer
		descs := 0 // the 16-entry table must not wrap onto chains in flight
		for i := 0; i+3 <= len(shape); i += 3 {
			n := uint32(shape[i])<<8 | uint32(shape[i+1])
			kind := shape[i+2] % 3
			if descs += 1 + int(kind/2); descs > 16 {
				break
			}
			a, err := drv.Alloc(uint64(n))
			if err != nil {
				break
			}
			o := offer{addr: a, wlen: n, valid: true}
			switch kind {
			case 0: // device-readable: no room
				o.head, err = drv.AddChain([]queuetest.Buf{{Addr: a, Len: n}})
				o.wlen = 0
			case 1:
				o.head, err = drv.AddChain([]queuetest.Buf{{Addr: a, Len: n, Write: true}})
			case 2: // a second buffer outside RAM: malformed
				o.head, err = drv.AddChain([]queuetest.Buf{{Addr: a, Len: n, Write: true}, {Addr: 1 << 40, Len: 1, Write: true}})
				o.valid = false
			}
			if err != nil {
				t.Fatal(err)
			}
			offers = append(offers, o)
		}
		q := drv.Queue()
		if err := q.Activate(mem, QueueSize, false); err != nil {
			t.Fatal(err)
		}
		features := virtio.FVersion1
		if mergeable {
			features |= network.FMrgRxbuf
		}
		kick := virtio.NewChanKick()
		kick.Close() // out of buffers ends delivery instead of waiting
		r := &activation{mem: mem, features: features, queues: []*queue.Queue{q, nil},
			kicks: []virtio.Kick{kick, kick}, irq: queuetest.NewIRQ(), done: make(chan struct{})}
		d, err := New(Config{MAC: testMAC, Backend: newFakeBackend(0)})
		if err != nil {
			t.Fatal(err)
		}
		fr := make([]byte, network.HeaderLen+int(frameLen))
		copy(fr[network.HeaderLen:], ethFrame(int(frameLen), 7))
		if _, err := d.deliver(r, q, fr, nil); err != nil && !errors.Is(err, errStopped) {
			t.Fatalf("deliver: %v", err)
		}
		used, err := drv.Used()
		if err != nil {
			t.Fatal(err)
		}
		byHead := map[uint32]offer{}
		for _, o := range offers {
			byHead[uint32(o.head)] = o
		}
		var total uint64
		for i, u := range used {
			o, ok := byHead[u.ID]
			if !ok {
				t.Fatalf("used entry %d is %+v: not an offered chain (or used twice); offers %+v", i, u, offers)
			}
			delete(byHead, u.ID)
			if u.Len > o.wlen || (!o.valid && u.Len != 0) {
				t.Fatalf("chain %d: used len %d, writable %d valid %v", u.ID, u.Len, o.wlen, o.valid)
			}
			total += uint64(u.Len)
		}
		if total != 0 && total != uint64(len(fr)) {
			t.Fatalf("wrote %d bytes of a %d-byte frame", total, len(fr))
		}
		if total == uint64(len(fr)) {
			var got []byte
			nbufs := 0
			for _, u := range used {
				if u.Len == 0 {
					continue
				}
				nbufs++
				b := make([]byte, u.Len)
				for _, o := range offers {
					if uint32(o.head) == u.ID {
						mem.ReadAt(b, o.addr)
					}
				}
				got = append(got, b...)
			}
			h, _ := network.DecodeHeader(got)
			if int(h.NumBuffers) != nbufs || string(got[network.HeaderLen:]) != string(fr[network.HeaderLen:]) {
				t.Fatalf("delivered frame differs (num_buffers %d, %d chains)", h.NumBuffers, nbufs)
			}
		}
	})
}
