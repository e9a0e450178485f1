package devices

import "sync"

// I8042Size is the keyboard controller's window. Register one I8042 at port
// 0x60 with this size: offset 0 is the data port (0x60) and offset 4 the
// status/command port (0x64). Offsets 1..3 (ports 0x61..0x63) behave as
// unclaimed: reads return 0xFF, writes are ignored; port 0x61 is served by
// KVM's in-kernel PIT before it could reach userspace anyway.
const I8042Size = 5

// i8042 status register bits.
const (
	kbcStatusOBF     = 0x01 // output buffer full
	kbcStatusSYS     = 0x04 // system flag, mirrors CTR bit 2
	kbcStatusCMD     = 0x08 // last write was to the command port
	kbcStatusUnlock  = 0x10 // keyboard not inhibited (Linux warns "Keylock active" if clear)
	kbcCTRSys        = 0x04
	kbcCTRKbdDisable = 0x10
	kbcCTRAuxDisable = 0x20
)

// i8042 controller commands (written to port 0x64).
const (
	kbcReadCTR      = 0x20
	kbcWriteCTR     = 0x60
	kbcAuxDisable   = 0xA7
	kbcAuxEnable    = 0xA8
	kbcAuxTest      = 0xA9
	kbcSelfTest     = 0xAA
	kbcKbdTest      = 0xAB
	kbcKbdDisable   = 0xAD
	kbcKbdEnable    = 0xAE
	kbcReadOutPort  = 0xD0
	kbcWriteOutPort = 0xD1
	kbcWriteKbdBuf  = 0xD2
	kbcWriteAuxBuf  = 0xD3
	kbcWriteAux     = 0xD4
	kbcPulseFirst   = 0xF0 // 0xF0..0xFF pulse the output lines whose bit is 0; bit 0 is CPU reset
)

// I8042 is the part of a PC keyboard controller a guest uses to reset the
// machine, plus enough of the command set that Linux's i8042 probe finishes
// at once instead of waiting out timeouts: it reads and writes the command
// byte (CTR), runs self-tests, and learns there is no auxiliary (mouse) port.
// No keyboard is attached: bytes written to the data port for the keyboard
// are dropped, and the controller raises no interrupts.
//
// Reset: command 0xFE (or any 0xF0..0xFF pulse with bit 0 clear), or command
// 0xD1 followed by an output-port value with bit 0 clear, calls onReset. The
// status register never shows the input buffer full, so Linux's reboot path
// (wait for status bit 1 clear, then write 0xFE to 0x64) proceeds at once.
type I8042 struct {
	onReset func()

	mu       sync.Mutex // protects the fields below
	ctr      byte       // controller command byte
	outPort  byte       // output port: bit 0 reset line (1 = running), bit 1 A20
	obuf     byte       // output buffer, read from the data port
	obufFull bool
	lastCmd  bool // last write went to the command port
	pending  byte // command waiting for its data byte, or 0
}

// NewI8042 returns a controller that calls onReset (may be nil) when the
// guest asks for a CPU reset.
func NewI8042(onReset func()) *I8042 {
	return &I8042{
		onReset: onReset,
		// As firmware leaves it: keyboard interrupt on, system flag set
		// (POST passed), scancode translation on, no aux port.
		ctr:     0x01 | kbcCTRSys | kbcCTRAuxDisable | 0x40,
		outPort: 0x03,
	}
}

// Read implements Device.
func (k *I8042) Read(offset uint64, data []byte) {
	k.mu.Lock()
	for i := range data {
		data[i] = k.readLocked(offset + uint64(i))
	}
	k.mu.Unlock()
}

func (k *I8042) readLocked(off uint64) byte {
	switch off {
	case 0:
		if !k.obufFull {
			return 0
		}
		k.obufFull = false
		return k.obuf
	case 4:
		st := byte(kbcStatusUnlock)
		if k.obufFull {
			st |= kbcStatusOBF
		}
		if k.ctr&kbcCTRSys != 0 {
			st |= kbcStatusSYS
		}
		if k.lastCmd {
			st |= kbcStatusCMD
		}
		return st
	default:
		return 0xFF
	}
}

// Write implements Device.
func (k *I8042) Write(offset uint64, data []byte) {
	reset := false
	k.mu.Lock()
	for i, v := range data {
		if k.writeLocked(offset+uint64(i), v) {
			reset = true
		}
	}
	k.mu.Unlock()
	if reset && k.onReset != nil {
		k.onReset()
	}
}

// writeLocked applies one byte and reports whether it asked for a reset.
func (k *I8042) writeLocked(off uint64, v byte) bool {
	switch off {
	case 0:
		k.lastCmd = false
		cmd := k.pending
		k.pending = 0
		switch cmd {
		case kbcWriteCTR:
			k.ctr = v
		case kbcWriteOutPort:
			k.outPort = v
			return v&0x01 == 0
		case kbcWriteKbdBuf, kbcWriteAuxBuf:
			// With no aux port the byte comes back as keyboard data (status
			// bit 5 clear), which Linux's AUX_LOOP probe takes as "no aux".
			k.load(v)
		}
		// cmd 0 (a byte for the absent keyboard) and kbcWriteAux: dropped.
		return false
	case 4:
		k.lastCmd = true
		k.pending = 0
		return k.command(v)
	default:
		return false
	}
}

// command runs a controller command and reports whether it asked for a reset.
func (k *I8042) command(c byte) bool {
	switch c {
	case kbcReadCTR:
		k.load(k.ctr)
	case kbcWriteCTR, kbcWriteOutPort, kbcWriteKbdBuf, kbcWriteAuxBuf, kbcWriteAux:
		k.pending = c
	case kbcAuxDisable:
		k.ctr |= kbcCTRAuxDisable
	case kbcAuxEnable:
		k.ctr &^= kbcCTRAuxDisable
	case kbcAuxTest:
		k.load(0x02) // "clock line stuck high": there is no aux port
	case kbcSelfTest:
		k.ctr |= kbcCTRSys
		k.load(0x55)
	case kbcKbdTest:
		k.load(0x00)
	case kbcKbdDisable:
		k.ctr |= kbcCTRKbdDisable
	case kbcKbdEnable:
		k.ctr &^= kbcCTRKbdDisable
	case kbcReadOutPort:
		k.load(k.outPort)
	default:
		if c >= kbcPulseFirst {
			return c&0x01 == 0
		}
		// Other commands are ignored.
	}
	return false
}

func (k *I8042) load(v byte) {
	k.obuf = v
	k.obufFull = true
}
