package usernet_test

import (
	"fmt"

	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/usernet"
)

func ExampleParseHostFwd() {
	f, err := usernet.ParseHostFwd("tcp::2222-:22")
	fmt.Println(f.Proto, f.HostAddr, f.GuestPort, err)
	_, err = usernet.ParseHostFwd("tcp::2222-10.0.2.15:22")
	fmt.Println(err)
	// Output:
	// tcp 127.0.0.1:2222 22 <nil>
	// usernet: hostfwd "tcp::2222-10.0.2.15:22": guest address "10.0.2.15": only an empty guest address (the guest's DHCP address) is supported
}

// A VMM builds the backend from its configuration and hands it to the
// virtio-net device as a network.Backend; the device's MAC goes in
// Config.GuestMAC.
func ExampleNew() {
	b, err := usernet.New(usernet.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var be network.Backend = b
	defer be.Close()
	fmt.Println("offloads:", be.Features())
	// Output: offloads: 0
}
