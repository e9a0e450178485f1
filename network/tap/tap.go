// Package tap owns the TAP backend of virtio-net: a Linux TAP interface
// opened through /dev/net/tun with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, so every
// frame carries the 12-byte virtio-net header (TUNSETVNETHDRSZ) and the
// guest's checksum and segmentation offloads reach the host kernel as they
// are (TUNSETOFFLOAD follows what the guest accepted).
//
// A TAP the backend creates (Config.Name empty, or a name that does not
// exist yet) is not persistent: the kernel deletes it when the last file
// descriptor closes, so it disappears on every exit path of the VMM,
// including SIGKILL. A TAP that existed before is only attached to and
// stays.
//
// Reads go through Go's netpoller (the descriptor is non-blocking), so a
// blocked ReadFrame costs no thread, and Close or Wake (a read deadline in
// the past) wakes it; TryReadFrame is a single non-blocking read(2).
package tap

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/network"
)

// DefaultNameTemplate names TAPs the backend creates; the kernel replaces
// %d with the first free number.
const DefaultNameTemplate = "vmmtap%d"

// tunPath is the TUN/TAP clone device.
const tunPath = "/dev/net/tun"

// Offloads a TAP honours: the host kernel accepts partially checksummed and
// TSO frames from the guest (virtio_net_hdr_to_skb) and, after
// TUNSETOFFLOAD, hands the guest the same. UFO is not offered: Linux 6.1
// ignores TUN_F_UFO and guests no longer send it.
const offloads = network.FCsum | network.FGuestCsum |
	network.FHostTSO4 | network.FHostTSO6 | network.FHostECN |
	network.FGuestTSO4 | network.FGuestTSO6 | network.FGuestECN

// Config says which TAP to use.
type Config struct {
	// Name of an existing TAP to attach to; empty creates a new one from
	// DefaultNameTemplate. A name that does not exist yet is created if
	// the process may (CAP_NET_ADMIN), and deleted on Close.
	Name string
	// Bridge, if set, is a bridge the TAP is added to (needs CAP_NET_ADMIN).
	Bridge string
}

// TAP is a network.Backend over one TAP queue. A read(2) of a TAP returns
// one frame and a writev(2) sends one, so network.FrameConn does its I/O
// (ReadFrame, TryReadFrame, Wake, WriteFrame, SyscallConn); its Close wakes
// a blocked ReadFrame, and a TAP that Open created disappears with its last
// descriptor.
type TAP struct {
	*network.FrameConn
	name    string
	created bool
}

var _ network.Backend = (*TAP)(nil)

// ValidName reports whether s can name a network interface (IFNAMSIZ-1
// bytes, no '/', ':', whitespace or NUL, not "." or "..").
func ValidName(s string) bool {
	if s == "" || len(s) >= unix.IFNAMSIZ || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n\x00")
}

