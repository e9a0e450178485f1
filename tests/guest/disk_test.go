package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/machine"
)

// copyImage copies an image from the images directory into a temp dir.
func copyImage(t *testing.T, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(imagesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// debugfsCat returns a file's contents from an ext4 image (e2fsprogs).
func debugfsCat(t *testing.T, image, path string) []byte {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return out
}

// TestDiskSyncedWritesSurviveSIGKILL: the guest finds two disks, checks
// the known content of the first, writes files and syncs; the VMM is then
// killed with SIGKILL and the host checks that the synced files are in the
// image file.
func TestDiskSyncedWritesSurviveSIGKILL(t *testing.T) {
	rw := copyImage(t, "disk.ext4")
	ro := copyImage(t, "rootfs.ext4")
	args := append(stockKernel(t, "blk"), "--disk", "path="+rw, "--disk", "path="+ro+",readonly=on")

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	synced := false
	console, cmd := interactiveGuest(ctx, t, args, func(line string, _ io.Writer) bool {
		synced = strings.Contains(line, "VMM-BLK wrote")
		return !synced
	})
	// Everything the guest synced must already be in the file.
	cmd.Process.Kill()
	cmd.Wait()
	if !synced {
		t.Fatalf("guest never reported its synced writes; console:\n%s", console.String())
	}
	// Replay the journal (the guest's sync committed it) the way the next
	// mount would, then read the files back on the host.
	if out, err := exec.Command("e2fsck", "-fy", rw).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck after SIGKILL: %v\n%s", err, out)
		}
	}
	if got := string(debugfsCat(t, rw, "/guest-note.txt")); got != "written by the vmm guest blk test\n" {
		t.Errorf("guest-note.txt on the host reads %q", got)
	}
	orig, copied := debugfsCat(t, rw, "/data.bin"), debugfsCat(t, rw, "/guest-data.bin")
	if len(orig) == 0 || !bytes.Equal(orig, copied) {
		t.Errorf("guest-data.bin (%d bytes) differs from data.bin (%d bytes)", len(copied), len(orig))
	}
}

// TestDiskReadOnly: a write to a read-only disk fails inside the guest and
// the host file is unchanged.
func TestDiskReadOnly(t *testing.T) {
	rw := copyImage(t, "disk.ext4")
	ro := copyImage(t, "disk.ext4")
	before := fileSHA(t, ro)
	r := bootGuest(t, append(stockKernel(t, "blk-ro"), "--disk", "path="+rw, "--disk", "path="+ro+",readonly=on")...)
	// The device offers VIRTIO_BLK_F_RO, so the guest kernel refuses the
	// write itself (EPERM). A driver that ignores the flag gets
	// VIRTIO_BLK_S_IOERR from the device (devices/virtio/blk tests).
	r.expect(t, exitOK, "VMM-BLK-RO ro=1 write=error writing '/dev/vdb'", "VMM-TEST-RESULT blk-ro PASS")
	if fileSHA(t, ro) != before {
		t.Error("read-only disk image changed on the host")
	}
}

// TestRootFilesystemOnDisk: root=/dev/vda; the initramfs loads the virtio
// modules and switches to the ext4 root on that disk.
func TestRootFilesystemOnDisk(t *testing.T) {
	root := copyImage(t, "rootfs.ext4")
	metricsPath := filepath.Join(t.TempDir(), "metrics.json")
	r := bootGuest(t, append(stockKernel(t, "rootfs", "root=/dev/vda"), "--disk", "path="+root, "--metrics-file", metricsPath)...)
	r.expect(t, exitOK, "VMM-ROOTFS /dev/vda", "VMM-TEST-RESULT rootfs PASS")

	// The metrics document describes this boot.
	b, err := os.ReadFile(metricsPath)
	if err != nil {
		t.Fatal(err)
	}
	var m machine.Report
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("metrics file: %v\n%s", err, b)
	}
	switch {
	case m.StopReason != "poweroff":
		t.Errorf("stop_reason %q, want poweroff", m.StopReason)
	case m.ExitsToInit == 0 || m.ExitsTotal < m.ExitsToInit:
		t.Errorf("exits to init %d, total %d", m.ExitsToInit, m.ExitsTotal)
	case m.StartToInitMs <= m.StartToEntryMs || m.StartToEntryMs <= 0:
		t.Errorf("start -> entry %.1f ms, start -> init %.1f ms", m.StartToEntryMs, m.StartToInitMs)
	case m.GuestRSSKiB <= 0 || m.MaxRSSKiB <= m.GuestRSSKiB:
		t.Errorf("max RSS %d KiB, guest RSS %d KiB", m.MaxRSSKiB, m.GuestRSSKiB)
	case len(m.Disks) != 1 || m.Disks[0].Requests == 0 || m.Disks[0].ReadBytes == 0 || m.Disks[0].BadChains != 0 || m.Disks[0].Failures != 0:
		t.Errorf("disk counters %+v: want one disk that served reads, with no bad chains or failures", m.Disks)
	}
	// With KVM's own statistics, every VM exit is counted, and the exits
	// to the VMM are among them.
	if kvmStats(t) {
		switch {
		case m.KVMExitsToInit < m.ExitsToInit || m.KVMExitsTotal < m.KVMExitsToInit:
			t.Errorf("KVM exits to init %d, total %d; exits to the VMM to init %d", m.KVMExitsToInit, m.KVMExitsTotal, m.ExitsToInit)
		case m.KVMExitStatsToInit["io_exits"] == 0 || m.KVMExitStats["exits"] != m.KVMExitsTotal:
			t.Errorf("KVM exit counters to init %v, at the end %v", m.KVMExitStatsToInit, m.KVMExitStats)
		}
	}
	// The start-up phases, in order, add up to start -> entry.
	var names []string
	sum := 0.0
	for _, p := range m.StartPhases {
		names = append(names, p.Name)
		sum += p.Ms
	}
	if got, want := strings.Join(names, " "), "process kvm memory devices load vcpus vcpus_run"; got != want {
		t.Errorf("start phases %q, want %q", got, want)
	}
	if sum > m.StartToEntryMs+1 || sum < m.StartToEntryMs*0.9 {
		t.Errorf("start phases add up to %.1f ms, start -> entry is %.1f ms", sum, m.StartToEntryMs)
	}
	t.Logf("metrics: %d exits to init (%d in all, KVM's count), %.0f ms to init, overhead %d KiB, disk %+v",
		m.ExitsToInit, m.KVMExitsToInit, m.StartToInitMs, m.MaxRSSKiB-m.GuestRSSKiB, m.Disks)
}

// kvmStats reports whether this host's KVM has binary statistics
// (KVM_CAP_BINARY_STATS_FD, Linux 5.14+), which the metrics then include.
func kvmStats(t *testing.T) bool {
	t.Helper()
	sys, err := kvm.Open("/dev/kvm")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	n, err := sys.CheckExtension(kvm.CapBinaryStatsFD)
	return err == nil && n > 0
}
