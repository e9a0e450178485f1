package machine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/network"
	"github.com/vmm-dev/vmm/network/tap"
)

// Limits on what a Config may ask for.
const (
	MinMemory = 64 << 20  // below this the Debian kernel cannot unpack an initramfs
	MaxMemory = 256 << 30 // keeps the e820 map and page tables simple
	MaxCPUs   = 64        // one MADT, APIC IDs below the IOAPIC's
)

// DiskConfig is one virtio-blk disk.
type DiskConfig struct {
	Path     string
	ReadOnly bool
}

// Network backends of a NetConfig.
const (
	NetTAP  = "tap"
	NetUser = "user"
)

// MaxNets bounds the virtio-net devices of one VM.
const MaxNets = 8

// NetConfig is one virtio-net device and its host backend.
type NetConfig struct {
	Backend string // NetTAP or NetUser
	// TAP names an existing TAP to attach to; empty creates vmmtapN, which
	// disappears when the VMM exits. Only for NetTAP.
	TAP string
	// Bridge, if set, is a bridge a created TAP joins. Only for NetTAP.
	Bridge string
	// MAC is the guest's address; zero means generated (network.GenerateMAC
	// seeded with the backend, its index and the TAP name).
	MAC network.MAC
	// HostForwards are host -> guest port forwards. Only for NetUser.
	HostForwards []network.Forward
}

// Config is everything needed to build and run one VM. The CLI fills it in;
// Validate checks it before any KVM object is created.
type Config struct {
	KVMPath    string // usually /dev/kvm
	KernelPath string // bzImage or ELF vmlinux with a PVH note
	InitrdPath string // optional
	Cmdline    string
	CPUs       int
	MemoryMiB  uint64
	Disks      []DiskConfig
	Nets       []NetConfig
	// RNG adds a virtio entropy device (virtio-rng) fed by the host's
	// getrandom(2).
	RNG bool
	// Balloon adds a virtio balloon for free page reporting: memory the
	// guest frees goes back to the host.
	Balloon bool
	// Vsock, if set, adds a virtio socket device whose host end is Unix
	// sockets at Vsock.Path (see package vsock).
	Vsock *vsock.Config
	// GuestDecompress leaves a bzImage to decompress itself in the guest
	// instead of vmm unpacking it (boot.OpenBzImage).
	GuestDecompress bool

	Console io.Writer // guest serial output; nil discards
	Input   io.Reader // guest serial input; nil for none

	// MetricsPath, if set, receives a JSON summary (exit counts, boot
	// times) when the VM stops. New creates (or truncates) it.
	MetricsPath string

	// UsernetPath is the user-mode network program (cmd/vmm-usernet) that
	// --net user runs in a child process; empty means UsernetProgram in
	// the directory of the running executable.
	UsernetPath string
}

// UsernetProgram is the file name of the user-mode network program, looked
// for next to the VMM's executable.
const UsernetProgram = "vmm-usernet"

// usernetPath resolves Config.UsernetPath.
func (c *Config) usernetPath() (string, error) {
	if c.UsernetPath != "" {
		return c.UsernetPath, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find %s next to this executable: %w", UsernetProgram, err)
	}
	return filepath.Join(filepath.Dir(exe), UsernetProgram), nil
}

// ParseMemory parses a size such as "512M", "2G", "1024" (MiB) into MiB.
func ParseMemory(s string) (uint64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := uint64(1)
	switch {
	case strings.HasSuffix(t, "G"):
		mult, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("memory size %q is not a size like 512M or 2G", s)
	}
	if n > MaxMemory>>20/mult {
		return 0, fmt.Errorf("memory size %q is larger than %d GiB", s, MaxMemory>>30)
	}
	return n * mult, nil
}

// KernelFormat names how a kernel image is booted.
type KernelFormat int

const (
	KernelBzImage KernelFormat = iota + 1 // 64-bit Linux boot protocol
	KernelELFPVH                          // ELF vmlinux entered through its PVH note
)

