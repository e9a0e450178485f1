package netproc

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/network"
)

// maxMessage holds the largest header+frame either side sends, plus one
// byte to tell a full message from a truncated one.
const maxMessage = network.HeaderLen + 65535 + 1

// Serve is the child side: it sends Ready on the socket at descriptor fd
// (normally ChildFD) and then moves frames between it and be until the VMM
// closes its end (nil) or either side fails. It closes be before it
// returns.
func Serve(fd int, be network.Backend) error {
	conn, err := network.NewFrameConn(fd, "netproc socket")
	if err != nil {
		be.Close()
		return err
	}
	defer conn.Close()
	if err := conn.WriteFrame([][]byte{[]byte(Ready)}); err != nil {
		be.Close()
		return fmt.Errorf("netproc: send ready: %w", err)
	}
	toGuest := make(chan error, 1)
	go func() { toGuest <- pump(be, conn) }()
	fromGuest := pump(conn, be)
	be.Close() // ends the other pump
	conn.Close()
	other := <-toGuest
	for _, err := range []error{fromGuest, other} {
		if err != nil && !errors.Is(err, network.ErrClosed) {
			return err
		}
	}
	return nil
}

// frameReader and frameWriter are the halves of a Backend pump uses.
type frameReader interface {
	ReadFrame(buf []byte) (int, error)
}

type frameWriter interface {
	WriteFrame(bufs [][]byte) error
}

// pump copies frames from r to w until either fails. A frame w refuses
// for any reason but being closed is dropped.
func pump(r frameReader, w frameWriter) error {
	buf := make([]byte, maxMessage)
	for {
		n, err := r.ReadFrame(buf)
		switch {
		case errors.Is(err, network.ErrWoken):
			continue
		case err != nil:
			return err
		}
		if err := w.WriteFrame([][]byte{buf[:n]}); errors.Is(err, network.ErrClosed) {
			return err
		}
	}
}
