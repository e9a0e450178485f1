package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// confinedVMM confines itself as a VMM that may issue TCGETS and
// KVM_GET_REGS, then checks that held descriptors and the runtime still
// work and that files, programs, sockets, other ioctls, signals to other
// processes and executable memory are refused.
func confinedVMM() error {
	disk, err := os.CreateTemp("", "sandbox-disk")
	if err != nil {
		return err
	}
	defer os.Remove(disk.Name())
	defer disk.Close()
	const kvmGetRegs = 0x8090AE81 // bit 31 set: must match as the kernel sees it
	if err := ConfineVMM(VMM{Ioctls: []uintptr{unix.TCGETS, kvmGetRegs}}); err != nil {
		return err
	}
	// A disk it holds: positioned, vectored, synced, hole-punched.
	fd := int(disk.Fd())
	if _, err := unix.Pwritev(fd, [][]byte{[]byte("sector"), make([]byte, 4090)}, 0); err != nil {
		return fmt.Errorf("pwritev: %v", err)
	}
	buf := make([]byte, 6)
	if _, err := unix.Preadv(fd, [][]byte{buf}, 0); err != nil || string(buf) != "sector" {
		return fmt.Errorf("preadv: %q, %v", buf, err)
	}
	if err := unix.Fdatasync(fd); err != nil {
		return fmt.Errorf("fdatasync: %v", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096); err != nil &&
		!errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("fallocate: %v", err)
	}
	// Eventfds (device notifications) are still made at run time.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %v", err)
	}
	unix.Close(efd)
	// The ioctl it names reaches the kernel (a file is no terminal); others do not.
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("TCGETS on a file: %v, want ENOTTY", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetRegs, 0); errno != unix.ENOTTY {
		return fmt.Errorf("KVM_GET_REGS on a file: %v, want ENOTTY", errno)
	}
	if err := unix.IoctlSetPointerInt(0, unix.TIOCSTI, 'x'); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("TIOCSTI: %v, want EPERM", err)
	}
	// Nothing new from the file system, no programs, no sockets.
	if _, err := os.Open("/proc/self/status"); !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("open after confinement: %v, want EPERM", err)
	}
	if err := exec.Command("/bin/true").Run(); err == nil {
		return errors.New("exec after confinement succeeded")
	}
	if _, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("socket: %v, want EPERM", err)
	}
	if _, err := unix.Socket(unix.AF_UNIX, unixStream, 0); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("unix socket without UnixStreams: %v, want EPERM", err)
	}
	// No signals to other processes (it has no helpers), no executable memory.
	if err := unix.Kill(os.Getppid(), 0); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("kill parent: %v, want EPERM", err)
	}
	if _, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("mmap PROT_EXEC: %v, want EPERM", err)
	}
	// New locked threads (vCPUs) and the garbage collector.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
		}()
	}
	wg.Wait()
	runtime.GC()
	return nil
}

// unixStream is the socket type a vsock device's host end makes.
const unixStream = unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC

// listenUnix listens on a Unix socket in a new directory; done removes it.
func listenUnix() (fd int, path string, done func(), err error) {
	dir, err := os.MkdirTemp("", "sandbox-unix")
	if err != nil {
		return -1, "", nil, err
	}
	done = func() { os.RemoveAll(dir) }
	path = dir + "/s"
	if fd, err = unix.Socket(unix.AF_UNIX, unixStream, 0); err == nil {
		if err = unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err == nil {
			err = unix.Listen(fd, 4)
		}
	}
	if err != nil {
		done()
		return -1, "", nil, err
	}
	return fd, path, done, nil
}

// vmmWithUnixStreams listens on a Unix socket, confines itself as a VMM
// with UnixStreams, then connects to it and accepts the connection, as a
// vsock device's host end does; other sockets stay refused.
func vmmWithUnixStreams() error {
	ln, path, done, err := listenUnix()
	if err != nil {
		return err
	}
	defer done()
	if err := ConfineVMM(VMM{UnixStreams: true}); err != nil {
		return err
	}
	c, err := unix.Socket(unix.AF_UNIX, unixStream, 0)
	if err != nil {
		return fmt.Errorf("unix stream socket: %v", err)
	}
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("connect: %v", err)
	}
	a, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept4: %v", err)
	}
	if err := unix.Shutdown(a, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown: %v", err)
	}
	for _, s := range [][2]int{{unix.AF_INET, unixStream}, {unix.AF_UNIX, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC}, {unix.AF_UNIX, unix.SOCK_STREAM}} {
		if _, err := unix.Socket(s[0], s[1], 0); !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("socket(%d, %#x): %v, want EPERM", s[0], s[1], err)
		}
	}
	if _, err := os.Open("/proc/self/status"); !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("open after confinement: %v, want EPERM", err)
	}
	return nil
}

// vmmAcceptingUnix listens on a Unix socket with a connection waiting,
// confines itself as a VMM with AcceptUnix (a control socket) and accepts
// it; making a socket or connecting stays refused.
func vmmAcceptingUnix() error {
	ln, path, done, err := listenUnix()
	if err != nil {
		return err
	}
	defer done()
	c, err := unix.Socket(unix.AF_UNIX, unixStream, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); err != nil {
		return err
	}
	if err := ConfineVMM(VMM{AcceptUnix: true}); err != nil {
		return err
	}
	if _, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC); err != nil {
		return fmt.Errorf("accept4: %v", err)
	}
	if _, err := unix.Socket(unix.AF_UNIX, unixStream, 0); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("unix socket with AcceptUnix only: %v, want EPERM", err)
	}
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("connect with AcceptUnix only: %v, want EPERM", err)
	}
	return nil
}

// vmmWithHelper starts a helper, confines itself as a VMM with helpers,
// and kills and reaps it the way netproc does.
func vmmWithHelper() error {
	helper := exec.Command("sleep", "60")
	if err := helper.Start(); err != nil {
		return err
	}
	if err := ConfineVMM(VMM{Helpers: true}); err != nil {
		return err
	}
	if err := helper.Process.Kill(); err != nil {
		return fmt.Errorf("kill helper: %v", err)
	}
	if err := helper.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		return fmt.Errorf("reap helper: %v, want killed", err)
	}
	return nil
}

// loggedVMM confines itself in log-only mode: a call the filter would
// refuse goes through.
func loggedVMM() error {
	if err := ConfineVMM(VMM{LogOnly: true}); err != nil {
		return err
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("open with a log-only filter: %v", err)
	}
	return f.Close()
}

func TestConfineVMM(t *testing.T)        { runChild(t, "vmm") }
func TestConfineVMMHelper(t *testing.T)  { runChild(t, "vmm-helper") }
func TestConfineVMMLogOnly(t *testing.T) { runChild(t, "vmm-log") }
func TestConfineVMMUnix(t *testing.T)    { runChild(t, "vmm-unix") }
func TestConfineVMMAccept(t *testing.T)  { runChild(t, "vmm-accept") }

func TestVMMRules(t *testing.T) {
	// Ioctls add ioctl; helpers add pidfd_send_signal, waitid, wait4.
	without := len(vmmRules(1, VMM{}))
	with := len(vmmRules(1, VMM{Ioctls: []uintptr{unix.TCSETS}, Helpers: true}))
	if with != without+4 {
		t.Errorf("rules: %d without ioctls and helpers, %d with", without, with)
	}
}
