package pci

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
)

// Common configuration registers (virtio 1.2, 4.1.4.3, struct
// virtio_pci_common_cfg).
const (
	regDeviceFeatureSel = 0x00 // le32
	regDeviceFeature    = 0x04 // le32, read-only
	regDriverFeatureSel = 0x08 // le32
	regDriverFeature    = 0x0C // le32
	regMSIXConfig       = 0x10 // le16
	regNumQueues        = 0x12 // le16, read-only
	regDeviceStatus     = 0x14 // u8
	regConfigGeneration = 0x15 // u8, read-only
	regQueueSelect      = 0x16 // le16
	regQueueSize        = 0x18 // le16
	regQueueMSIXVector  = 0x1A // le16
	regQueueEnable      = 0x1C // le16
	regQueueNotifyOff   = 0x1E // le16, read-only
	regQueueDesc        = 0x20 // le64
	regQueueDriver      = 0x28 // le64
	regQueueDevice      = 0x30 // le64
)

// commonFields lists each register's offset and width. A write must lie
// inside one register; narrower writes (such as the two 32-bit halves of a
// 64-bit address) update part of it.
var commonFields = [...]struct{ off, size uint64 }{
	{regDeviceFeatureSel, 4}, {regDeviceFeature, 4}, {regDriverFeatureSel, 4}, {regDriverFeature, 4},
	{regMSIXConfig, 2}, {regNumQueues, 2}, {regDeviceStatus, 1}, {regConfigGeneration, 1},
	{regQueueSelect, 2}, {regQueueSize, 2}, {regQueueMSIXVector, 2}, {regQueueEnable, 2},
	{regQueueNotifyOff, 2}, {regQueueDesc, 8}, {regQueueDriver, 8}, {regQueueDevice, 8},
}

// commonImage renders the common configuration as the driver reads it.
func (t *Transport) commonImage() [commonLength]byte {
	var img [commonLength]byte
	le := binary.LittleEndian
	le.PutUint32(img[regDeviceFeatureSel:], t.devFeatSel)
	if t.devFeatSel < 2 {
		le.PutUint32(img[regDeviceFeature:], uint32(t.offered>>(32*t.devFeatSel)))
	}
	le.PutUint32(img[regDriverFeatureSel:], t.drvFeatSel)
	if t.drvFeatSel < 2 {
		le.PutUint32(img[regDriverFeature:], uint32(t.drvFeatures>>(32*t.drvFeatSel)))
	}
	le.PutUint16(img[regNumQueues:], uint16(len(t.queues)))
	le.PutUint16(img[regQueueSelect:], t.queueSel)

	qsel := -1
	if int(t.queueSel) < len(t.queues) {
		qsel = int(t.queueSel)
	}
	snap := t.irq.snapshot(qsel)
	le.PutUint16(img[regMSIXConfig:], snap.configVector)
	img[regDeviceStatus] = t.status
	if snap.needsReset {
		img[regDeviceStatus] |= virtio.StatusDeviceNeedsReset
	}
	img[regConfigGeneration] = snap.generation

	if qsel >= 0 {
		q := &t.queues[qsel]
		le.PutUint16(img[regQueueSize:], q.size)
		le.PutUint16(img[regQueueMSIXVector:], snap.queueVector)
		if q.enabled {
			le.PutUint16(img[regQueueEnable:], 1)
		}
		le.PutUint16(img[regQueueNotifyOff:], uint16(qsel))
		le.PutUint64(img[regQueueDesc:], q.desc)
		le.PutUint64(img[regQueueDriver:], q.driver)
		le.PutUint64(img[regQueueDevice:], q.device)
	}
	return img
}

func (t *Transport) commonRead(rel uint64, data []byte) {
	if rel >= commonLength {
		return
	}
	img := t.commonImage()
	copy(data, img[rel:])
}

func (t *Transport) commonWrite(rel uint64, data []byte) {
	n := uint64(len(data))
	for _, f := range commonFields {
		if rel >= f.off && rel+n <= f.off+f.size {
			img := t.commonImage()
			var buf [8]byte
			copy(buf[:], img[f.off:f.off+f.size])
			copy(buf[rel-f.off:], data)
			t.commonSet(f.off, binary.LittleEndian.Uint64(buf[:]))
			return
		}
	}
}

