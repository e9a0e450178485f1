package machine

import (
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/network/tap"
	"github.com/vmm-dev/vmm/sandbox"
)

// Confinement describes what the built VM still needs from the kernel
// while it runs and stops, for sandbox.ConfineVMM: the KVM requests of a
// running VM, a TAP's offload setting if it has a TAP, and its helper
// processes (killed when it stops). Everything else it needs is open by
// the time New returns.
func (m *Machine) Confinement() sandbox.VMM {
	p := sandbox.VMM{Ioctls: kvm.RunningRequests(), Helpers: append([]int(nil), m.helpers...)}
	if m.hasTAP {
		p.Ioctls = append(p.Ioctls, tap.RunningRequests()...)
	}
	return p
}
