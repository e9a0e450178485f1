package pci

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// Fuzz program encoding: each op is
//
//	kind, offset byte 1, offset byte 2, size, value (8 bytes, writes only)
//
// kind%8: 0 BAR read, 1 BAR write, 2 config read, 3 config write,
// 4 device Notify, 5 device ConfigChanged, 6 device Failed, 7 notify write.
const (
	opBARRead = iota
	opBARWrite
	opCfgRead
	opCfgWrite
	opNotify
	opConfigChanged
	opFailed
	opNotifyWrite
)

var opSizes = [...]int{1, 2, 4, 8}

type progBuilder struct{ b []byte }

func (p *progBuilder) op(kind byte, off uint64, size int, v uint64) {
	var s byte
	for i, n := range opSizes {
		if n == size {
			s = byte(i)
		}
	}
	region := byte(off >> 12)
	p.b = append(p.b, kind, region, byte(off&0xFFF), s)
	if kind == opBARWrite || kind == opCfgWrite {
		p.b = binary.LittleEndian.AppendUint64(p.b, v)
	}
}

// linuxProgram encodes the probe sequence of TestLinuxInitSequence.
func linuxProgram(qsize uint64, features uint64) []byte {
	p := &progBuilder{}
	w := func(off uint64, n int, v uint64) { p.op(opBARWrite, off, n, v) }
	w(regDeviceStatus, 1, 0)
	w(regDeviceStatus, 1, 3)
	w(regDriverFeatureSel, 4, 0)
	w(regDriverFeature, 4, features&0xFFFFFFFF)
	w(regDriverFeatureSel, 4, 1)
	w(regDriverFeature, 4, features>>32)
	w(regDeviceStatus, 1, 0xB)
	p.op(opCfgWrite, 0x98+2, 2, 0x8000) // MSI-X enable (capability offset checked below)
	for i := uint64(0); i < 3; i++ {
		w(msixTableOffset+16*i, 8, 0xFEE0_0000)
		w(msixTableOffset+16*i+8, 8, 0x40+i)
	}
	w(regMSIXConfig, 2, 0)
	w(regQueueSelect, 2, 0)
	w(regQueueSize, 2, qsize)
	w(regQueueDesc, 8, 0x10000)
	w(regQueueDriver, 8, 0x14000)
	w(regQueueDevice, 8, 0x18000)
	w(regQueueMSIXVector, 2, 1)
	w(regQueueEnable, 2, 1)
	w(regDeviceStatus, 1, 0xF)
	p.op(opNotify, 0, 1, 0)
	p.op(opNotifyWrite, notifyOffset, 2, 0)
	p.op(opConfigChanged, 0, 1, 0)
	p.op(opBARRead, isrOffset, 1, 0)
	p.op(opFailed, 0, 1, 0)
	p.op(opBARRead, regDeviceStatus, 1, 0)
	return p.b
}

func runProgram(r *rig, prog []byte) {
	for len(prog) >= 4 {
		kind, region, lo, size := prog[0]%8, prog[1], prog[2], opSizes[prog[3]%4]
		prog = prog[4:]
		barOff := uint64(region%8)<<12 | uint64(lo)
		if region&0x80 != 0 {
			barOff = uint64(region&7)<<12 | uint64(lo)<<4 // reach the rest of a page
		}
		cfgOff := int(lo)
		var v [8]byte
		if kind == opBARWrite || kind == opCfgWrite {
			n := copy(v[:], prog)
			prog = prog[n:]
		}
		switch kind {
		case opBARRead:
			r.tr.Read(barOff, make([]byte, size))
		case opBARWrite:
			r.tr.Write(barOff, v[:size])
		case opCfgRead:
			if size > 4 {
				size = 4
			}
			r.tr.ConfigRead(cfgOff, make([]byte, size))
		case opCfgWrite:
			if size > 4 {
				size = 4
			}
			r.tr.ConfigWrite(cfgOff, v[:size])
		case opNotify:
			if irq := r.dev.irq(); irq != nil {
				irq.Notify(int(lo % 3))
			}
		case opConfigChanged:
			if irq := r.dev.irq(); irq != nil {
				irq.ConfigChanged()
			}
		case opFailed:
			if irq := r.dev.irq(); irq != nil {
				virtio.ReportFailure(irq, errors.New("fuzz"))
			}
		case opNotifyWrite:
			r.tr.Write(notifyOffset+uint64(lo%4)*NotifyMultiplier, v[:size])
		}
	}
}

