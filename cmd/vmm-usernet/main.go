// Command vmm-usernet is the user-mode network of vmm (--net user): it runs
// network/usernet, built on gVisor's netstack, in a process of its own and
// exchanges the guest's frames with vmm over the socket vmm passes as file
// descriptor 3 (network/netproc). vmm starts it from the directory of its
// own executable; it is not meant to be run by hand.
//
// Keeping netstack here means the code that parses the guest's TCP/IP
// traffic is not in the VMM's address space, and a VMM without user-mode
// networking does not carry its memory (docs/design.md). Once its sockets
// are bound it confines itself with a seccomp filter (package sandbox):
// sockets and the Go runtime only, every other system call fails.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/netproc"
	"github.com/vmm-dev/vmm/network/usernet"
	"github.com/vmm-dev/vmm/sandbox"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vmm-usernet:", err)
		os.Exit(1)
	}
}

// options are the command line vmm passes.
type options struct {
	mac      net.HardwareAddr
	forwards []network.Forward
	level    slog.Level
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("vmm-usernet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("mac", "the guest's MAC `ADDRESS` (the only DHCP client answered)", func(s string) error {
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("%q is not a 6-byte MAC address", s)
		}
		o.mac = hw
		return nil
	})
	fs.Func("hostfwd", "host -> guest forward `SPEC` such as tcp:127.0.0.1:8080-:80; repeatable", func(s string) error {
		f, err := network.ParseHostFwd(s)
		if err != nil {
			return err
		}
		o.forwards = append(o.forwards, f)
		return nil
	})
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := o.level.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)
	}
	return o, nil
}

func run(args []string, stderr io.Writer) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	if t, err := unix.GetsockoptInt(netproc.ChildFD, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_SEQPACKET {
		return fmt.Errorf("file descriptor %d is not the packet socket vmm passes (vmm run --net user starts this program)", netproc.ChildFD)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.level})).With("component", "vmm-usernet")
	be, err := usernet.New(usernet.Config{GuestMAC: o.mac, HostForwards: o.forwards, Log: log})
	if err != nil {
		return err
	}
	for _, a := range be.HostForwardAddrs() {
		log.Info("host forward listening", "addr", a)
	}
	// From here on it needs only sockets and the runtime: whatever the
	// guest's traffic does to netstack, it cannot reach files or programs.
	if err := sandbox.ConfineNetworkHelper(); err != nil {
		be.Close()
		return err
	}
	return netproc.Serve(netproc.ChildFD, be)
}
