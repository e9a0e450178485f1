package devices

// Discard is a Device for ports the guest is known to touch harmlessly, such
// as the POST-code port 0x80 that Linux writes for I/O delays: writes are
// ignored and reads return 0xFF, exactly what the machine does for a port
// with no device. Registering one documents that the port is expected, so a
// machine that counts or logs accesses to unknown ports is not flooded.
//
// Recommendation: treat every unclaimed port as open bus (reads 0xFF, writes
// dropped) without logging each access, register Discard for the expected
// noisy ports, and boot Linux with io_delay=none so port 0x80 is not written
// at all (each write is a full exit to userspace).
type Discard struct{}

// Read implements Device.
func (Discard) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
}

// Write implements Device.
func (Discard) Write(offset uint64, data []byte) {}
