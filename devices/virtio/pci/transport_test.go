package pci

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	pcibus "github.com/vmm-dev/vmm/devices/pci"
	"github.com/vmm-dev/vmm/devices/virtio"
)

// conf1Read reads configuration space of bus 0 slot through ports 0xCF8/0xCFC.
func conf1Read(b *pcibus.HostBridge, slot, reg, n int) uint32 {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 1<<31|uint32(slot)<<11|uint32(reg&0xFC))
	b.Write(0, a[:])
	p := make([]byte, 4)
	b.Read(4+uint64(reg&3), p[:n])
	return binary.LittleEndian.Uint32(p)
}

func conf1Write(b *pcibus.HostBridge, slot, reg, n int, v uint32) {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 1<<31|uint32(slot)<<11|uint32(reg&0xFC))
	b.Write(0, a[:])
	p := make([]byte, 4)
	binary.LittleEndian.PutUint32(p, v)
	b.Write(4+uint64(reg&3), p[:n])
}

func TestNewRejects(t *testing.T) {
	r := newRig(t, newFakeDevice())
	good := newFakeDevice()
	if _, err := New(good, r.mem, r.router, r.ioev, testBAR+0x1000); err == nil {
		t.Error("misaligned BAR accepted")
	}
	if _, err := New(good, r.mem, r.router, r.ioev, 0); err == nil {
		t.Error("BAR at 0 accepted")
	}
	if _, err := New(nil, r.mem, r.router, r.ioev, testBAR); err == nil {
		t.Error("nil device accepted")
	}
	for _, id := range []uint16{0, 0x40, 0xFFFF} {
		d := newFakeDevice()
		d.id = id
		if _, err := New(d, r.mem, r.router, r.ioev, testBAR); err == nil {
			t.Errorf("device ID %#x accepted", id)
		}
	}
	for _, sizes := range [][]uint16{nil, {0}, {100}, {256, 3}, make([]uint16, MaxQueues+1)} {
		d := newFakeDevice()
		d.sizes = sizes
		if _, err := New(d, r.mem, r.router, r.ioev, testBAR); err == nil {
			t.Errorf("queue sizes %v accepted", sizes)
		}
	}
}

