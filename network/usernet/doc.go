// Package usernet is a rootless, in-process network backend for the guest's
// virtio-net device, built on gVisor's netstack.
//
// It owns a private netstack with one Ethernet NIC whose link endpoint is fed
// by WriteFrame (frames the guest transmits) and drained by ReadFrame (frames
// for the guest). On that NIC it plays the gateway of a small virtual subnet
// (10.0.2.0/24 by default, like QEMU's user networking):
//
//   - the gateway address answers ARP and ICMP echo;
//   - a DHCP server on the gateway hands out the single guest address;
//   - outbound TCP and UDP from the guest to any address is NATed: each guest
//     connection or UDP flow is terminated in netstack and re-originated
//     from the host with ordinary sockets (the gateway address stands for the
//     host's 127.0.0.1);
//   - host forwards (hostfwd) listen on host addresses and connect, through
//     netstack, to a port of the guest.
//
// Nothing here needs root, a TAP device or raw sockets. Not provided: a DNS
// proxy (Config.DNS only advertises resolvers over DHCP; queries are NATed
// like any UDP flow), IPv6 inside the virtual network, and ICMP to outside
// addresses (only the gateway answers pings; others stay unanswered).
//
// Limits that protect the host: at most 1024 TCP connections and 256 UDP
// flows at once (further ones are refused or dropped), 128 guest connection
// attempts being dialled at once, host dials time out after 10 s, and ARP is
// answered only for the gateway address (the NIC spoofs every other address
// at the IP level for the NAT, but must not claim the guest's own address).
//
// Frames from the guest are hostile input: the virtio-net header and the
// DHCP messages are parsed here with bounds checks; everything else is parsed
// by netstack. Queues are bounded: when the guest does not read, frames for
// it are dropped and counted, never blocking the stack.
package usernet
