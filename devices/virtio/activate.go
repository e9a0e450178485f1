package virtio

import (
	"fmt"

	"github.com/vmm-dev/vmm/devices/virtio/queue"
	"github.com/vmm-dev/vmm/memory"
)

// CloseKicks closes every non-nil kick. Devices call it when Activate fails,
// since Activate owns its kicks whatever it returns.
func CloseKicks(kicks []Kick) {
	for _, k := range kicks {
		if k != nil {
			k.Close() // a close error leaves nothing to undo
		}
	}
}

// CheckActivate validates the arguments of Device.Activate for a device
// with nqueues queues that offered the feature bits offered: memory and an
// interrupt are present, one kick per queue, only offered features and
// VERSION_1 accepted, every queue set up with the negotiated event-index
// mode. The error says what is wrong; the caller closes the kicks.
func CheckActivate(offered, features uint64, mem *memory.Guest, queues []*queue.Queue, kicks []Kick, irq Interrupt, nqueues int) error {
	switch {
	case mem == nil || irq == nil:
		return fmt.Errorf("no guest memory or interrupt")
	case len(queues) != nqueues || len(kicks) != nqueues:
		return fmt.Errorf("%d queues and %d kicks, want %d", len(queues), len(kicks), nqueues)
	case features&^offered != 0:
		return fmt.Errorf("features %#x include unoffered %#x", features, features&^offered)
	case features&FVersion1 == 0:
		return fmt.Errorf("VERSION_1 not negotiated")
	}
	for i, q := range queues {
		if kicks[i] == nil {
			return fmt.Errorf("queue %d has no kick", i)
		}
		if q == nil || !q.Active() {
			return fmt.Errorf("queue %d not set up", i)
		}
		if q.EventIdx() != (features&FRingEventIdx != 0) {
			return fmt.Errorf("queue %d event idx disagrees with features %#x", i, features)
		}
	}
	return nil
}
