package machine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmm-dev/vmm/devices/virtio/balloon"
)

// Control of a running VM from outside it (the control socket): pause and
// resume its vCPUs, set the balloon's target, read its state.

// ErrStopped is returned by control calls once the VM is stopping.
var ErrStopped = errors.New("the VM is stopping")

// pauser parks vCPU threads while the VM is paused. Its zero value is
// ready: lock ties the condition to the mutex.
type pauser struct {
	mu     sync.Mutex
	cond   sync.Cond // signalled when parked, paused or stopping change
	paused bool
	parked int // vCPUs waiting in park
}

func (p *pauser) lock() {
	p.mu.Lock()
	if p.cond.L == nil {
		p.cond.L = &p.mu
	}
}

// Pause stops every vCPU from running guest code and returns once all of
// them are parked. Devices keep running: a paused guest's queued I/O
// completes, it just does not see it until Resume. Pausing a paused VM
// does nothing.
func (m *Machine) Pause() error {
	p := &m.pause
	p.lock()
	defer p.mu.Unlock()
	if m.stopping.Load() {
		return ErrStopped
	}
	if p.paused {
		return nil
	}
	p.paused = true
	for _, c := range m.vcpus {
		c.Kick()
	}
	for p.parked < len(m.vcpus) && !m.stopping.Load() {
		p.cond.Wait()
	}
	if m.stopping.Load() {
		return ErrStopped
	}
	return nil
}

// Resume lets the vCPUs run again. Resuming a running VM does nothing.
func (m *Machine) Resume() error {
	p := &m.pause
	p.lock()
	defer p.mu.Unlock()
	if m.stopping.Load() {
		return ErrStopped
	}
	p.paused = false
	p.cond.Broadcast()
	return nil
}

// Paused reports whether the VM is paused.
func (m *Machine) Paused() bool {
	m.pause.lock()
	defer m.pause.mu.Unlock()
	return m.pause.paused
}

// park holds vCPU id, which left the guest because it was kicked, while
// the VM is paused, then clears the kick so that it enters the guest
// again. It reports whether the vCPU is done (the VM is stopping).
func (m *Machine) park(id int) bool {
	p := &m.pause
	p.lock()
	if p.paused && !m.stopping.Load() {
		p.parked++
		p.cond.Broadcast()
		for p.paused && !m.stopping.Load() {
			p.cond.Wait()
		}
		p.parked--
	}
	p.mu.Unlock()
	if id >= 0 && id < len(m.vcpus) {
		m.vcpus[id].ClearKick()
	}
	// Stop sets stopping before it kicks: a kick this cleared was not a
	// stop that could be missed.
	return m.stopping.Load()
}

// wakeParked releases parked vCPUs and waiting Pause calls when the VM
// stops.
func (m *Machine) wakeParked() {
	m.pause.lock()
	m.pause.cond.Broadcast()
	m.pause.mu.Unlock()
}

// BalloonMiB is the balloon's state in MiB: what the host asked for and
// what the guest holds in it, and the guest's last memory statistics.
type BalloonMiB struct {
	Target uint64              `json:"target_mib"`
	Actual uint64              `json:"actual_mib"`
	Guest  *balloon.GuestStats `json:"guest,omitempty"`
}

// SetBalloon asks the guest to hold mib MiB in its balloon (given back to
// the host while it does), at most the guest's memory. It needs a VM built
// with Config.Balloon.
func (m *Machine) SetBalloon(mib uint64) error {
	if m.balloon == nil {
		return errors.New("no balloon: start the VM with --balloon")
	}
	if mib > m.cfg.MemoryMiB {
		return fmt.Errorf("balloon of %d MiB is larger than the guest's %d MiB", mib, m.cfg.MemoryMiB)
	}
	if m.stopping.Load() {
		return ErrStopped
	}
	return m.balloon.SetTarget(uint32(mib << 8)) // 4 KiB pages
}

// Balloon returns the balloon's state, or nil without one. It also asks
// the guest for fresh statistics, which the next call returns.
func (m *Machine) Balloon() *BalloonMiB {
	if m.balloon == nil {
		return nil
	}
	b := &BalloonMiB{Target: uint64(m.balloon.Target()) >> 8, Actual: uint64(m.balloon.Actual()) >> 8}
	if g, err := m.balloon.GuestStats(); err == nil {
		b.Guest = g
	} else {
		m.log.Warn("balloon statistics", "err", err)
	}
	return b
}

// Metrics returns the counters and timings so far, as the metrics file
// has them at the end (guest_rss_kib only with a metrics file).
func (m *Machine) Metrics() Report { return m.report() }
