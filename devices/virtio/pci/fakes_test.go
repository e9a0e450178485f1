package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/vmm-dev/vmm/devices"
	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// Compile-time checks of the contracts the machine relies on.
var (
	_ pcibus.Endpoint        = (*Transport)(nil)
	_ devices.Device         = (*Transport)(nil)
	_ virtio.Interrupt       = (*Transport)(nil)
	_ virtio.FailureReporter = (*Transport)(nil)
	_ virtio.Interrupt       = (*activation)(nil)
	_ virtio.FailureReporter = (*activation)(nil)
)

const testBAR = 0xC000_0000

// fakeDevice is a virtio.Device that records what the transport does.
type fakeDevice struct {
	id       uint16
	features uint64
	sizes    []uint16

	mu          sync.Mutex
	config      [16]byte
	activations int
	resets      int
	activateErr error
	gotFeatures uint64
	gotQueues   []*queue.Queue
	gotKicks    []virtio.Kick
	gotIRQ      virtio.Interrupt
}

func newFakeDevice() *fakeDevice {
	d := &fakeDevice{
		id:       virtio.IDBlock,
		features: virtio.FVersion1 | virtio.FRingEventIdx | virtio.FRingIndirectDesc | 1<<1 | 1<<6 | virtio.FRingPacked,
		sizes:    []uint16{256, 64},
	}
	for i := range d.config {
		d.config[i] = byte(0xA0 + i)
	}
	return d
}

func (d *fakeDevice) DeviceID() uint16        { return d.id }
func (d *fakeDevice) Features() uint64        { return d.features }
func (d *fakeDevice) QueueMaxSizes() []uint16 { return d.sizes }

func (d *fakeDevice) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		if o := off + uint64(i); o < uint64(len(d.config)) {
			data[i] = d.config[o]
		} else {
			data[i] = 0
		}
	}
}

func (d *fakeDevice) WriteConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, v := range data {
		if o := off + uint64(i); o < uint64(len(d.config)) {
			d.config[o] = v
		}
	}
}

func (d *fakeDevice) Activate(mem *memory.Guest, features uint64, queues []*queue.Queue, kicks []virtio.Kick, irq virtio.Interrupt) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(queues) != len(d.sizes) || len(kicks) != len(d.sizes) || mem == nil || irq == nil {
		panic("transport broke the Activate contract")
	}
	for i, q := range queues {
		if kicks[i] == nil || (q != nil && !q.Active()) {
			panic("transport broke the Activate contract")
		}
	}
	d.activations++
	if d.activateErr != nil {
		closeKicks(kicks)
		return d.activateErr
	}
	d.gotFeatures, d.gotQueues, d.gotKicks, d.gotIRQ = features, queues, kicks, irq
	return nil
}

func (d *fakeDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resets++
	closeKicks(d.gotKicks)
	d.gotQueues, d.gotKicks, d.gotIRQ = nil, nil, nil
}

func closeKicks(ks []virtio.Kick) {
	for _, k := range ks {
		k.Close()
	}
}

func (d *fakeDevice) irq() virtio.Interrupt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gotIRQ
}

// fakeVector records routes and triggers.
type fakeVector struct {
	mu        sync.Mutex
	addr      uint64
	data      uint32
	updates   int
	triggers  int
	updateErr error
}

func (v *fakeVector) Update(addr uint64, data uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.updateErr != nil {
		return v.updateErr
	}
	v.addr, v.data = addr, data
	v.updates++
	return nil
}

func (v *fakeVector) Trigger() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.triggers++
	return nil
}

func (v *fakeVector) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.triggers
}

type fakeRouter struct{ vecs []*fakeVector }

func (r *fakeRouter) AllocateVectors(n int) ([]MSIVector, error) {
	out := make([]MSIVector, n)
	r.vecs = make([]*fakeVector, n)
	for i := range out {
		r.vecs[i] = &fakeVector{}
		out[i] = r.vecs[i]
	}
	return out, nil
}

// fakeIOEv mimics KVM_IOEVENTFD bookkeeping: one registration per
// (addr, length), deassign must name the same fd.
type fakeIOEv struct {
	mu   sync.Mutex
	regs map[[2]uint64]int
	fail bool
}

func (f *fakeIOEv) RegisterIOEvent(addr uint64, length uint32, fd int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("fake: ioeventfd refused")
	}
	k := [2]uint64{addr, uint64(length)}
	if _, ok := f.regs[k]; ok {
		return fmt.Errorf("fake: ioeventfd at %#x exists", addr)
	}
	if f.regs == nil {
		f.regs = map[[2]uint64]int{}
	}
	f.regs[k] = fd
	return nil
}

func (f *fakeIOEv) UnregisterIOEvent(addr uint64, length uint32, fd int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := [2]uint64{addr, uint64(length)}
	if got, ok := f.regs[k]; !ok || got != fd {
		return fmt.Errorf("fake: no ioeventfd fd %d at %#x", fd, addr)
	}
	delete(f.regs, k)
	return nil
}

func (f *fakeIOEv) lookup(addr uint64) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd, ok := f.regs[[2]uint64{addr, NotifyIOEventLength}]
	return fd, ok
}

func (f *fakeIOEv) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.regs)
}

// rig is a transport with fakes around it and register helpers.
type rig struct {
	tr     *Transport
	dev    *fakeDevice
	router *fakeRouter
	ioev   *fakeIOEv
	mem    *memory.Guest
}

func newRig(t testing.TB, dev *fakeDevice) *rig {
	mem, err := memory.New([]memory.RegionSpec{{Base: 0, Size: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{dev: dev, router: &fakeRouter{}, ioev: &fakeIOEv{}, mem: mem}
	r.tr, err = New(dev, mem, r.router, r.ioev, testBAR)
	if err != nil {
		mem.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		mem.Close()
	})
	return r
}

func (r *rig) rd(off uint64, n int) uint64 {
	p := make([]byte, n)
	r.tr.Read(off, p)
	var b [8]byte
	copy(b[:], p)
	return binary.LittleEndian.Uint64(b[:])
}

func (r *rig) wr(off uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	r.tr.Write(off, b[:n])
}

func (r *rig) cfgRd(off, n int) uint64 {
	p := make([]byte, n)
	r.tr.ConfigRead(off, p)
	var b [8]byte
	copy(b[:], p)
	return binary.LittleEndian.Uint64(b[:])
}

func (r *rig) cfgWr(off, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	r.tr.ConfigWrite(off, b[:n])
}

func (r *rig) status() uint8 { return uint8(r.rd(commonOffset+regDeviceStatus, 1)) }

func (r *rig) setStatus(v uint8) { r.wr(commonOffset+regDeviceStatus, 1, uint64(v)) }

// enableMSIX sets MSI-X Enable and programs and unmasks every vector.
func (r *rig) enableMSIX() {
	for i := range r.router.vecs {
		e := msixTableOffset + uint64(i)*msixEntrySize
		r.wr(e, 4, 0xFEE0_0000)
		r.wr(e+4, 4, 0)
		r.wr(e+8, 4, uint64(0x40+i))
		r.wr(e+12, 4, 0)
	}
	r.cfgWr(r.tr.msixCap+2, 2, 0x8000)
}

// ring layout for queue q used by the fake driver.
func ringAddrs(q int) (desc, avail, used uint64) {
	base := 0x10000 + uint64(q)*0x10000
	return base, base + 0x4000, base + 0x8000
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err)
	}
	return len(ents)
}
