package guest

import (
	"path/filepath"
	"testing"
)

func TestBootBzImageOneCPU(t *testing.T) {
	r := bootGuest(t, stockKernel(t, "boot")...)
	r.expect(t, exitOK, "VMM-INIT-MARKER", "VMM-TEST-RESULT boot PASS")
}

func TestBootBzImageTwoCPUs(t *testing.T) {
	r := bootGuest(t, append(stockKernel(t, "cpus", "vmm.cpus=2"), "--cpus", "2")...)
	r.expect(t, exitOK, "VMM-CPUS 2", "VMM-TEST-RESULT cpus PASS")
}

func TestGuestRebootExitsZero(t *testing.T) {
	r := bootGuest(t, stockKernel(t, "reboot")...)
	r.expect(t, exitOK, "VMM-TEST-RESULT reboot PASS")
}

func TestGuestPanicExitsCrashStatus(t *testing.T) {
	r := bootGuest(t, stockKernel(t, "panic")...)
	r.expect(t, exitGuestCrash, "VMM-INIT-MARKER")
}

func TestBadInitExitsCrashStatus(t *testing.T) {
	r := bootGuest(t, stockKernel(t, "boot", "rdinit=/no-such-init")...)
	r.expect(t, exitGuestCrash, "Kernel panic")
}

func TestBootELFVmlinuxPVH(t *testing.T) {
	args := stockKernel(t, "boot")
	args[1] = filepath.Join(imagesDir(t), "vmlinux")
	r := bootGuest(t, args...)
	r.expect(t, exitOK, "VMM-INIT-MARKER", "VMM-TEST-RESULT boot PASS")
}

// TestEntropyDevice: with --rng the guest's hw_random core picks the
// virtio entropy device and /dev/hwrng delivers random bytes.
func TestEntropyDevice(t *testing.T) {
	r := bootGuest(t, append(stockKernel(t, "rng"), "--rng")...)
	r.expect(t, exitOK, "VMM-RNG current=virtio_rng.0 bytes=256", "VMM-TEST-RESULT rng PASS")
}
