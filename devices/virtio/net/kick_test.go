package net

import (
	"errors"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
)

func TestPolledKick(t *testing.T) {
	ek, err := virtio.NewEventFDKick()
	if err != nil {
		t.Skipf("no eventfd: %v", err)
	}
	k := newPolledKick(ek)
	if _, ok := k.(*polledKick); !ok {
		t.Fatalf("newPolledKick(EventFDKick) = %T, want *polledKick", k)
	}
	// Notifications before Wait coalesce into one wake-up.
	for range 3 {
		if err := ek.Signal(); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Wait(); err != nil {
		t.Fatalf("Wait after Signal: %v", err)
	}
	// A Wait with nothing pending blocks until the next Signal.
	got := make(chan error, 1)
	go func() { got <- k.Wait() }()
	select {
	case err := <-got:
		t.Fatalf("Wait returned %v with nothing pending (signals did not coalesce)", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := ek.Signal(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Signal did not wake Wait")
	}
	// Close wakes a parked Wait with ErrClosed and closes the kick itself.
	go func() { got <- k.Wait() }()
	time.Sleep(20 * time.Millisecond)
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, virtio.ErrClosed) {
			t.Fatalf("Wait after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Wait")
	}
	if err := k.Wait(); !errors.Is(err, virtio.ErrClosed) {
		t.Errorf("second Wait after Close: %v", err)
	}
	if err := ek.Signal(); !errors.Is(err, virtio.ErrClosed) {
		t.Errorf("underlying kick still open: Signal = %v", err)
	}
	if err := k.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPolledKickOtherKinds(t *testing.T) {
	ck := virtio.NewChanKick()
	if k := newPolledKick(ck); k != virtio.Kick(ck) {
		t.Errorf("newPolledKick(ChanKick) = %T, want the kick itself", k)
	}
}
