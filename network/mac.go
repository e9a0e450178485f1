package network

import (
	"crypto/sha256"
	"fmt"
	"net"
)

// MAC is an Ethernet address.
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsZero reports whether m is 00:00:00:00:00:00 (meaning "not set").
func (m MAC) IsZero() bool { return m == MAC{} }

// ParseMAC parses "52:54:00:12:34:56". It refuses multicast addresses and
// the all-zero address, which a NIC cannot use as its own.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("mac %q: want six hex bytes like 52:54:00:12:34:56", s)
	}
	var m MAC
	copy(m[:], hw)
	if m[0]&1 != 0 {
		return MAC{}, fmt.Errorf("mac %q: a multicast address cannot be a NIC's", s)
	}
	if m.IsZero() {
		return MAC{}, fmt.Errorf("mac %q: all zeros", s)
	}
	return m, nil
}

// GenerateMAC derives a stable, locally administered unicast address from
// seed: the first six bytes of SHA-256(seed) with the multicast bit cleared
// and the locally-administered bit set (IEEE 802, bits 0 and 1 of the first
// byte). The VMM seeds it with the backend and its index (and the TAP name
// when one is given), so a VM gets the same address on every boot with the
// same --net options, and two NICs of one VM differ.
func GenerateMAC(seed string) MAC {
	sum := sha256.Sum256([]byte("vmm-dev mac\x00" + seed))
	var m MAC
	copy(m[:], sum[:6])
	m[0] = m[0]&^1 | 2
	return m
}
