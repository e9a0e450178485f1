// Package virtio owns the contract between virtio device logic (blk, net,
// ...) and the transport that exposes a device to the guest (PCI or MMIO),
// plus the notification plumbing both sides share: Kick (queue notification
// from the guest to a device worker) and Interrupt (used-buffer and
// configuration-change notification from a device to the guest).
//
// Device logic knows nothing about registers or feature negotiation; the
// transport knows nothing about blocks or packets. The transport negotiates
// features, validates the driver's queue setup with queue.Queue.Activate and,
// after DRIVER_OK, calls Device.Activate. Device workers run on their own
// goroutines, never on vCPU threads.
//
// Guest misbehaviour policy (virtio 1.2, 2.1.2): a driver that corrupts a
// ring breaks only its own device. The device stops its workers and reports
// the fault through FailureReporter (if the Interrupt implements it); the
// transport then sets DEVICE_NEEDS_RESET and raises a configuration change
// interrupt. The VMM keeps running.
package virtio

import (
	"errors"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// Device IDs (virtio 1.2, 5).
const (
	IDNet     = 1
	IDBlock   = 2
	IDEntropy = 4
	IDBalloon = 5
	IDSocket  = 19
)

// Device-independent feature bits (virtio 1.2, 6).
const (
	FRingIndirectDesc uint64 = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FRingEventIdx     uint64 = 1 << 29 // VIRTIO_F_EVENT_IDX
	FVersion1         uint64 = 1 << 32 // VIRTIO_F_VERSION_1
	FAccessPlatform   uint64 = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM (never offered: no IOMMU)
	FRingPacked       uint64 = 1 << 34 // VIRTIO_F_RING_PACKED (never offered: split rings only)
	FInOrder          uint64 = 1 << 35 // VIRTIO_F_IN_ORDER
	FOrderPlatform    uint64 = 1 << 36 // VIRTIO_F_ORDER_PLATFORM
	FSRIOV            uint64 = 1 << 37 // VIRTIO_F_SR_IOV
	FNotificationData uint64 = 1 << 38 // VIRTIO_F_NOTIFICATION_DATA
)

// Device status bits (virtio 1.2, 2.1), for transports.
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// ErrClosed is returned by Kick.Wait once the Kick has been closed.
var ErrClosed = errors.New("virtio: kick closed")

// Interrupt signals the guest. It is implemented by the transport (for PCI:
// an MSI-X vector per queue, delivered through a KVM irqfd). Its methods are
// called from device worker goroutines and must be safe for concurrent use.
// They must not wait for anything the transport holds while it calls
// Device.Reset, because Reset waits for those workers to exit.
type Interrupt interface {
	// Notify tells the guest that queue has new used buffers.
	Notify(queue int) error
	// ConfigChanged raises a configuration change notification.
	ConfigChanged() error
}

// FailureReporter is optionally implemented by the Interrupt a transport
// passes to Device.Activate. A device calls Failed at most once per
// activation when the driver broke a queue (the error wraps queue.ErrGuest)
// or the device's host side failed. By then the device's workers have
// stopped, and Failed runs on a goroutine that holds no device lock and
// that Reset does not wait for, so the transport may take its own locks (or
// call Reset) from it. The transport should set DEVICE_NEEDS_RESET and
// call ConfigChanged (virtio 1.2, 2.1.2).
//
// Failed may race with a Reset the transport has already begun: the
// transport should ignore it unless that activation is still live.
type FailureReporter interface {
	Failed(err error)
}

// ReportFailure calls irq.Failed if irq implements FailureReporter and
// reports whether it did.
func ReportFailure(irq Interrupt, err error) bool {
	if r, ok := irq.(FailureReporter); ok {
		r.Failed(err)
		return true
	}
	return false
}

// Device is the transport-independent logic of one virtio device.
//
// The transport serializes calls to ReadConfig, WriteConfig, Activate and
// Reset (they come from the guest's register accesses); they must not block
// on guest activity.
type Device interface {
	// DeviceID is the virtio device ID (IDNet, IDBlock, ...).
	DeviceID() uint16
	// Features returns the offered feature bits: device-specific bits plus
	// FVersion1 and the ring features the device supports.
	Features() uint64
	// QueueMaxSizes returns the maximum size of each queue, one per queue.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device-specific configuration space at
	// offset. Bytes outside the configuration space read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig writes the device-specific configuration space. Writes to
	// read-only or nonexistent fields are ignored.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device after DRIVER_OK with the negotiated
	// features and the queues the driver set up, each already validated
	// by queue.Queue.Activate (len(queues) == len(QueueMaxSizes()); an entry
	// is nil if the driver did not enable that queue). kicks[i] delivers the
	// notifications for queue i.
	//
	// Activate takes ownership of the kicks whatever it returns: the device
	// closes them on Reset, on failure or when Activate fails. A transport
	// that registered a kick's fd with KVM (ioeventfd) must unregister it
	// before calling Reset.
	Activate(mem *memory.Guest, features uint64, queues []*queue.Queue, kicks []Kick, irq Interrupt) error
	// Reset stops the workers, waits for them to exit and forgets the
	// queues; the device may be activated again afterwards. Reset of an
	// inactive device is a no-op.
	Reset()
}