func TestIdentityBARAndCapabilities(t *testing.T) {
	r := newRig(t, newFakeDevice())
	bus := pcibus.NewHostBridge()
	slot, err := bus.Add(r.tr)
	if err != nil {
		t.Fatal(err)
	}
	if v := conf1Read(bus, slot, 0, 4); v != 0x1042_1AF4 {
		t.Fatalf("vendor/device = %#x", v)
	}
	if v := conf1Read(bus, slot, 8, 4); v != 0x0180_0001 {
		t.Fatalf("class/revision = %#x", v)
	}
	if v := conf1Read(bus, slot, 0x2C, 4); v != 0x0042_1AF4 {
		t.Fatalf("subsystem = %#x", v)
	}
	if v := conf1Read(bus, slot, pcibus.RegInterruptPin, 1); v != 0 {
		t.Fatalf("interrupt pin = %d, want none", v)
	}
	// BAR 0: 64-bit memory, 32 KiB, sized like Linux does.
	lo := conf1Read(bus, slot, 0x10, 4)
	conf1Write(bus, slot, 0x10, 4, 0xFFFFFFFF)
	szlo := conf1Read(bus, slot, 0x10, 4)
	conf1Write(bus, slot, 0x10, 4, lo)
	conf1Write(bus, slot, 0x14, 4, 0xFFFFFFFF)
	szhi := conf1Read(bus, slot, 0x14, 4)
	conf1Write(bus, slot, 0x14, 4, 0)
	if lo != testBAR|0x4 || ^(uint64(szhi)<<32|uint64(szlo&^0xF))+1 != BARSize {
		t.Fatalf("BAR0 %#x sizes to %#x:%#x", lo, szhi, szlo)
	}
	if a, s := r.tr.BAR(); a != testBAR || s != BARSize {
		t.Fatalf("BAR() = %#x, %#x", a, s)
	}
	if v := conf1Read(bus, slot, 0x06, 2); v&pcibus.StatusCapabilities == 0 {
		t.Fatal("capability list bit clear")
	}

	type vcap struct{ bar, offset, length, mult uint32 }
	found := map[uint32]vcap{}
	var msix uint32
	ptr := conf1Read(bus, slot, pcibus.RegCapabilities, 1)
	for n := 0; ptr != 0; n++ {
		if n > 16 || ptr < 0x40 || ptr&3 != 0 {
			t.Fatalf("bad capability pointer %#x", ptr)
		}
		hdr := conf1Read(bus, slot, int(ptr), 4)
		switch hdr & 0xFF {
		case pcibus.CapIDVendor:
			typ := hdr >> 24
			c := vcap{
				bar:    conf1Read(bus, slot, int(ptr)+4, 1),
				offset: conf1Read(bus, slot, int(ptr)+8, 4),
				length: conf1Read(bus, slot, int(ptr)+12, 4),
			}
			if typ == capNotifyCfg {
				c.mult = conf1Read(bus, slot, int(ptr)+16, 4)
			}
			if capLen := (hdr >> 16) & 0xFF; (typ == capNotifyCfg || typ == capPCICfg) != (capLen == 20) || capLen < 16 {
				t.Errorf("cfg_type %d cap_len %d", typ, capLen)
			}
			if _, dup := found[typ]; !dup {
				found[typ] = c
			}
		case pcibus.CapIDMSIX:
			msix = ptr
		}
		ptr = (hdr >> 8) & 0xFF
	}
	want := map[uint32]vcap{
		capCommonCfg: {0, commonOffset, commonLength, 0},
		capNotifyCfg: {0, notifyOffset, 2 * NotifyMultiplier, NotifyMultiplier},
		capISRCfg:    {0, isrOffset, isrLength, 0},
		capDeviceCfg: {0, deviceOffset, deviceLength, 0},
		capPCICfg:    {0, 0, 0, 0},
	}
	for typ, w := range want {
		if got, ok := found[typ]; !ok || got != w {
			t.Errorf("cfg_type %d: got %+v (found %v), want %+v", typ, got, ok, w)
		}
	}
	if msix == 0 {
		t.Fatal("no MSI-X capability")
	}
	ctl := conf1Read(bus, slot, int(msix), 4) >> 16
	if ctl&0x7FF != 2 { // 3 vectors: 2 queues + config
		t.Fatalf("MSI-X table size field %d", ctl&0x7FF)
	}
	if v := conf1Read(bus, slot, int(msix)+4, 4); v != msixTableOffset {
		t.Fatalf("MSI-X table offset/BIR %#x", v)
	}
	if v := conf1Read(bus, slot, int(msix)+8, 4); v != msixPBAOffset {
		t.Fatalf("MSI-X PBA offset/BIR %#x", v)
	}
	// The regions the capabilities name fit in the BAR.
	for typ, c := range found {
		if uint64(c.offset)+uint64(c.length) > BARSize {
			t.Errorf("cfg_type %d region overflows the BAR", typ)
		}
	}
	// Table size field read-only; enable and mask writable.
	conf1Write(bus, slot, int(msix)+2, 2, 0xFFFF)
	if v := conf1Read(bus, slot, int(msix)+2, 2); v != 0xC002 {
		t.Fatalf("message control after all-ones = %#x", v)
	}
}

