package queuetest

import "sync"

// IRQ stands in for a transport's interrupt in device tests: it implements
// virtio.Interrupt and virtio.FailureReporter, counts notifications per
// queue and configuration changes, and hands each reported failure to
// Failures.
type IRQ struct {
	mu       sync.Mutex
	notified map[int]int
	changes  int

	// Failures receives what the device reports through Failed; it holds
	// one failure without a reader (a device reports at most one per
	// activation).
	Failures chan error
}

// NewIRQ returns an IRQ with no notifications counted.
func NewIRQ() *IRQ { return &IRQ{notified: map[int]int{}, Failures: make(chan error, 1)} }

// Notify counts a used-buffer notification of queue.
func (f *IRQ) Notify(queue int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notified[queue]++
	return nil
}

// ConfigChanged counts a configuration change notification.
func (f *IRQ) ConfigChanged() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes++
	return nil
}

// ConfigChanges returns how many configuration change notifications there
// have been.
func (f *IRQ) ConfigChanges() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changes
}

// Failed sends err to Failures.
func (f *IRQ) Failed(err error) { f.Failures <- err }

// Notified returns how many notifications queue has had.
func (f *IRQ) Notified(queue int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notified[queue]
}
