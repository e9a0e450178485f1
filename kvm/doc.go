// Package kvm owns the KVM file descriptors: typed handles for the system
// (/dev/kvm), a VM and its vCPUs, and the only place where KVM ioctls are
// issued. Structures mirrored from linux/kvm.h are checked against the
// kernel's sizes in tests. Nothing outside this package reads kvm_run.
package kvm