// linuxInit runs the virtio_pci_modern probe sequence up to DRIVER_OK with
// queue 0 of size qsize set up on MSI-X vector 1 and returns the features
// the driver accepted.
func (r *rig) linuxInit(t *testing.T, qsize uint16) uint64 {
	t.Helper()
	r.setStatus(0)
	if r.status() != 0 {
		t.Fatal("status not 0 after reset")
	}
	r.setStatus(r.status() | virtio.StatusAcknowledge)
	r.setStatus(r.status() | virtio.StatusDriver)
	r.wr(commonOffset+regDeviceFeatureSel, 4, 0)
	f := r.rd(commonOffset+regDeviceFeature, 4)
	r.wr(commonOffset+regDeviceFeatureSel, 4, 1)
	f |= r.rd(commonOffset+regDeviceFeature, 4) << 32
	accept := f & (virtio.FVersion1 | virtio.FRingEventIdx | 1<<1)
	r.wr(commonOffset+regDriverFeatureSel, 4, 0)
	r.wr(commonOffset+regDriverFeature, 4, accept&0xFFFFFFFF)
	r.wr(commonOffset+regDriverFeatureSel, 4, 1)
	r.wr(commonOffset+regDriverFeature, 4, accept>>32)
	r.setStatus(r.status() | virtio.StatusFeaturesOK)
	if r.status()&virtio.StatusFeaturesOK == 0 {
		t.Fatal("device refused features")
	}
	// MSI-X: enable with all vectors masked, program, then config vector.
	r.cfgWr(r.tr.msixCap+2, 2, 0xC000)
	r.enableMSIX()
	r.wr(commonOffset+regMSIXConfig, 2, 0)
	if v := r.rd(commonOffset+regMSIXConfig, 2); v != 0 {
		t.Fatalf("msix_config read back %#x", v)
	}
	if n := r.rd(commonOffset+regNumQueues, 2); n != 2 {
		t.Fatalf("num_queues = %d", n)
	}
	r.wr(commonOffset+regQueueSelect, 2, 0)
	if max := r.rd(commonOffset+regQueueSize, 2); max != 256 {
		t.Fatalf("queue 0 size = %d", max)
	}
	r.wr(commonOffset+regQueueSize, 2, uint64(qsize))
	desc, avail, used := ringAddrs(0)
	for _, a := range []struct {
		reg uint64
		v   uint64
	}{{regQueueDesc, desc}, {regQueueDriver, avail}, {regQueueDevice, used}} {
		r.wr(commonOffset+a.reg, 4, a.v&0xFFFFFFFF)
		r.wr(commonOffset+a.reg+4, 4, a.v>>32)
	}
	if off := r.rd(commonOffset+regQueueNotifyOff, 2); off != 0 {
		t.Fatalf("queue_notify_off = %d", off)
	}
	r.wr(commonOffset+regQueueMSIXVector, 2, 1)
	if v := r.rd(commonOffset+regQueueMSIXVector, 2); v != 1 {
		t.Fatalf("queue_msix_vector read back %#x", v)
	}
	r.wr(commonOffset+regQueueEnable, 2, 1)
	r.setStatus(r.status() | virtio.StatusDriverOK)
	return accept
}

