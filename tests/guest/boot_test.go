package guest

import (
	"path/filepath"
	"regexp"
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

// TestBootBzImageGuestDecompress: with --guest-decompress the bzImage
// decompresses itself in the guest, as it did before vmm unpacked it.
func TestBootBzImageGuestDecompress(t *testing.T) {
	r := bootGuest(t, append(stockKernel(t, "boot"), "--guest-decompress")...)
	r.expect(t, exitOK, "VMM-INIT-MARKER", "VMM-TEST-RESULT boot PASS")
}

// TestKASLR: vmm unpacks the Debian bzImage and places the kernel at random
// as the kernel's own decompressor would: the kernel runs away from its
// link-time addresses, and with nokaslr exactly at them. (A random boot
// lands on both link-time addresses once in about 100 000 boots.)
func TestKASLR(t *testing.T) {
	where := regexp.MustCompile(`VMM-KASLR text=([0-9a-f]+) code=([0-9a-f]+)`)
	place := func(extra ...string) (text, code string) {
		r := bootGuest(t, stockKernel(t, "kaslr", extra...)...)
		r.expect(t, exitOK, "VMM-TEST-RESULT kaslr PASS")
		m := where.FindStringSubmatch(r.console)
		if m == nil {
			t.Fatalf("no VMM-KASLR line; console:\n%s", r.console)
		}
		return m[1], m[2]
	}
	text, code := place("nokaslr")
	if text != "ffffffff81000000" || code != "01000000" {
		t.Fatalf("nokaslr: _text at %s, kernel code at %s; want the link-time ffffffff81000000 and 01000000", text, code)
	}
	text, code = place()
	if text == "ffffffff81000000" && code == "01000000" {
		t.Fatalf("KASLR: the kernel runs at its link-time addresses")
	}
	t.Logf("KASLR: _text at %s, kernel code at %s", text, code)
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
