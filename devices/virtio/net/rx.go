package net

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/network"
)

// errStopped ends the rx worker when its activation stops mid-frame.
var errStopped = errors.New("virtio-net: activation stopped")

// rxUse is one receive chain taken for the current frame.
type rxUse struct {
	c   *queue.Chain
	len uint32 // bytes of the frame written into it
}

// serveRx reads frames from the backend and delivers them to the guest
// until the activation stops. It drains every queued frame (TryReadFrame)
// and checks whether the guest wants an interrupt when the backend has
// nothing more (and every notifyEvery frames), then blocks in ReadFrame.
// Its error means the ring is broken or the backend failed.
func (d *Device) serveRx(r *activation) error {
	q := r.queues[RxQueue]
	// Kicks matter only when the device runs out of receive buffers.
	if err := q.DisableNotification(); err != nil {
		return err
	}
	buf := d.staging
	var uses []rxUse
	delivered := 0
	for {
		if r.stopped() {
			return nil
		}
		n, err := d.backend.TryReadFrame(buf)
		if err == nil && n == 0 {
			// Idle: let the guest see what it has received, then sleep.
			if err := notify(r, RxQueue); err != nil {
				return err
			}
			n, err = d.backend.ReadFrame(buf)
		}
		switch {
		case errors.Is(err, network.ErrWoken):
			continue // Reset (or a stale wake-up): look at r again
		case errors.Is(err, network.ErrClosed):
			r.stop() // the VM is going away
			return nil
		case err != nil:
			d.readErr.Store(&err)
			return fmt.Errorf("backend read: %w", err)
		}
		uses, err = d.receive(r, q, buf[:n], uses, &delivered)
		switch {
		case errors.Is(err, errStopped):
			return nil
		case err != nil:
			return err
		}
	}
}

// receive checks the length of one frame read from the backend (header and
// data) and delivers it; after every notifyEvery delivered frames it lets
// the guest know. errStopped means the activation stopped meanwhile; any
// other error is a broken ring, which must fail the device (never end
// quietly while live: the guest would lose its network without
// DEVICE_NEEDS_RESET).
func (d *Device) receive(r *activation, q *queue.Queue, frame []byte, uses []rxUse, delivered *int) ([]rxUse, error) {
	if len(frame) < network.HeaderLen+MinFrameLen || len(frame) > network.HeaderLen+MaxFrameLen {
		d.stats.rxDropped.Add(1)
		return uses, nil
	}
	uses, err := d.deliver(r, q, frame, uses[:0])
	switch {
	case errors.Is(err, errStopped), err != nil && r.stopped():
		return uses, errStopped
	case err != nil:
		return uses, err
	}
	*delivered++
	if *delivered%notifyEvery == 0 {
		return uses, notify(r, RxQueue)
	}
	return uses, nil
}

// deliver writes one frame (header and data, in the staging buffer) into
// the guest's receive buffers: one chain, or with VIRTIO_NET_F_MRG_RXBUF as
// many as it takes (virtio 1.2, 5.1.6.3.2), with num_buffers set in the
// header. A frame with offloads the backend was not allowed (rxOffloads) or
// that the buffers cannot hold is dropped. The chains of one frame are
// published together.
func (d *Device) deliver(r *activation, q *queue.Queue, frame []byte, uses []rxUse) ([]rxUse, error) {
	h, err := network.DecodeHeader(frame)
	if err == nil {
		h, err = checkRxHeader(h, len(frame)-network.HeaderLen, r.rxOffers)
	}
	if err != nil {
		d.stats.rxDropped.Add(1)
		return uses, nil
	}
	mergeable := r.features&network.FMrgRxbuf != 0
	maxUses := 1
	if mergeable {
		maxUses = int(q.Size) // all the guest can post; never wait for more
	}
	// Take chains until the frame fits.
	var room uint64
	for room < uint64(len(frame)) {
		if len(uses) == maxUses {
			return uses, d.abandon(q, uses)
		}
		c, err := d.popRx(r, q)
		var ce *queue.ChainError
		switch {
		case errors.As(err, &ce):
			d.stats.badChains.Add(1)
			if err := q.Push(ce.Head, 0); err != nil {
				return uses, err
			}
			if len(uses) > 0 {
				return uses, d.abandon(q, uses)
			}
			continue
		case err != nil:
			return uses, err
		}
		w := c.WritableLen()
		least := uint64(1)
		if len(uses) == 0 {
			least = network.HeaderLen
		}
		if w < least {
			d.stats.badChains.Add(1)
			if err := q.Push(c.Head, 0); err != nil {
				return uses, err
			}
			if len(uses) > 0 {
				return uses, d.abandon(q, uses)
			}
			continue
		}
		uses = append(uses, rxUse{c: c})
		room += w
	}
	h.NumBuffers = uint16(len(uses)) // <= queue size <= 32768
	if err := h.Encode(frame[:network.HeaderLen]); err != nil {
		return uses, err
	}
	// Copy, then publish every chain of the frame back to back.
	data := frame
	for i := range uses {
		u := &uses[i]
		take := min(u.c.WritableLen(), uint64(len(data)))
		if err := u.c.WriteAt(r.mem, data[:take], 0); err != nil {
			d.stats.badChains.Add(1)
			return uses, d.abandon(q, uses)
		}
		u.len = uint32(take) // take <= WritableLen < 2^32
		data = data[take:]
	}
	// All buffers of the frame become visible with one used.idx store
	// (virtio 1.2, 5.1.6.4): the driver never sees a partial frame.
	for _, u := range uses {
		if err := q.AddUsed(u.c.Head, u.len); err != nil {
			return uses, err
		}
	}
	if err := q.PublishUsed(); err != nil {
		return uses, err
	}
	d.stats.rxFrames.Add(1)
	d.stats.rxBytes.Add(uint64(len(frame) - network.HeaderLen))
	return uses, nil
}

// abandon drops the frame and returns the chains taken for it unused.
func (d *Device) abandon(q *queue.Queue, uses []rxUse) error {
	d.stats.rxDropped.Add(1)
	for _, u := range uses {
		if err := q.Push(u.c.Head, 0); err != nil {
			return err
		}
	}
	return nil
}

// popRx returns the next receive chain, waiting for the guest to post one.
// A *queue.ChainError is a consumed malformed chain; errStopped means the
// activation stopped; any other error is a broken ring.
func (d *Device) popRx(r *activation, q *queue.Queue) (*queue.Chain, error) {
	for {
		c, err := q.Pop()
		if err != nil || c != nil {
			return c, err
		}
		if r.stopped() {
			return nil, errStopped
		}
		more, err := q.EnableNotification()
		if err != nil {
			return nil, err
		}
		if !more {
			// Out of buffers: show the guest what it has, so it refills,
			// and sleep until it kicks.
			if err := notify(r, RxQueue); err != nil {
				return nil, err
			}
			wait := r.waitRx
			if wait == nil {
				wait = r.kicks[RxQueue].Wait
			}
			if err := wait(); err != nil {
				if errors.Is(err, virtio.ErrClosed) || errors.Is(err, errLoopWoken) || errors.Is(err, errStopped) {
					return nil, errStopped
				}
				return nil, err
			}
		}
		if err := q.DisableNotification(); err != nil {
			return nil, err
		}
	}
}
