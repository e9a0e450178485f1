package net

import (
	"errors"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/network"
)

// txState is the tx worker's reusable scratch.
type txState struct {
	hdr  [network.HeaderLen]byte
	bufs [][]byte
}

// serveTx sends the guest's frames until the activation stops. Its error
// means the ring is broken (or the backend failed for good).
func (d *Device) serveTx(r *activation) error {
	q, kick := r.queues[TxQueue], r.kicks[TxQueue]
	var st txState
	for {
		if err := d.drainTx(r, q, &st); err != nil {
			return err
		}
		if r.stopped() {
			return nil
		}
		if err := kick.Wait(); err != nil {
			if errors.Is(err, virtio.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// drainTx sends every available frame, re-enabling notifications with a
// re-check so that no kick is lost.
func (d *Device) drainTx(r *activation, q *queue.Queue, st *txState) error {
	for {
		if err := q.DisableNotification(); err != nil {
			return err
		}
		// Completions are reported as they happen, not only when the ring
		// is drained: the guest's TCP stack holds back a socket with about
		// two 64 KiB segments in flight until their buffers come back (TCP
		// small queues), so a large frame is worth an interrupt check of its
		// own (one read of used_event), as QEMU checks after every frame. A
		// run of small frames (the ACKs of a download) is checked every
		// notifyEvery frames.
		sent, pending := 0, 0
		for !r.stopped() {
			c, err := q.Pop()
			if c == nil && err == nil {
				break
			}
			var ce *queue.ChainError
			switch {
			case errors.As(err, &ce):
				d.stats.badChains.Add(1)
				d.stats.txDropped.Add(1)
				err = q.Push(ce.Head, 0)
			case err != nil:
				return err
			default:
				pending += int(min(c.ReadableLen(), notifyBytes))
				if err := d.transmit(r, c, st); err != nil {
					return err
				}
				err = q.Push(c.Head, 0)
			}
			if err != nil {
				return err
			}
			sent++
			if sent%notifyEvery == 0 || pending >= notifyBytes {
				pending = 0
				if err := notify(r, TxQueue); err != nil {
					return err
				}
			}
		}
		if r.stopped() {
			return nil
		}
		more, err := q.EnableNotification()
		if err != nil {
			return err
		}
		if !more {
			return notify(r, TxQueue)
		}
	}
}

// transmit validates one chain as header+frame and hands it to the
// backend. A bad frame is dropped and counted; only a closed backend is an
// error (the activation ends quietly: the VM is going away).
func (d *Device) transmit(r *activation, c *queue.Chain, st *txState) error {
	total := c.ReadableLen()
	if total < network.HeaderLen || total > network.HeaderLen+MaxFrameLen {
		d.stats.txDropped.Add(1)
		return nil
	}
	frameLen := int(total) - network.HeaderLen
	// Validate a private copy of the header and send that copy, so the
	// guest cannot change it after the check.
	if err := c.ReadAt(r.mem, st.hdr[:], 0); err != nil {
		d.stats.badChains.Add(1)
		d.stats.txDropped.Add(1)
		return nil
	}
	h, err := network.DecodeHeader(st.hdr[:])
	if err == nil {
		err = CheckTxHeader(h, frameLen, r.features)
	}
	if err != nil {
		d.stats.txDropped.Add(1)
		return nil
	}
	h.Flags &^= network.HdrFDataValid // receive-only flag
	h.NumBuffers = 0
	if err := h.Encode(st.hdr[:]); err != nil {
		return err
	}
	st.bufs = append(st.bufs[:0], st.hdr[:])
	st.bufs, err = c.ReadableSlices(r.mem, network.HeaderLen, uint64(frameLen), st.bufs)
	if err != nil {
		d.stats.badChains.Add(1)
		d.stats.txDropped.Add(1)
		return nil
	}
	if err := d.backend.WriteFrame(st.bufs); err != nil {
		if errors.Is(err, network.ErrClosed) {
			r.stop()
			return nil
		}
		// A host-side refusal (link down, the kernel rejects the frame)
		// drops this frame only.
		d.stats.txDropped.Add(1)
		return nil
	}
	d.stats.txFrames.Add(1)
	d.stats.txBytes.Add(uint64(frameLen))
	return nil
}