// commonSet applies a write of v to the register at off.
func (t *Transport) commonSet(off uint64, v uint64) {
	switch off {
	case regDeviceFeatureSel:
		t.devFeatSel = uint32(v)
	case regDriverFeatureSel:
		t.drvFeatSel = uint32(v)
	case regDriverFeature:
		// Features are fixed once FEATURES_OK was set (virtio 1.2, 3.1.1).
		if t.status&(virtio.StatusFeaturesOK|virtio.StatusDriverOK) != 0 || t.drvFeatSel >= 2 {
			return
		}
		shift := 32 * t.drvFeatSel
		t.drvFeatures = t.drvFeatures&^(0xFFFFFFFF<<shift) | (v&0xFFFFFFFF)<<shift
	case regMSIXConfig:
		t.irq.setConfigVector(uint16(v))
	case regDeviceStatus:
		t.writeStatus(uint8(v))
	case regQueueSelect:
		t.queueSel = uint16(v)
	case regQueueSize:
		if q := t.configurable(); q != nil {
			q.size = uint16(v)
		}
	case regQueueMSIXVector:
		if int(t.queueSel) < len(t.queues) && t.status&virtio.StatusDriverOK == 0 {
			t.irq.setQueueVector(int(t.queueSel), uint16(v))
		}
	case regQueueEnable:
		// Writing 0 is forbidden to the driver (virtio 1.2, 4.1.4.3.2);
		// disabling a queue takes a device reset.
		if q := t.configurable(); q != nil && v == 1 {
			t.enableQueue(int(t.queueSel))
		}
	case regQueueDesc:
		if q := t.configurable(); q != nil {
			q.desc = v
		}
	case regQueueDriver:
		if q := t.configurable(); q != nil {
			q.driver = v
		}
	case regQueueDevice:
		if q := t.configurable(); q != nil {
			q.device = v
		}
	}
}

// configurable returns the selected queue if the driver may still change
// its setup: it exists, is not enabled yet and DRIVER_OK is not set.
// Otherwise writes to queue registers are ignored.
func (t *Transport) configurable() *queueRegs {
	if int(t.queueSel) >= len(t.queues) || t.status&virtio.StatusDriverOK != 0 {
		return nil
	}
	q := &t.queues[t.queueSel]
	if q.enabled {
		return nil
	}
	return q
}

// enableQueue marks queue i enabled and gives it an eventfd that KVM
// signals on the driver's notify writes. If that cannot be set up the
// queue is still marked enabled and DRIVER_OK will fail.
func (t *Transport) enableQueue(i int) {
	q := &t.queues[i]
	q.enabled = true
	k, err := virtio.NewEventFDKick()
	if err != nil {
		q.setupErr = err
		return
	}
	fd, err := dupFD(k.FD())
	if err != nil {
		q.setupErr = errors.Join(err, k.Close())
		return
	}
	q.kick, q.notifyFD = k, fd
	if err := t.ioev.RegisterIOEvent(t.NotifyAddr(i), NotifyIOEventLength, fd); err != nil {
		// Notifications still work, through notifyWrite.
		t.noteHostErr(fmt.Errorf("virtio-pci: register ioeventfd for queue %d: %w", i, err))
		return
	}
	q.registered = true
}