func TestLinuxInitSequence(t *testing.T) {
	r := newRig(t, newFakeDevice())
	accept := r.linuxInit(t, 128)
	if st := r.status(); st != virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK {
		t.Fatalf("status %#x (fault %v)", st, r.tr.Fault())
	}
	d := r.dev
	if d.activations != 1 {
		t.Fatalf("Activate called %d times", d.activations)
	}
	if d.gotFeatures != accept {
		t.Fatalf("Activate features %#x, want %#x", d.gotFeatures, accept)
	}
	q := d.gotQueues[0]
	desc, avail, used := ringAddrs(0)
	if q == nil || q.Size != 128 || q.DescAddr != desc || q.DriverAddr != avail || q.DeviceAddr != used || !q.EventIdx() {
		t.Fatalf("queue 0 = %+v", q)
	}
	if d.gotQueues[1] != nil {
		t.Fatal("queue 1 was not enabled but got a queue")
	}
	// Queue 0's notifications are an ioeventfd at its notify address.
	fd, ok := r.ioev.lookup(r.tr.NotifyAddr(0))
	if !ok || r.tr.NotifyAddr(0) != testBAR+notifyOffset {
		t.Fatal("no ioeventfd for queue 0")
	}
	if _, ok := r.ioev.lookup(r.tr.NotifyAddr(1)); ok {
		t.Fatal("ioeventfd for a disabled queue")
	}
	// KVM signalling the eventfd wakes the device's kick.
	if err := signalFD(fd); err != nil {
		t.Fatal(err)
	}
	waitKick(t, d.gotKicks[0])
	// A notify that exits to user space (here a 4-byte write) does too.
	r.wr(notifyOffset, 4, 0)
	waitKick(t, d.gotKicks[0])

	// Used-buffer interrupt: vector 1, routed to what the driver wrote.
	vq := r.router.vecs[1]
	if err := d.irq().Notify(0); err != nil {
		t.Fatal(err)
	}
	if vq.count() != 1 || vq.addr != 0xFEE0_0000 || vq.data != 0x41 {
		t.Fatalf("vector 1: %d triggers, route %#x/%#x", vq.count(), vq.addr, vq.data)
	}
	if err := d.irq().Notify(2); err == nil {
		t.Fatal("Notify of a nonexistent queue succeeded")
	}
	// Config change: vector 0, ISR bit 1 (cleared on read), generation++.
	gen := r.rd(commonOffset+regConfigGeneration, 1)
	if err := d.irq().ConfigChanged(); err != nil {
		t.Fatal(err)
	}
	if r.router.vecs[0].count() != 1 {
		t.Fatal("config vector did not fire")
	}
	if isr := r.rd(isrOffset, 1); isr != isrConfig {
		t.Fatalf("ISR = %#x", isr)
	}
	if isr := r.rd(isrOffset, 1); isr != 0 {
		t.Fatalf("ISR not cleared on read: %#x", isr)
	}
	if g := r.rd(commonOffset+regConfigGeneration, 1); g != gen+1 {
		t.Fatalf("generation %d -> %d", gen, g)
	}
	// Device configuration is forwarded.
	if v := r.rd(deviceOffset+4, 4); v != 0xA7A6A5A4 {
		t.Fatalf("device config read %#x", v)
	}
	r.wr(deviceOffset+1, 1, 0x55)
	if d.config[1] != 0x55 {
		t.Fatal("device config write not forwarded")
	}

	// Reset: device reset, ioeventfd gone, registers back to defaults,
	// stale interrupts dropped.
	old := d.irq()
	r.setStatus(0)
	if d.resets == 0 || r.status() != 0 || r.ioev.count() != 0 {
		t.Fatalf("after reset: resets %d status %#x ioeventfds %d", d.resets, r.status(), r.ioev.count())
	}
	if v := r.rd(commonOffset+regQueueSize, 2); v != 256 {
		t.Fatalf("queue size after reset %d", v)
	}
	if v := r.rd(commonOffset+regMSIXConfig, 2); v != NoVector {
		t.Fatalf("msix_config after reset %#x", v)
	}
	before := vq.count()
	if err := old.Notify(0); err != nil || vq.count() != before {
		t.Fatal("stale activation raised an interrupt")
	}
	// The driver can start again.
	r.linuxInit(t, 256)
	if d.activations != 2 || r.tr.Fault() != nil {
		t.Fatalf("re-init: %d activations, fault %v", d.activations, r.tr.Fault())
	}
	if err := r.tr.Err(); err != nil {
		t.Fatalf("host error: %v", err)
	}
}

func waitKick(t *testing.T, k virtio.Kick) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- k.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kick: %v", err)
		}
	case <-time.After(5 * time.Second):
		k.Close()
		t.Fatal("kick not signalled")
	}
}

