package virtio

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
)

// QueueServer serves one queue whose requests are independent: each chain
// the driver makes available is handed to Handle and returned with the
// byte count it gives (the entropy device, the balloon's queues).
type QueueServer struct {
	Queue *queue.Queue
	Index int // the queue's index, for interrupts
	Kick  Kick
	IRQ   Interrupt
	// Stop, when set, ends Serve at the next chain boundary.
	Stop *atomic.Bool
	// Handle does a well-formed chain's work and returns how many bytes
	// it wrote into the chain's device-writable buffers.
	Handle func(c *queue.Chain) uint32
	// Malformed is told of each malformed chain (completed with 0 bytes).
	Malformed func()
}

// Serve completes what is available (buffers may predate the first kick),
// then sleeps until kicked, until Stop is set or the kick is closed (nil)
// or the ring breaks (the error; it wraps queue.ErrGuest).
func (s *QueueServer) Serve() error {
	for {
		if err := s.drain(); err != nil {
			return err
		}
		if s.Stop.Load() {
			return nil
		}
		if err := s.Kick.Wait(); err != nil {
			if errors.Is(err, ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// drain completes every available chain, re-enabling notifications with a
// re-check so that no kick is lost, then interrupts the driver if it asks.
func (s *QueueServer) drain() error {
	for {
		if err := s.Queue.DisableNotification(); err != nil {
			return err
		}
		if err := s.completeAvailable(); err != nil {
			return err
		}
		if s.Stop.Load() {
			return nil
		}
		more, err := s.Queue.EnableNotification()
		if err != nil {
			return err
		}
		if more {
			continue
		}
		need, err := s.Queue.NeedsNotification()
		if err != nil || !need {
			return err
		}
		if err := s.IRQ.Notify(s.Index); err != nil {
			return fmt.Errorf("interrupt: %w", err)
		}
		return nil
	}
}

// completeAvailable completes chains until the ring is empty or Stop is
// set. Its error means the ring is broken.
func (s *QueueServer) completeAvailable() error {
	for !s.Stop.Load() {
		c, err := s.Queue.Pop()
		var ce *queue.ChainError
		switch {
		case errors.As(err, &ce):
			s.Malformed()
			err = s.Queue.Push(ce.Head, 0)
		case err != nil:
			return err
		case c == nil:
			return nil
		default:
			err = s.Queue.Push(c.Head, s.Handle(c))
		}
		if err != nil {
			return err
		}
	}
	return nil
}
