package tap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Interface configuration through the classic socket ioctls, which need
// nothing beyond x/sys and act in the calling thread's network namespace.
// The VMM uses setUp and addToBridge; tests use the exported helpers to
// build a private network in a namespace of their own.

// Linux bridge ioctls (include/uapi/linux/sockios.h).
const (
	siocBrAddBr = 0x89a0
	siocBrAddIf = 0x89a2
)

func ctlSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("control socket: %w", err)
	}
	return fd, nil
}

// withIfreq runs fn with a control socket and an ifreq naming name.
func withIfreq(name string, fn func(s int, ifr *unix.Ifreq) error) error {
	s, err := ctlSocket()
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	return fn(s, ifr)
}

func setUp(name string) error {
	return withIfreq(name, func(s int, ifr *unix.Ifreq) error {
		if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("get flags: %w", err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
		return nil
	})
}

func addToBridge(bridge, name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("add to bridge %s: %w", bridge, err)
	}
	return withIfreq(bridge, func(s int, ifr *unix.Ifreq) error {
		ifr.SetUint32(uint32(ifi.Index))
		err := unix.IoctlIfreq(s, siocBrAddIf, ifr)
		switch {
		case errors.Is(err, unix.ENODEV):
			return fmt.Errorf("bridge %s does not exist", bridge)
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
			return fmt.Errorf("%s is not a bridge", bridge)
		case err != nil:
			return fmt.Errorf("add to bridge %s: %w", bridge, err)
		}
		return nil
	})
}

// SetUp brings interface name up.
func SetUp(name string) error {
	if err := setUp(name); err != nil {
		return fmt.Errorf("tap: %s: %w", name, err)
	}
	return nil
}

// AddBridge creates a Linux bridge (needs CAP_NET_ADMIN and the bridge
// module). The VMM never creates bridges; tests do.
func AddBridge(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("tap: bridge %q: not a valid name", name)
	}
	s, err := ctlSocket()
	if err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	defer unix.Close(s)
	if err := unix.IoctlSetString(s, siocBrAddBr, name); err != nil {
		return fmt.Errorf("tap: add bridge %s: %w", name, err)
	}
	return nil
}

// SetIPv4 assigns prefix (address and mask) to interface name.
func SetIPv4(name string, prefix netip.Prefix) error {
	if !prefix.Addr().Is4() {
		return fmt.Errorf("tap: %s: %v is not IPv4", name, prefix)
	}
	return withIfreq(name, func(s int, ifr *unix.Ifreq) error {
		a := prefix.Addr().As4()
		if err := ifr.SetInet4Addr(a[:]); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(s, unix.SIOCSIFADDR, ifr); err != nil {
			return fmt.Errorf("tap: %s: set address: %w", name, err)
		}
		m := net.CIDRMask(prefix.Bits(), 32)
		if err := ifr.SetInet4Addr(m); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(s, unix.SIOCSIFNETMASK, ifr); err != nil {
			return fmt.Errorf("tap: %s: set netmask: %w", name, err)
		}
		return nil
	})
}