func TestFeatureNegotiationRefusals(t *testing.T) {
	r := newRig(t, newFakeDevice())
	negotiate := func(f uint64) uint8 {
		r.setStatus(0)
		r.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
		r.wr(commonOffset+regDriverFeatureSel, 4, 0)
		r.wr(commonOffset+regDriverFeature, 4, f&0xFFFFFFFF)
		r.wr(commonOffset+regDriverFeatureSel, 4, 1)
		r.wr(commonOffset+regDriverFeature, 4, f>>32)
		r.setStatus(r.status() | virtio.StatusFeaturesOK)
		return r.status()
	}
	if st := negotiate(virtio.FVersion1 | 1<<1); st&virtio.StatusFeaturesOK == 0 {
		t.Fatal("valid subset refused")
	}
	if st := negotiate(virtio.FVersion1 | 1<<2); st&virtio.StatusFeaturesOK != 0 {
		t.Fatal("feature not offered was accepted")
	}
	if st := negotiate(virtio.FVersion1 | virtio.FRingPacked); st&virtio.StatusFeaturesOK != 0 {
		t.Fatal("packed ring accepted though the transport never offers it")
	}
	if st := negotiate(1 << 1); st&virtio.StatusFeaturesOK != 0 {
		t.Fatal("legacy (no VERSION_1) negotiation accepted")
	}
	// The offer hides what the transport cannot do and adds VERSION_1.
	r.wr(commonOffset+regDeviceFeatureSel, 4, 1)
	if hi := r.rd(commonOffset+regDeviceFeature, 4) << 32; hi&virtio.FRingPacked != 0 || hi&virtio.FVersion1 == 0 {
		t.Fatalf("offered high features %#x", hi)
	}
	r.wr(commonOffset+regDeviceFeatureSel, 4, 7)
	if v := r.rd(commonOffset+regDeviceFeature, 4); v != 0 {
		t.Fatalf("feature word 7 = %#x", v)
	}
	// FEATURES_OK without DRIVER is refused.
	r.setStatus(0)
	r.wr(commonOffset+regDriverFeatureSel, 4, 1)
	r.wr(commonOffset+regDriverFeature, 4, 1)
	r.setStatus(virtio.StatusAcknowledge | virtio.StatusFeaturesOK)
	if r.status()&virtio.StatusFeaturesOK != 0 {
		t.Fatal("FEATURES_OK without DRIVER")
	}
	// Features are frozen after FEATURES_OK; status bits cannot be cleared.
	negotiate(virtio.FVersion1)
	r.wr(commonOffset+regDriverFeatureSel, 4, 0)
	r.wr(commonOffset+regDriverFeature, 4, 1<<1)
	if v := r.rd(commonOffset+regDriverFeature, 4); v != 0 {
		t.Fatalf("driver features changed after FEATURES_OK: %#x", v)
	}
	r.setStatus(virtio.StatusAcknowledge)
	if r.status()&virtio.StatusFeaturesOK == 0 {
		t.Fatal("status bits cleared without reset")
	}
	if r.dev.activations != 0 || r.tr.Fault() != nil {
		t.Fatal("negotiation alone activated or failed the device")
	}
}

// expectNeedsReset checks the device was marked broken, the driver was told
// and the device was not left active.
func (r *rig) expectNeedsReset(t *testing.T, why string) {
	t.Helper()
	if r.status()&virtio.StatusDeviceNeedsReset == 0 || r.tr.Fault() == nil {
		t.Fatalf("%s: status %#x, fault %v", why, r.status(), r.tr.Fault())
	}
	if r.router.vecs[0].count() == 0 {
		t.Fatalf("%s: no configuration change interrupt", why)
	}
	// A reset recovers.
	r.setStatus(0)
	if r.status() != 0 || r.tr.Fault() != nil {
		t.Fatalf("%s: reset did not clear NEEDS_RESET", why)
	}
}

