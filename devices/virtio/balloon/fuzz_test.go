package balloon

import (
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/queue/queuetest"
)

// FuzzPFNs puts arbitrary bytes in an inflate chain and a report of
// arbitrary ranges: the device must skip what is not guest RAM, never
// touch the rings, and keep serving.
func FuzzPFNs(f *testing.F) {
	f.Add([]byte{0, 4, 0, 0, 1, 4, 0, 0}, uint64(4<<20), uint32(2<<20))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint64(memSize-4096), uint32(8192))
	f.Add([]byte{1, 2, 3}, uint64(0), uint32(0))
	f.Fuzz(func(t *testing.T, list []byte, addr uint64, n uint32) {
		if len(list) == 0 || len(list) > 4096 {
			return
		}
		d := newFakeDriver(t, allFeatures)
		a, err := d.drv[inflateQueue].Alloc(uint64(len(list)))
		if err != nil {
			t.Fatal(err)
		}
		// Keep the rings (the first 2 MiB) out of reach: a guest that
		// discards its own rings breaks only its device, which other
		// tests cover.
		for i := 0; i+4 <= len(list); i += 4 {
			if list[i+3] == 0 && list[i+2] == 0 && list[i+1] < 2 {
				list[i+1] |= 2 // a PFN below 512 (2 MiB): move it above
			}
		}
		d.mem.WriteAt(list, a)
		d.submit(inflateQueue, []queuetest.Buf{{Addr: a, Len: uint32(len(list))}})
		if addr < 2<<20 {
			addr += 2 << 20
		}
		if d.mem.Contains(addr, uint64(n)) && n > 0 {
			d.submit(reportingQueue, []queuetest.Buf{{Addr: addr, Len: n, Write: true}})
		}
		if s := d.dev.Stats(); s.Failures != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// FuzzStats gives the statistics queue arbitrary bytes: entries with any
// tags and values, lengths that are not whole entries. The device keeps
// serving and never fails.
func FuzzStats(f *testing.F) {
	f.Add([]byte{4, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || len(b) > 1024 {
			return
		}
		d := newFakeDriver(t, allFeatures|FStatsVQ)
		a, err := d.drv[2].Alloc(uint64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		d.mem.WriteAt(b, a)
		if _, err := d.drv[2].AddChain([]queuetest.Buf{{Addr: a, Len: uint32(len(b))}}); err != nil {
			t.Fatal(err)
		}
		d.kicks[2].Signal()
		d.dev.GuestStats()
		d.submit(inflateQueue, []queuetest.Buf{{Addr: a, Len: 0}}) // still serving
		if s := d.dev.Stats(); s.Failures != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}
