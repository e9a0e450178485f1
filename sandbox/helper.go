package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// networkHelperRules are the system calls a network helper makes once it
// is serving: the Go runtime's and sockets. Files already open (its packet
// socket, stderr) keep working; nothing new can be opened but sockets.
func networkHelperRules(pid int) []rule {
	return append(runtimeRules(pid),
		// Go copies between two sockets with splice(2) through a pipe.
		anyArgs(unix.SYS_SPLICE),
		// Sockets: the NAT's and the forwards' host sockets (IPv4/IPv6 only).
		rule{nr: unix.SYS_SOCKET, alts: []match{{eq(0, unix.AF_INET)}, {eq(0, unix.AF_INET6)}}},
		anyArgs(unix.SYS_CONNECT), anyArgs(unix.SYS_BIND), anyArgs(unix.SYS_LISTEN),
		anyArgs(unix.SYS_ACCEPT4), anyArgs(unix.SYS_GETSOCKNAME), anyArgs(unix.SYS_GETPEERNAME),
		anyArgs(unix.SYS_SETSOCKOPT), anyArgs(unix.SYS_GETSOCKOPT), anyArgs(unix.SYS_SENDTO),
		anyArgs(unix.SYS_RECVFROM), anyArgs(unix.SYS_SENDMSG), anyArgs(unix.SYS_RECVMSG), anyArgs(unix.SYS_SHUTDOWN),
	)
}

// ConfineNetworkHelper installs the network helper's filter on every thread
// of the calling process (and threads it creates later). It cannot be
// undone. Call it once the helper holds what it needs from the file system.
func ConfineNetworkHelper() error {
	f, err := build(networkHelperRules(os.Getpid()), false)
	if err != nil {
		return err
	}
	return f.Install()
}
