package virtio

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testKick(t *testing.T, k Kick, signal func()) {
	t.Helper()
	// A pending notification is consumed by one Wait; several coalesce.
	signal()
	signal()
	if err := k.Wait(); err != nil {
		t.Fatalf("Wait after signal: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- k.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v without a notification", err)
	case <-time.After(50 * time.Millisecond):
	}
	signal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait not woken by signal")
	}
	// Close wakes a blocked waiter.
	go func() { done <- k.Wait() }()
	time.Sleep(20 * time.Millisecond)
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiter")
	}
	if err := k.Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait on closed kick = %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestChanKick(t *testing.T) {
	k := NewChanKick()
	testKick(t, k, k.Signal)
}

func TestEventFDKick(t *testing.T) {
	k, err := NewEventFDKick()
	if err != nil {
		t.Fatal(err)
	}
	fd := k.FD()
	if fd < 0 {
		t.Fatal("bad fd")
	}
	// Signal through the fd as KVM would.
	testKick(t, k, func() {
		if _, err := unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
	})
	if err := k.Signal(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Signal after Close = %v", err)
	}
}

func TestEventFDKickSignalAndConcurrentClose(t *testing.T) {
	k, err := NewEventFDKick()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Signal(); err != nil {
		t.Fatal(err)
	}
	if err := k.Wait(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if err := k.Wait(); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Wait: %v", err)
					}
					return
				}
			}
		}()
	}
	for i := 0; i < 100; i++ {
		k.Signal()
	}
	var cwg sync.WaitGroup
	for i := 0; i < 3; i++ {
		cwg.Add(1)
		go func() { defer cwg.Done(); k.Close() }()
	}
	cwg.Wait()
	wg.Wait()
}

type fakeIRQ struct{ failed error }

func (f *fakeIRQ) Notify(int) error     { return nil }
func (f *fakeIRQ) ConfigChanged() error { return nil }
func (f *fakeIRQ) Failed(err error)     { f.failed = err }

type plainIRQ struct{}

func (plainIRQ) Notify(int) error     { return nil }
func (plainIRQ) ConfigChanged() error { return nil }

func TestReportFailure(t *testing.T) {
	f := &fakeIRQ{}
	e := errors.New("boom")
	if !ReportFailure(f, e) || f.failed != e {
		t.Fatal("FailureReporter not called")
	}
	if ReportFailure(plainIRQ{}, e) {
		t.Fatal("reported to an Interrupt without Failed")
	}
}

func TestEventFDKickDrain(t *testing.T) {
	k, err := NewEventFDKick()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Drain(); err != nil { // nothing pending: returns at once
		t.Fatalf("Drain of an idle kick: %v", err)
	}
	k.Signal()
	k.Signal()
	if err := k.Drain(); err != nil {
		t.Fatal(err)
	}
	// Both notifications were consumed: a Wait now blocks until the next.
	done := make(chan error, 1)
	go func() { done <- k.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("Wait after Drain returned %v without a new notification", err)
	case <-time.After(50 * time.Millisecond):
	}
	k.Signal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := k.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if err := k.Drain(); !errors.Is(err, ErrClosed) {
		t.Errorf("Drain after Close = %v, want ErrClosed", err)
	}
}
