package tap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/network"
)

// inNetns locks the test goroutine to its thread and moves that thread to
// a new network namespace, so nothing the test creates touches the host.
// The thread is discarded when the test ends (it stays locked).
func inNetns(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(tunPath); err != nil {
		t.Skipf("no %s: %v", tunPath, err)
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("cannot create a network namespace (needs CAP_SYS_ADMIN): %v", err)
	}
	if err := SetUp("lo"); err != nil {
		t.Fatal(err)
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"tap0", "vmmtap%d", "a", "123456789012345"} {
		if !ValidName(ok) {
			t.Errorf("ValidName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "1234567890123456", "a/b", "a:b", "a b", "a\x00"} {
		if ValidName(bad) {
			t.Errorf("ValidName(%q) = true", bad)
		}
	}
	if _, err := Open(Config{Name: "bad/name"}); err == nil {
		t.Error("Open accepted a bad name")
	}
}

func arpRequest(src network.MAC, srcIP, dstIP [4]byte) []byte {
	f := make([]byte, network.HeaderLen, network.HeaderLen+42)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, src[:]...)
	f = append(f, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	f = append(f, src[:]...)
	f = append(f, srcIP[:]...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, dstIP[:]...)
	return f
}

// TestCreateExchangeDelete: a created TAP answers an ARP request through
// the host stack, with the virtio-net header in front, and vanishes on Close.
func TestCreateExchangeDelete(t *testing.T) {
	inNetns(t)
	tp, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if !tp.Created() || tp.Name() != "vmmtap0" {
		t.Fatalf("Open: name %q created %v", tp.Name(), tp.Created())
	}
	if err := SetIPv4(tp.Name(), netip.MustParsePrefix("10.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if err := tp.SetGuestOffloads(tp.Features()); err != nil {
		t.Fatalf("SetGuestOffloads: %v", err)
	}
	if err := tp.SetGuestOffloads(0); err != nil {
		t.Fatalf("SetGuestOffloads(0): %v", err)
	}
	mac := network.GenerateMAC("test")
	req := arpRequest(mac, [4]byte{10, 0, 2, 15}, [4]byte{10, 0, 2, 2})
	// Split across buffers the way a guest chain may be.
	if err := tp.WriteFrame([][]byte{req[:5], req[5:20], req[20:]}); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 65536+network.HeaderLen+1)
		for {
			n, err := tp.ReadFrame(buf)
			if err != nil {
				close(got)
				return
			}
			f := buf[network.HeaderLen:n]
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 {
				got <- append([]byte(nil), f...)
				return
			}
		}
	}()
	select {
	case f, ok := <-got:
		if !ok {
			t.Fatal("ReadFrame failed")
		}
		if !bytes.Equal(f[0:6], mac[:]) || !bytes.Equal(f[38:42], []byte{10, 0, 2, 15}) {
			t.Fatalf("ARP reply not for us: % x", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ARP reply from the host stack")
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.ReadFrame(make([]byte, 100)); !errors.Is(err, network.ErrClosed) {
		t.Errorf("ReadFrame after Close: %v", err)
	}
	if err := tp.WriteFrame([][]byte{req}); !errors.Is(err, network.ErrClosed) {
		t.Errorf("WriteFrame after Close: %v", err)
	}
	if _, err := net.InterfaceByName("vmmtap0"); err == nil {
		t.Error("vmmtap0 still exists after Close")
	}
}

// TestCloseWakesReader: Close ends a ReadFrame blocked on an idle TAP.
func TestCloseWakesReader(t *testing.T) {
	inNetns(t)
	tp, err := Open(Config{Name: "tapidle"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := tp.ReadFrame(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	tp.Close()
	select {
	case err := <-done:
		if !errors.Is(err, network.ErrClosed) {
			t.Errorf("ReadFrame: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake ReadFrame")
	}
}

// TestAttachExistingAndBridge: a TAP that exists (persistent, as made by
// `ip tuntap add`) is attached to and survives Close; a new TAP joins a bridge.
func TestAttachExistingAndBridge(t *testing.T) {
	inNetns(t)
	// Make a persistent TAP the way an administrator would.
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, _ := unix.NewIfreq("tappersist")
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)

	tp, err := Open(Config{Name: "tappersist"})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Created() {
		t.Error("attached TAP reported as created")
	}
	// A second opener of the same single-queue TAP is refused.
	if _, err := Open(Config{Name: "tappersist"}); err == nil {
		t.Error("second Open of a busy TAP succeeded")
	}
	tp.Close()
	if _, err := net.InterfaceByName("tappersist"); err != nil {
		t.Errorf("pre-existing TAP gone after Close: %v", err)
	}

	if _, err := Open(Config{Bridge: "nobridge"}); err == nil {
		t.Error("Open with a missing bridge succeeded")
	}
	if _, err := net.InterfaceByName("vmmtap0"); err == nil {
		t.Error("failed Open left vmmtap0 behind")
	}
	if err := AddBridge("br0"); err != nil {
		t.Skipf("no bridge support: %v", err)
	}
	tb, err := Open(Config{Bridge: "br0"})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	master, err := os.Readlink("/sys/class/net/" + tb.Name() + "/master")
	if err != nil {
		// sysfs shows the namespace that mounted it; fall back to the
		// bridge's own view.
		t.Logf("readlink master: %v", err)
	} else if !bytes.HasSuffix([]byte(master), []byte("/br0")) {
		t.Errorf("%s master = %s, want br0", tb.Name(), master)
	}
}

// TestTryReadAndWake: TryReadFrame never blocks; Wake ends a blocked
// ReadFrame (and only once), or fails the next read if none is blocked;
// frames are read normally afterwards.
func TestTryReadAndWake(t *testing.T) {
	inNetns(t)
	tp, err := Open(Config{Name: "tapwake"})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if err := SetIPv4(tp.Name(), netip.MustParsePrefix("10.0.3.2/24")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536+network.HeaderLen+1)
	// Drain whatever the kernel sent when the link came up (IPv6 router
	// solicitations and the like); then nothing is queued.
	for i := 0; ; i++ {
		n, err := tp.TryReadFrame(buf)
		if err != nil {
			t.Fatalf("TryReadFrame: %v", err)
		}
		if n == 0 {
			break
		}
		if i > 100 {
			t.Fatal("TryReadFrame keeps returning frames")
		}
	}
	// A pending Wake fails the next read once.
	tp.Wake()
	if _, err := tp.TryReadFrame(buf); !errors.Is(err, network.ErrWoken) {
		t.Fatalf("TryReadFrame after Wake: %v, want ErrWoken", err)
	}
	if _, err := tp.TryReadFrame(buf); err != nil {
		t.Fatalf("second TryReadFrame: %v", err)
	}
	// Wake ends a blocked ReadFrame.
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := tp.ReadFrame(buf); err != nil { // frames the kernel sends on its own are skipped
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	tp.Wake()
	select {
	case err := <-done:
		if !errors.Is(err, network.ErrWoken) {
			t.Fatalf("ReadFrame: %v, want ErrWoken", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not end ReadFrame")
	}
	// After the wake-up, frames flow again: an ARP request to the host
	// is answered.
	mac := network.GenerateMAC("wake")
	req := arpRequest(mac, [4]byte{10, 0, 3, 15}, [4]byte{10, 0, 3, 2})
	if err := tp.WriteFrame([][]byte{req}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := tp.ReadFrame(buf)
		if err != nil {
			t.Fatalf("ReadFrame after Wake: %v", err)
		}
		f := buf[network.HeaderLen:n]
		if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 {
			return
		}
	}
	t.Fatal("no ARP reply after Wake")
}
