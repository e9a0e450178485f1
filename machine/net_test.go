package machine

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/usernet"
)

func TestNetConfigValidate(t *testing.T) {
	fwd := []usernet.Forward{{Proto: "tcp", HostAddr: netip.MustParseAddrPort("127.0.0.1:8080"), GuestPort: 80}}
	good := []NetConfig{
		{Backend: NetTAP},
		{Backend: NetTAP, TAP: "tap0", MAC: network.MAC{0x52, 0x54, 0, 0, 0, 1}},
		{Backend: NetTAP, Bridge: "br0"},
		{Backend: NetUser},
		{Backend: NetUser, HostForwards: fwd},
	}
	for _, n := range good {
		if err := n.validate(); err != nil {
			t.Errorf("%+v: %v", n, err)
		}
	}
	bad := map[string]NetConfig{
		"unknown backend":  {Backend: "vde"},
		"no backend":       {},
		"bad tap name":     {Backend: NetTAP, TAP: "a/b"},
		"long tap name":    {Backend: NetTAP, TAP: strings.Repeat("x", 16)},
		"bad bridge":       {Backend: NetTAP, Bridge: "br 0"},
		"hostfwd on tap":   {Backend: NetTAP, HostForwards: fwd},
		"tap name on user": {Backend: NetUser, TAP: "tap0"},
		"bridge on user":   {Backend: NetUser, Bridge: "br0"},
		"multicast mac":    {Backend: NetUser, MAC: network.MAC{1, 0, 0x5e, 0, 0, 1}},
	}
	for why, n := range bad {
		if err := n.validate(); err == nil {
			t.Errorf("%s: %+v accepted", why, n)
		}
	}
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(kernel, append([]byte("\x7fELF"), make([]byte, 60)...), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{CPUs: 1, MemoryMiB: 512, KernelPath: kernel}
	for range MaxNets + 1 {
		c.Nets = append(c.Nets, NetConfig{Backend: NetUser})
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("Validate with %d nets: %v", len(c.Nets), err)
	}
	c.UsernetPath = filepath.Join(t.TempDir(), UsernetProgram)
	c.Nets = []NetConfig{{Backend: NetUser}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "missing or not executable") {
		t.Errorf("Validate without the user-mode network program: %v", err)
	}
	if err := os.WriteFile(c.UsernetPath, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.Nets = []NetConfig{{Backend: NetUser}, {Backend: "vde"}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--net 1") {
		t.Errorf("Validate with a bad second net: %v", err)
	}
}
