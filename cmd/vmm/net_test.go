package main

import (
	"reflect"
	"testing"

	"github.com/vmm-dev/vmm/machine"
	"github.com/vmm-dev/vmm/network"
)

func TestParseNet(t *testing.T) {
	mac := network.MAC{0x52, 0x54, 0, 1, 2, 3}
	fwd, err := network.ParseHostFwd("tcp:127.0.0.1:8080-:80")
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]machine.NetConfig{
		"tap":                            {Backend: machine.NetTAP},
		"tap=tap0":                       {Backend: machine.NetTAP, TAP: "tap0"},
		"tap=tap0,mac=52:54:00:01:02:03": {Backend: machine.NetTAP, TAP: "tap0", MAC: mac},
		"tap,bridge=br0":                 {Backend: machine.NetTAP, Bridge: "br0"},
		"user":                           {Backend: machine.NetUser},
		"user,hostfwd=tcp:127.0.0.1:8080-:80,mac=52:54:00:01:02:03": {Backend: machine.NetUser, MAC: mac,
			HostForwards: []network.Forward{fwd}},
	}
	for in, want := range good {
		got, err := parseNet(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseNet(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "vde", "tap=", "user=x", "tap,hostfwd=tcp::1-:2", "user,bridge=br0",
		"tap=tap0,bridge=br0", "tap,mac=01:00:5e:00:00:01", "tap,mac=zz", "user,hostfwd=tcp:8080:80",
		"user,hostfwd=sctp::1-:2", "tap,bridge", "tap,foo=bar"} {
		if n, err := parseNet(in); err == nil {
			t.Errorf("parseNet(%q) accepted: %+v", in, n)
		}
	}
}
