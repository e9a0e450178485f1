package usernet_test

import (
	"fmt"

	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/usernet"
)

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
	fmt.Println("checksum and TSO offloads:", be.Features() == network.FCsum|network.FGuestCsum|network.FGuestTSO4|network.FHostTSO4)
	// Output: checksum and TSO offloads: true
}