// SniffKernel reads the first bytes of a kernel file and says which loader
// applies. It does not validate the image; the loader does.
func SniffKernel(r io.ReaderAt) (KernelFormat, error) {
	var hdr [0x206]byte
	n, err := r.ReadAt(hdr[:], 0)
	if n >= 4 && bytes.Equal(hdr[:4], []byte("\x7fELF")) {
		return KernelELFPVH, nil
	}
	if n == len(hdr) && hdr[0x1FE] == 0x55 && hdr[0x1FF] == 0xAA && string(hdr[0x202:0x206]) == "HdrS" {
		return KernelBzImage, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return 0, errors.New("not a Linux kernel (neither a bzImage nor an ELF vmlinux)")
}

// Validate checks the configuration without creating anything: files exist
// and are readable, the kernel is a kernel, sizes and counts are in range.
// Each error is one line meant for the user.
func (c *Config) Validate() error {
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return fmt.Errorf("--cpus %d: must be between 1 and %d", c.CPUs, MaxCPUs)
	}
	if c.MemoryMiB<<20 < MinMemory || c.MemoryMiB<<20 > MaxMemory {
		return fmt.Errorf("--memory %dM: must be between %dM and %dG", c.MemoryMiB, MinMemory>>20, MaxMemory>>30)
	}
	if c.KernelPath == "" {
		return errors.New("--kernel is required")
	}
	k, err := os.Open(c.KernelPath)
	if err != nil {
		return fmt.Errorf("--kernel: %w", err)
	}
	defer k.Close()
	if _, err := SniffKernel(k); err != nil {
		return fmt.Errorf("--kernel %s: %w", c.KernelPath, err)
	}
	if c.InitrdPath != "" {
		f, err := os.Open(c.InitrdPath)
		if err != nil {
			return fmt.Errorf("--initrd: %w", err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return fmt.Errorf("--initrd: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("--initrd %s: not a regular file", c.InitrdPath)
		}
		if uint64(fi.Size()) >= c.MemoryMiB<<20/2 {
			return fmt.Errorf("--initrd %s: %d MiB does not fit in half of guest memory", c.InitrdPath, fi.Size()>>20)
		}
	}
	if strings.IndexByte(c.Cmdline, 0) >= 0 {
		return errors.New("--cmdline contains a NUL byte")
	}
	for i, d := range c.Disks {
		mode := os.O_RDWR
		if d.ReadOnly {
			mode = os.O_RDONLY
		}
		f, err := os.OpenFile(d.Path, mode, 0)
		if err != nil {
			return fmt.Errorf("--disk %d: %w", i, err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return fmt.Errorf("--disk %d: %w", i, err)
		}
		if fi.Size() < 512 {
			return fmt.Errorf("--disk %s: smaller than one 512-byte sector", d.Path)
		}
	}
	if len(c.Nets) > MaxNets {
		return fmt.Errorf("--net: %d devices, at most %d", len(c.Nets), MaxNets)
	}
	for i, n := range c.Nets {
		if err := n.validate(); err != nil {
			return fmt.Errorf("--net %d: %w", i, err)
		}
		if n.Backend == NetUser {
			p, err := c.usernetPath()
			if err != nil {
				return fmt.Errorf("--net %d: %w", i, err)
			}
			if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				return fmt.Errorf("--net %d: user-mode networking runs in %s, which is missing or not executable (make build puts it next to vmm)", i, p)
			}
		}
	}
	if c.Vsock != nil {
		if err := c.Vsock.Validate(); err != nil {
			return fmt.Errorf("--vsock: %w", err)
		}
		if st, err := os.Stat(filepath.Dir(c.Vsock.Path)); err != nil || !st.IsDir() {
			return fmt.Errorf("--vsock: the directory of %s does not exist", c.Vsock.Path)
		}
	}
	kvmPath := c.KVMPath
	if kvmPath == "" {
		kvmPath = "/dev/kvm"
	}
	f, err := os.OpenFile(kvmPath, os.O_RDWR, 0)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%s does not exist: is KVM enabled (modprobe kvm_intel or kvm_amd)?", kvmPath)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("%s: permission denied: add your user to the kvm group", kvmPath)
		}
		return fmt.Errorf("%s: %w", kvmPath, err)
	}
	f.Close()
	return nil
}

func (n NetConfig) validate() error {
	if !n.MAC.IsZero() && n.MAC[0]&1 != 0 {
		return fmt.Errorf("mac %v is a multicast address", n.MAC)
	}
	switch n.Backend {
	case NetTAP:
		if n.TAP != "" && !tap.ValidName(n.TAP) {
			return fmt.Errorf("tap %q is not a valid interface name", n.TAP)
		}
		if n.Bridge != "" && !tap.ValidName(n.Bridge) {
			return fmt.Errorf("bridge %q is not a valid interface name", n.Bridge)
		}
		if len(n.HostForwards) > 0 {
			return errors.New("hostfwd needs the user backend")
		}
	case NetUser:
		if n.TAP != "" || n.Bridge != "" {
			return errors.New("tap= and bridge= need the tap backend")
		}
	default:
		return fmt.Errorf("unknown backend %q (want tap or user)", n.Backend)
	}
	return nil
}
