package acpi

import "encoding/binary"

// XSDT (ACPI 6.5, 5.2.8): the header and 64-bit pointers to the other
// tables except the DSDT, which the FADT points to.
const xsdtRevision = 1

func buildXSDT(tables ...uint64) []byte {
	le := binary.LittleEndian
	t := newTable("XSDT", headerSize+8*len(tables), xsdtRevision)
	for i, a := range tables {
		le.PutUint64(t[headerSize+8*i:], a)
	}
	return finish(t)
}
