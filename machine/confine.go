package machine

import (
	"slices"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/network/tap"
	"github.com/vmm-dev/vmm/sandbox"
)

// Confinement describes what a VM built from cfg still needs from the
// kernel while it runs and stops, for sandbox.ConfineVMM: the KVM requests
// of a running VM, a TAP's offload setting if it has a TAP, its helper
// processes (killed when it stops), and with a vsock device the Unix
// stream sockets its connections need. Everything else it needs is open by
// the time New returns. It depends on cfg alone, so that the filter can be
// built while New builds the VM.
func Confinement(cfg Config) sandbox.VMM {
	uses := func(backend string) bool {
		return slices.ContainsFunc(cfg.Nets, func(n NetConfig) bool { return n.Backend == backend })
	}
	p := sandbox.VMM{Ioctls: kvm.RunningRequests(), Helpers: uses(NetUser), UnixStreams: cfg.Vsock != nil}
	if uses(NetTAP) {
		p.Ioctls = append(p.Ioctls, tap.RunningRequests()...)
	}
	return p
}
