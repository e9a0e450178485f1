// Package kvm owns the KVM file descriptors: typed handles for the system
// (/dev/kvm), a VM and its vCPUs, and the only place where KVM ioctls are
// issued (ioctl_unsafe.go). Structures mirrored from linux/kvm.h are checked
// against the kernel's sizes, field offsets and request numbers in tests.
// Nothing outside this package reads kvm_run: VCPU.Run decodes it into typed
// exits, validating every offset and length the kernel reports.
//
// Threading: a VCPU is run by one goroutine locked to its OS thread. Kick may
// be called from anywhere; it sets kvm_run.immediate_exit and signals the
// vCPU thread with SIGURG, and stays in effect until ClearKick, so a pause or
// stop request cannot be lost between two Runs. VM methods are single ioctls
// and may be called concurrently (for example irqfd registration from device
// goroutines). Each VCPU counts its exits by kind (ExitCounts).
package kvm
