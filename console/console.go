// Package console connects the host terminal to the guest's serial port:
// raw mode while the VM runs (restored on exit) and an escape sequence,
// Ctrl-A then x, that quits the VMM. Ctrl-A Ctrl-A sends one Ctrl-A.
package console

import (
	"io"

	"golang.org/x/sys/unix"
)

// EscapeKey is the prefix of the escape sequence (Ctrl-A, as in QEMU).
const EscapeKey = 0x01

// Input filters host keystrokes on their way to the guest and calls
// onEscape when the user types Ctrl-A x. Ctrl-A followed by anything else
// passes both bytes through (Ctrl-A Ctrl-A passes one).
type Input struct {
	r        io.Reader
	onEscape func()
	pending  bool // the previous byte was an unconsumed Ctrl-A
}

// NewInput wraps r. onEscape must not block.
func NewInput(r io.Reader, onEscape func()) *Input {
	return &Input{r: r, onEscape: onEscape}
}

// Read returns guest-bound bytes with escape sequences removed. After the
// escape it returns io.EOF.
func (in *Input) Read(p []byte) (int, error) {
	if len(p) < 2 {
		return 0, io.ErrShortBuffer
	}
	buf := make([]byte, len(p)/2)
	for {
		n, err := in.r.Read(buf)
		out := 0
		for _, b := range buf[:n] {
			if in.pending {
				in.pending = false
				switch b {
				case 'x', 'X':
					if in.onEscape != nil {
						in.onEscape()
					}
					return out, io.EOF
				case EscapeKey:
					p[out] = EscapeKey
					out++
				default:
					p[out], p[out+1] = EscapeKey, b
					out += 2
				}
				continue
			}
			if b == EscapeKey {
				in.pending = true
				continue
			}
			p[out] = b
			out++
		}
		if out > 0 || err != nil {
			return out, err
		}
	}
}

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// MakeRaw puts the terminal fd in raw mode (no echo, no line editing, no
// signals from keys, output post-processing kept so "\n" still returns the
// carriage) and returns a function that restores the previous mode.
func MakeRaw(fd int) (restore func() error, err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() error { return unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// RunningRequests returns the ioctl requests the console issues after
// MakeRaw: restoring the terminal's mode (TCSETS).
func RunningRequests() []uintptr { return []uintptr{unix.TCSETS} }
