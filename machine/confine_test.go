package machine

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/kvm"
)

func TestConfinement(t *testing.T) {
	p := Confinement(Config{})
	if !slices.Equal(p.Ioctls, kvm.RunningRequests()) || p.Helpers || p.UnixStreams {
		t.Errorf("no devices: %+v, want the KVM requests only", p)
	}
	if p = Confinement(Config{Vsock: &vsock.Config{GuestCID: 3, Path: "/run/v.sock"}}); !p.UnixStreams {
		t.Errorf("vsock: %+v, want Unix streams", p)
	}
	p = Confinement(Config{Nets: []NetConfig{{Backend: NetTAP}, {Backend: NetTAP, TAP: "t1"}, {Backend: NetUser}}})
	if n := len(p.Ioctls); n != len(kvm.RunningRequests())+1 || p.Ioctls[n-1] != unix.TUNSETOFFLOAD {
		t.Errorf("two TAPs: ioctls %#x, want the KVM requests and TUNSETOFFLOAD once", p.Ioctls)
	}
	if !p.Helpers {
		t.Error("user-mode network: no helpers")
	}
}
