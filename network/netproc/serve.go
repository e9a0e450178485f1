package netproc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/network"
)

// maxMessage holds the largest header+frame either side sends, plus one
// byte to tell a full message from a truncated one.
const maxMessage = network.HeaderLen + network.MaxFrameLen + 1

// Serve is the child side: it sends Ready with be's offload features on
// the socket at descriptor fd (normally ChildFD) and then moves frames
// between it and be, passing the VMM's SetGuestOffloads on to be, until the
// VMM closes its end (nil) or either side fails. It closes be before it
// returns.
func Serve(fd int, be network.Backend) error {
	conn, err := network.NewFrameConn(fd, "netproc socket")
	if err != nil {
		be.Close()
		return err
	}
	defer conn.Close()
	ready := binary.LittleEndian.AppendUint64([]byte(Ready), be.Features()&network.OffloadFeatures)
	if err := conn.WriteFrame([][]byte{ready}); err != nil {
		be.Close()
		return fmt.Errorf("netproc: send ready: %w", err)
	}
	toGuest := make(chan error, 1)
	go func() { toGuest <- pump(be, conn, nil) }()
	fromGuest := pump(conn, be, be.SetGuestOffloads)
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
// for any reason but being closed is dropped. With a non-nil setOffloads,
// control messages are passed to it instead; its error ends the pump.
func pump(r frameReader, w frameWriter, setOffloads func(uint64) error) error {
	buf := make([]byte, maxMessage)
	for {
		n, err := r.ReadFrame(buf)
		switch {
		case errors.Is(err, network.ErrWoken):
			continue
		case err != nil:
			return err
		}
		if f, ok := decodeOffloads(buf[:n]); ok && setOffloads != nil {
			if err := setOffloads(f); err != nil {
				return fmt.Errorf("netproc: %w", err)
			}
			continue
		}
		if err := w.WriteFrame([][]byte{buf[:n]}); errors.Is(err, network.ErrClosed) {
			return err
		}
	}
}
