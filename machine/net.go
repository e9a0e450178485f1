package machine

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/vmm-dev/vmm/devices/virtio"
	virtionet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/netproc"
	"github.com/vmm-dev/vmm/network/tap"
)

// setupNets creates each --net backend and its virtio-net device and adds
// the device with add. The device owns its backend; its Close (which closes
// the backend, and so deletes a TAP the VMM created and releases usernet's
// host sockets) is registered before the transport's, so it runs after
// the transport has reset the device, on every exit path of Machine.Close.
func (m *Machine) setupNets(add func(name string, dev virtio.Device) error) error {
	for i, n := range m.cfg.Nets {
		name := fmt.Sprintf("net %d (%s)", i, n.Backend)
		be, mac, err := m.newBackend(i, n)
		if err != nil {
			return fmt.Errorf("--net %d: %w", i, err)
		}
		dev, err := virtionet.New(virtionet.Config{MAC: mac, Backend: be, OwnThread: n.Backend == NetTAP})
		if err != nil {
			be.Close()
			return fmt.Errorf("--net %d: %w", i, err)
		}
		m.closers = append(m.closers, dev)
		m.nets = append(m.nets, dev)
		if err := add(name, dev); err != nil {
			return err
		}
		m.log.Info("network device", "index", i, "backend", n.Backend, "mac", mac)
	}
	return nil
}

// newBackend opens the backend of n and settles the guest MAC.
func (m *Machine) newBackend(i int, n NetConfig) (network.Backend, network.MAC, error) {
	mac := n.MAC
	switch n.Backend {
	case NetTAP:
		t, err := tap.Open(tap.Config{Name: n.TAP, Bridge: n.Bridge})
		if err != nil {
			return nil, mac, err
		}
		if mac.IsZero() {
			mac = network.GenerateMAC("tap/" + strconv.Itoa(i) + "/" + n.TAP)
		}
		m.log.Info("tap", "name", t.Name(), "created", t.Created(), "bridge", n.Bridge)
		return t, mac, nil
	case NetUser:
		if mac.IsZero() {
			mac = network.GenerateMAC("user/" + strconv.Itoa(i))
		}
		path, err := m.cfg.usernetPath()
		if err != nil {
			return nil, mac, err
		}
		args := []string{"--mac", mac.String(), "--log-level", logLevel(m.log)}
		for _, f := range n.HostForwards {
			args = append(args, "--hostfwd", f.String())
		}
		b, err := netproc.Start(netproc.Config{Path: path, Args: args})
		if err != nil {
			return nil, mac, err
		}
		m.log.Info("user-mode network", "program", path, "pid", b.Pid())
		return b, mac, nil
	}
	return nil, mac, fmt.Errorf("unknown backend %q", n.Backend)
}

// logLevel names the lowest level log passes, for a child's --log-level.
func logLevel(log *slog.Logger) string {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if log.Enabled(context.Background(), l) {
			return strings.ToLower(l.String())
		}
	}
	return "error"
}
