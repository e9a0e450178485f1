package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// networkHelperRules are the system calls a network helper makes once it
// is serving: the Go runtime's and sockets. Files already open (its packet
// socket, stderr) keep working; nothing new can be opened but sockets.
func networkHelperRules(pid int) seccomp.SyscallRules {
	inet := seccomp.Or{
		seccomp.PerArg{seccomp.EqualTo(unix.AF_INET)},
		seccomp.PerArg{seccomp.EqualTo(unix.AF_INET6)},
	}
	rules := runtimeRules(pid)
	for nr, r := range map[uintptr]seccomp.SyscallRule{
		// Go copies between two sockets with splice(2) through a pipe.
		unix.SYS_SPLICE: allow,
		// Sockets: the NAT's and the forwards' host sockets (IPv4/IPv6 only).
		unix.SYS_SOCKET: inet, unix.SYS_CONNECT: allow, unix.SYS_BIND: allow, unix.SYS_LISTEN: allow,
		unix.SYS_ACCEPT4: allow, unix.SYS_GETSOCKNAME: allow, unix.SYS_GETPEERNAME: allow,
		unix.SYS_SETSOCKOPT: allow, unix.SYS_GETSOCKOPT: allow, unix.SYS_SENDTO: allow,
		unix.SYS_RECVFROM: allow, unix.SYS_SENDMSG: allow, unix.SYS_RECVMSG: allow, unix.SYS_SHUTDOWN: allow,
	} {
		rules[nr] = r
	}
	return seccomp.MakeSyscallRules(rules)
}

// ConfineNetworkHelper installs the network helper's filter on every thread
// of the calling process (and threads it creates later). It cannot be
// undone. Call it once the helper holds what it needs from the file system.
func ConfineNetworkHelper() error {
	instrs, err := build(networkHelperRules(os.Getpid()), false)
	if err != nil {
		return err
	}
	return (&Filter{instrs: instrs}).Install()
}