func TestHostileSequences(t *testing.T) {
	t.Run("queue size not a power of two", func(t *testing.T) {
		r := newRig(t, newFakeDevice())
		r.linuxInit(t, 100)
		if r.dev.activations != 0 {
			t.Fatal("device activated")
		}
		r.expectNeedsReset(t, "size 100")
	})
	t.Run("queue size above maximum", func(t *testing.T) {
		r := newRig(t, newFakeDevice())
		r.linuxInit(t, 512)
		r.expectNeedsReset(t, "size 512")
	})
	t.Run("queue size zero", func(t *testing.T) {
		r := newRig(t, newFakeDevice())
		r.linuxInit(t, 0)
		r.expectNeedsReset(t, "size 0")
	})
	t.Run("DRIVER_OK without FEATURES_OK", func(t *testing.T) {
		r := newRig(t, newFakeDevice())
		r.enableMSIX()
		r.wr(commonOffset+regMSIXConfig, 2, 0)
		r.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK)
		if r.dev.activations != 0 {
			t.Fatal("device activated")
		}
		r.expectNeedsReset(t, "no FEATURES_OK")
	})
	t.Run("rings outside RAM", func(t *testing.T) {
		r := newRig(t, newFakeDevice())
		r.setStatus(0)
		r.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
		r.wr(commonOffset+regDriverFeatureSel, 4, 1)
		r.wr(commonOffset+regDriverFeature, 4, 1)
		r.setStatus(r.status() | virtio.StatusFeaturesOK)
		r.enableMSIX()
		r.wr(commonOffset+regMSIXConfig, 2, 0)
		r.wr(commonOffset+regQueueSelect, 2, 1)
		r.wr(commonOffset+regQueueDesc, 8, 0xFFFF_FFFF_FFFF_FFF0) // 64-bit access
		r.wr(commonOffset+regQueueDriver, 8, 0x2000)
		r.wr(commonOffset+regQueueDevice, 8, 0x3000)
		r.wr(commonOffset+regQueueEnable, 2, 1)
		r.setStatus(r.status() | virtio.StatusDriverOK)
		if r.dev.activations != 0 {
			t.Fatal("device activated")
		}
		r.expectNeedsReset(t, "desc outside RAM")
	})
	t.Run("device Activate fails", func(t *testing.T) {
		d := newFakeDevice()
		d.activateErr = errors.New("backend gone")
		r := newRig(t, d)
		r.linuxInit(t, 64)
		if d.activations != 1 || !errors.Is(r.tr.Fault(), d.activateErr) {
			t.Fatalf("activations %d fault %v", d.activations, r.tr.Fault())
		}
		r.expectNeedsReset(t, "Activate error")
		// The kick was closed by the device; the transport still
		// unregistered its own eventfd on reset.
		if r.ioev.count() != 0 {
			t.Fatal("ioeventfd left registered")
		}
	})
	t.Run("device reports failure later", func(t *testing.T) {
		r := newRig(t, newFakeDevice())
		r.linuxInit(t, 64)
		irq := r.dev.irq()
		virtio.ReportFailure(irq, errors.New("ring broken"))
		r.expectNeedsReset(t, "Failed")
		// A failure report from the old activation after the reset is ignored.
		irq.(virtio.FailureReporter).Failed(errors.New("late"))
		if r.tr.Fault() != nil || r.status() != 0 {
			t.Fatal("stale failure applied")
		}
	})
}

func TestQueueRegisterGuards(t *testing.T) {
	r := newRig(t, newFakeDevice())
	// Out-of-range queue_select: reads 0, writes ignored.
	r.wr(commonOffset+regQueueSelect, 2, 5)
	for _, reg := range []uint64{regQueueSize, regQueueMSIXVector, regQueueEnable, regQueueNotifyOff, regQueueDesc} {
		r.wr(commonOffset+reg, 2, 1)
		if v := r.rd(commonOffset+reg, 2); v != 0 {
			t.Errorf("register %#x of queue 5 reads %#x", reg, v)
		}
	}
	if r.ioev.count() != 0 {
		t.Fatal("out-of-range queue enabled")
	}
	// A vector the table does not have reads back as NO_VECTOR.
	r.wr(commonOffset+regQueueSelect, 2, 1)
	r.wr(commonOffset+regQueueMSIXVector, 2, 3)
	if v := r.rd(commonOffset+regQueueMSIXVector, 2); v != NoVector {
		t.Fatalf("bad queue vector read back %#x", v)
	}
	r.wr(commonOffset+regMSIXConfig, 2, 0x1234)
	if v := r.rd(commonOffset+regMSIXConfig, 2); v != NoVector {
		t.Fatalf("bad config vector read back %#x", v)
	}
	// Misaligned or straddling accesses to the common config are ignored.
	r.wr(commonOffset+regQueueSize-1, 2, 0xFFFF)
	if v := r.rd(commonOffset+regQueueSize, 2); v != 64 {
		t.Fatalf("straddling write changed queue size: %d", v)
	}
	// After DRIVER_OK queue registers are frozen.
	r.linuxInit(t, 64)
	r.wr(commonOffset+regQueueSelect, 2, 0)
	r.wr(commonOffset+regQueueSize, 2, 32)
	r.wr(commonOffset+regQueueDesc, 4, 0x5000)
	r.wr(commonOffset+regQueueMSIXVector, 2, 2)
	if r.rd(commonOffset+regQueueSize, 2) != 64 || r.rd(commonOffset+regQueueDesc, 8) == 0x5000 ||
		r.rd(commonOffset+regQueueMSIXVector, 2) != 1 {
		t.Fatal("queue registers changed after DRIVER_OK")
	}
	r.wr(commonOffset+regQueueSelect, 2, 1)
	r.wr(commonOffset+regQueueEnable, 2, 1)
	if _, ok := r.ioev.lookup(r.tr.NotifyAddr(1)); ok {
		t.Fatal("queue enabled after DRIVER_OK")
	}
	// Accesses outside any region or crossing a region end do nothing.
	r.wr(0x7FFC, 8, ^uint64(0))
	r.wr(0x6000, 4, 1)
	if v := r.rd(0x0FFE, 4); v != 0 {
		t.Fatalf("cross-region read %#x", v)
	}
	if v := r.rd(BARSize, 4); v != 0 {
		t.Fatalf("read past BAR %#x", v)
	}
}

