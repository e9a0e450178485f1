package acpi

import "encoding/binary"

// RSDP revision 2 (ACPI 6.5, 5.2.5.3): 36 bytes, pointing at the XSDT.
const (
	rsdpSize     = 36
	rsdpV1Size   = 20 // the part the first checksum covers
	rsdpRevision = 2
)

func buildRSDP(xsdtAddr uint64) []byte {
	le := binary.LittleEndian
	b := make([]byte, rsdpSize)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], oemID)
	b[15] = rsdpRevision
	// RsdtAddress (16) stays 0: there is only an XSDT.
	le.PutUint32(b[20:], rsdpSize)
	le.PutUint64(b[24:], xsdtAddr)
	b[8] = checksum(b[:rsdpV1Size])
	b[32] = checksum(b)
	return b
}