// writeStatus implements the device status state machine (virtio 1.2, 2.1
// and 3.1.1).
func (t *Transport) writeStatus(v uint8) {
	if v == 0 {
		t.resetLocked() // failures are kept for Err; the guest sees a reset device
		return
	}
	v &^= virtio.StatusDeviceNeedsReset // the device's bit, read back as-is
	old := t.status
	if old&^v != 0 {
		return // only a reset clears status bits
	}
	add := v &^ old
	st := old | add&^(virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	if add&virtio.StatusFeaturesOK != 0 && t.featuresAcceptable(st) {
		st |= virtio.StatusFeaturesOK
	}
	if add&virtio.StatusDriverOK == 0 {
		t.status = st
		return
	}
	t.status = st | virtio.StatusDriverOK
	if st&virtio.StatusFeaturesOK == 0 {
		t.irq.failNow(errors.New("virtio-pci: DRIVER_OK without FEATURES_OK"))
		return
	}
	if err := t.activateLocked(); err != nil {
		t.irq.failNow(err)
	}
}

// featuresAcceptable reports whether FEATURES_OK may be set: the driver
// announced itself, has not set DRIVER_OK, accepted only offered features
// and accepted VIRTIO_F_VERSION_1 (this is a modern-only transport).
func (t *Transport) featuresAcceptable(st uint8) bool {
	return st&virtio.StatusDriver != 0 && st&virtio.StatusDriverOK == 0 &&
		t.drvFeatures&^t.offered == 0 && t.drvFeatures&virtio.FVersion1 != 0
}

// activateLocked validates the enabled queues and starts the device.
func (t *Transport) activateLocked() error {
	eventIdx := t.drvFeatures&virtio.FRingEventIdx != 0
	queues := make([]*queue.Queue, len(t.queues))
	for i := range t.queues {
		qr := &t.queues[i]
		if !qr.enabled {
			continue
		}
		if qr.setupErr != nil {
			return fmt.Errorf("virtio-pci: queue %d notification: %w", i, qr.setupErr)
		}
		q := &queue.Queue{Size: qr.size, DescAddr: qr.desc, DriverAddr: qr.driver, DeviceAddr: qr.device, Ready: true}
		if err := q.Activate(t.mem, t.maxSizes[i], eventIdx); err != nil {
			return fmt.Errorf("virtio-pci: queue %d: %w", i, err)
		}
		queues[i] = q
	}
	kicks := make([]virtio.Kick, len(t.queues))
	for i := range t.queues {
		if queues[i] == nil {
			kicks[i] = virtio.NewChanKick() // never signalled
			continue
		}
		kicks[i] = t.queues[i].kick
		t.queues[i].handed = true
	}
	irq := t.irq.activation()
	if err := t.dev.Activate(t.mem, t.drvFeatures, queues, kicks, irq); err != nil {
		return fmt.Errorf("virtio-pci: activate device %d: %w", t.dev.DeviceID(), err)
	}
	return nil
}

// resetLocked returns the device and transport to their reset state
// (virtio 1.2, 2.4): interrupts from the old activation are dropped, the
// ioeventfds unregistered before the device resets, then eventfds closed.
// MSI-X table and capability state belong to PCI and survive. It returns
// the host-side failures met on the way (also kept for Err).
func (t *Transport) resetLocked() error {
	var errs []error
	note := func(err error) {
		errs = append(errs, err)
		t.noteHostErr(err)
	}
	t.irq.reset()
	for i := range t.queues {
		q := &t.queues[i]
		if q.registered {
			if err := t.ioev.UnregisterIOEvent(t.NotifyAddr(i), NotifyIOEventLength, q.notifyFD); err != nil {
				note(fmt.Errorf("virtio-pci: unregister ioeventfd for queue %d: %w", i, err))
			}
			q.registered = false
		}
	}
	t.dev.Reset()
	for i := range t.queues {
		q := &t.queues[i]
		if q.kick != nil && !q.handed {
			if err := q.kick.Close(); err != nil {
				note(err)
			}
		}
		if q.notifyFD >= 0 {
			if err := closeFD(q.notifyFD); err != nil {
				note(fmt.Errorf("virtio-pci: close queue %d eventfd: %w", i, err))
			}
		}
	}
	t.resetQueueRegs()
	t.devFeatSel, t.drvFeatSel, t.drvFeatures = 0, 0, 0
	t.status, t.queueSel = 0, 0
	return errors.Join(errs...)
}

func (t *Transport) resetQueueRegs() {
	t.queues = make([]queueRegs, len(t.maxSizes))
	for i := range t.queues {
		t.queues[i] = queueRegs{size: t.maxSizes[i], notifyFD: -1}
	}
}