func TestLinuxProgramSeed(t *testing.T) {
	r := newRig(t, newFakeDevice())
	if r.tr.msixCap != 0x98 {
		t.Fatalf("MSI-X capability moved to %#x; update linuxProgram", r.tr.msixCap)
	}
	runProgram(r, linuxProgram(64, virtio.FVersion1|virtio.FRingEventIdx))
	if r.dev.activations != 1 || r.router.vecs[1].count() != 1 || r.router.vecs[0].count() != 2 {
		t.Fatalf("seed did not drive the device: activations %d, vec1 %d, vec0 %d",
			r.dev.activations, r.router.vecs[1].count(), r.router.vecs[0].count())
	}
	if r.status()&virtio.StatusDeviceNeedsReset == 0 {
		t.Fatal("Failed did not set NEEDS_RESET")
	}
}

// FuzzTransport feeds random configuration-space and BAR accesses, device
// interrupts and failure reports: nothing may panic, the fake device checks
// the Activate contract, and afterwards a reset must bring the transport
// back to a clean state with no ioeventfd left registered.
func FuzzTransport(f *testing.F) {
	f.Add(linuxProgram(64, virtio.FVersion1|virtio.FRingEventIdx))
	f.Add(linuxProgram(100, virtio.FVersion1))
	f.Add(linuxProgram(256, 1<<1))
	f.Add([]byte{opCfgWrite, 0, 0x10, 2, 0xFF, 0xFF, 0xFF, 0xFF})
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 20}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	f.Fuzz(func(t *testing.T, prog []byte) {
		d := newFakeDevice()
		r := &rig{dev: d, router: &fakeRouter{}, ioev: &fakeIOEv{}, mem: mem}
		tr, err := New(d, mem, r.router, r.ioev, testBAR)
		if err != nil {
			t.Fatal(err)
		}
		r.tr = tr
		runProgram(r, prog)
		r.setStatus(0)
		if r.status() != 0 || r.tr.Fault() != nil || r.ioev.count() != 0 {
			t.Fatalf("after reset: status %#x fault %v ioeventfds %d", r.status(), r.tr.Fault(), r.ioev.count())
		}
		if err := r.tr.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConcurrentWorkersAndRegisters runs device-side interrupts against
// vCPU-side register traffic and resets; run with -race.
func TestConcurrentWorkersAndRegisters(t *testing.T) {
	r := newRig(t, newFakeDevice())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if irq := r.dev.irq(); irq != nil {
					irq.Notify(0)
					irq.ConfigChanged()
				}
				r.tr.Notify(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // a second vCPU reading registers and config space
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.rd(commonOffset+regDeviceStatus, 1)
			r.rd(isrOffset, 1)
			r.rd(msixPBAOffset, 8)
			r.cfgRd(r.tr.msixCap, 4)
		}
	}()
	for i := 0; i < 200; i++ {
		r.linuxInit(t, 64)
		r.wr(msixTableOffset+msixEntrySize+12, 4, uint64(i&1))
		r.cfgWr(r.tr.msixCap+2, 2, uint64(0x8000|(i&2)<<13))
		if i%7 == 0 {
			virtio.ReportFailure(r.dev.irq(), errors.New("worker failure"))
		}
	}
	close(stop)
	wg.Wait()
}