func TestMSIXMaskingAndPending(t *testing.T) {
	r := newRig(t, newFakeDevice())
	r.linuxInit(t, 64)
	irq := r.dev.irq()
	v1 := r.router.vecs[1]
	entry1 := uint64(msixTableOffset + msixEntrySize)

	// Entry masked: the message is pending, not sent.
	r.wr(entry1+12, 4, 1)
	if r.rd(entry1+12, 4) != 1 {
		t.Fatal("mask bit not stored")
	}
	irq.Notify(0)
	if v1.count() != 0 || r.rd(msixPBAOffset, 8) != 1<<1 {
		t.Fatalf("masked: %d triggers, PBA %#x", v1.count(), r.rd(msixPBAOffset, 8))
	}
	// Re-program while masked, then unmask: the pending message goes out on
	// the new route and the PBA bit clears.
	r.wr(entry1+8, 4, 0x77)
	r.wr(entry1+12, 4, 0)
	if v1.count() != 1 || v1.data != 0x77 || r.rd(msixPBAOffset, 8) != 0 {
		t.Fatalf("unmask: %d triggers, data %#x, PBA %#x", v1.count(), v1.data, r.rd(msixPBAOffset, 8))
	}
	// Function mask holds every vector.
	r.cfgWr(r.tr.msixCap+2, 2, 0xC000)
	irq.Notify(0)
	irq.ConfigChanged()
	if v1.count() != 1 || r.rd(msixPBAOffset, 8) != 0b11 {
		t.Fatalf("function mask: %d triggers, PBA %#x", v1.count(), r.rd(msixPBAOffset, 8))
	}
	r.cfgWr(r.tr.msixCap+2, 2, 0x8000)
	if v1.count() != 2 || r.router.vecs[0].count() != 1 || r.rd(msixPBAOffset, 8) != 0 {
		t.Fatal("function unmask did not deliver pending messages")
	}
	// PBA is read-only.
	r.wr(msixPBAOffset, 8, ^uint64(0))
	if r.rd(msixPBAOffset, 8) != 0 {
		t.Fatal("PBA writable")
	}
	// NO_VECTOR: nothing is sent or made pending.
	r.linuxInit(t, 64)
	irq = r.dev.irq()
	r.tr.mu.Lock()
	r.tr.irq.setQueueVector(0, NoVector)
	r.tr.mu.Unlock()
	before := v1.count()
	irq.Notify(0)
	if v1.count() != before || r.rd(msixPBAOffset, 8) != 0 {
		t.Fatal("NO_VECTOR queue interrupted")
	}
	// MSI-X disabled: no interrupt (no INTx), ISR queue bit set.
	r.cfgWr(r.tr.msixCap+2, 2, 0)
	r.rd(isrOffset, 1)
	r.tr.mu.Lock()
	r.tr.irq.setQueueVector(0, 1)
	r.tr.mu.Unlock()
	irq.Notify(0)
	if v1.count() != before || r.rd(isrOffset, 1) != isrQueue {
		t.Fatal("MSI-X disabled: interrupt sent or ISR not set")
	}
	// Route failures are kept for the machine and do not panic.
	v1.updateErr = errors.New("no route")
	r.cfgWr(r.tr.msixCap+2, 2, 0x8000)
	r.wr(entry1+8, 4, 0x99)
	if err := irq.Notify(0); err == nil || r.tr.Err() == nil {
		t.Fatal("route failure not reported")
	}
	// Table accesses crossing an entry or beyond the table are ignored.
	r.wr(entry1+12, 8, 0)
	if v := r.rd(msixTableOffset+3*msixEntrySize, 4); v != 0 {
		t.Fatalf("read beyond table %#x", v)
	}
}