// Open opens (or creates) the TAP and, for a new one, brings it up and adds
// it to the bridge. On error nothing is left behind.
func Open(cfg Config) (t *TAP, err error) {
	if cfg.Name != "" && !ValidName(cfg.Name) {
		return nil, fmt.Errorf("tap: %q is not a valid interface name", cfg.Name)
	}
	if cfg.Bridge != "" && !ValidName(cfg.Bridge) {
		return nil, fmt.Errorf("tap: bridge %q is not a valid interface name", cfg.Bridge)
	}
	existed := false
	if cfg.Name != "" {
		_, ierr := net.InterfaceByName(cfg.Name)
		existed = ierr == nil
	}
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tap: open %s: %w", tunPath, err)
	}
	defer func() {
		if err != nil && fd >= 0 {
			unix.Close(fd)
		}
	}()
	feats, err := unix.IoctlGetUint32(fd, unix.TUNGETFEATURES)
	if err != nil {
		return nil, fmt.Errorf("tap: TUNGETFEATURES: %w", err)
	}
	const want = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if feats&want != want {
		return nil, fmt.Errorf("tap: kernel TUN features %#x lack IFF_TAP|IFF_NO_PI|IFF_VNET_HDR", feats)
	}
	name := cfg.Name
	if name == "" {
		name = DefaultNameTemplate
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tap: %q: %w", name, err)
	}
	ifr.SetUint16(want)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		switch {
		case errors.Is(err, unix.EPERM) && cfg.Name == "":
			return nil, errors.New("tap: creating a TAP needs CAP_NET_ADMIN; or attach to one made by root with `ip tuntap add NAME mode tap user USER` (--net tap=NAME)")
		case errors.Is(err, unix.EPERM) && !existed:
			return nil, fmt.Errorf("tap: %s does not exist and creating it needs CAP_NET_ADMIN", cfg.Name)
		case errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("tap: %s: permission denied (not owned by this user; see ip tuntap add ... user)", cfg.Name)
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("tap: %s is busy (another process has it, or it is not a TAP with vnet headers)", describe(cfg.Name))
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("tap: %s exists and is not a single-queue TAP: %w", describe(cfg.Name), err)
		}
		return nil, fmt.Errorf("tap: TUNSETIFF %s: %w", describe(cfg.Name), err)
	}
	name = ifr.Name()
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, network.HeaderLen); err != nil {
		return nil, fmt.Errorf("tap: %s: TUNSETVNETHDRSZ: %w", name, err)
	}
	// Until the guest accepts offloads, the kernel must hand us complete
	// frames with valid checksums.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return nil, fmt.Errorf("tap: %s: TUNSETOFFLOAD: %w", name, err)
	}
	created := !existed
	if created || cfg.Bridge != "" {
		if err := setUp(name); err != nil {
			return nil, fmt.Errorf("tap: %s: %w", name, err)
		}
	}
	if cfg.Bridge != "" {
		if err := addToBridge(cfg.Bridge, name); err != nil {
			return nil, fmt.Errorf("tap: %s: %w", name, err)
		}
	}
	conn, err := network.NewFrameConn(fd, "tap: "+name) // non-blocking: in the netpoller
	if err != nil {
		return nil, err
	}
	fd = -1
	return &TAP{FrameConn: conn, name: name, created: created}, nil
}

func describe(name string) string {
	if name == "" {
		return "a new TAP"
	}
	return "TAP " + name
}

// Name returns the interface name (e.g. vmmtap0).
func (t *TAP) Name() string { return t.name }

// Created reports whether Open created the interface (it is deleted on Close).
func (t *TAP) Created() bool { return t.created }

// Features implements network.Backend.
func (t *TAP) Features() uint64 { return offloads }

// SetGuestOffloads implements network.Backend: TUNSETOFFLOAD with what the
// guest accepted, so the kernel only hands over frames the guest can take.
func (t *TAP) SetGuestOffloads(features uint64) error {
	var flags int
	if features&network.FGuestCsum != 0 {
		flags |= unix.TUN_F_CSUM
		// The kernel accepts TSO flags only together with CSUM.
		if features&network.FGuestTSO4 != 0 {
			flags |= unix.TUN_F_TSO4
		}
		if features&network.FGuestTSO6 != 0 {
			flags |= unix.TUN_F_TSO6
		}
		if features&network.FGuestECN != 0 && flags&(unix.TUN_F_TSO4|unix.TUN_F_TSO6) != 0 {
			flags |= unix.TUN_F_TSO_ECN
		}
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return network.ErrClosed
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags) }); err != nil {
		return network.ErrClosed
	}
	if ierr != nil {
		return fmt.Errorf("tap: %s: TUNSETOFFLOAD %#x: %w", t.name, flags, ierr)
	}
	return nil
}

var _ network.Pollable = (*TAP)(nil)

// RunningRequests returns the ioctl requests an open TAP issues while the
// guest runs: TUNSETOFFLOAD, when the guest's driver accepts offloads.
func RunningRequests() []uintptr { return []uintptr{unix.TUNSETOFFLOAD} }