func TestPCICfgCapability(t *testing.T) {
	r := newRig(t, newFakeDevice())
	c := r.tr.pciCfgCap
	if c == 0 {
		t.Fatal("no PCI_CFG capability")
	}
	// Read num_queues through configuration space.
	r.cfgWr(c+4, 1, 0)
	r.cfgWr(c+8, 4, commonOffset+regNumQueues)
	r.cfgWr(c+12, 4, 2)
	if v := r.cfgRd(c+16, 2); v != 2 {
		t.Fatalf("num_queues via PCI_CFG = %d", v)
	}
	// Write queue_select through it.
	r.cfgWr(c+8, 4, commonOffset+regQueueSelect)
	r.cfgWr(c+16, 4, 1)
	if v := r.rd(commonOffset+regQueueSelect, 2); v != 1 {
		t.Fatalf("queue_select via PCI_CFG = %d", v)
	}
	// Invalid windows are ignored: misaligned, bad length, other BAR, past the end.
	for _, w := range []struct{ bar, off, n uint64 }{
		{0, 1, 2}, {0, 0, 3}, {1, 0, 4}, {0, BARSize - 2, 4}, {0, 0xFFFF_FFFC, 4},
	} {
		r.cfgWr(c+4, 1, w.bar)
		r.cfgWr(c+8, 4, w.off)
		r.cfgWr(c+12, 4, w.n)
		r.cfgWr(c+16, 4, 0xFFFFFFFF)
		r.cfgRd(c+16, 4)
	}
	if r.status() != 0 {
		t.Fatal("invalid PCI_CFG window reached a register")
	}
	// The capability header stays read-only.
	r.cfgWr(c, 4, 0)
	if v := r.cfgRd(c, 4); v&0xFF != pcibus.CapIDVendor || v>>24 != capPCICfg {
		t.Fatalf("capability header changed: %#x", v)
	}
}

func TestIOEventFallbackWhenRegistrationFails(t *testing.T) {
	r := newRig(t, newFakeDevice())
	r.ioev.fail = true
	r.linuxInit(t, 64)
	if r.dev.activations != 1 || r.tr.Fault() != nil {
		t.Fatalf("activation failed: %v", r.tr.Fault())
	}
	if r.tr.Err() == nil {
		t.Fatal("registration failure not reported")
	}
	r.wr(notifyOffset, 2, 0) // exits to user space
	waitKick(t, r.dev.gotKicks[0])
}

func TestNoFDLeaks(t *testing.T) {
	r := newRig(t, newFakeDevice())
	before := openFDs(t)
	for i := 0; i < 20; i++ {
		r.linuxInit(t, 64)
		r.wr(commonOffset+regQueueSelect, 2, 1) // and an enabled-but-never-activated path
		r.setStatus(0)
		r.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
		r.wr(commonOffset+regQueueSelect, 2, 1)
		r.wr(commonOffset+regQueueEnable, 2, 1)
		r.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK)
		r.setStatus(0)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("fds: %d before, %d after", before, after)
	}
}
