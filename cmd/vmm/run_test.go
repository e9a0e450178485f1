package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/machine"
)

func TestParseDisk(t *testing.T) {
	good := map[string]machine.DiskConfig{
		"path=a.img":             {Path: "a.img"},
		"path=a.img,readonly=on": {Path: "a.img", ReadOnly: true},
		"readonly=off,path=b":    {Path: "b"},
	}
	for in, want := range good {
		got, err := parseDisk(in)
		if err != nil || got != want {
			t.Errorf("parseDisk(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a.img", "path=", "path=a,readonly=maybe", "path=a,cache=none"} {
		if _, err := parseDisk(in); err == nil {
			t.Errorf("parseDisk(%q) accepted", in)
		}
	}
}

func TestParseVsock(t *testing.T) {
	got, err := parseVsock("cid=3,path=/run/v.sock")
	if err != nil || got != (vsock.Config{GuestCID: 3, Path: "/run/v.sock"}) {
		t.Errorf("parseVsock = %+v, %v", got, err)
	}
	for _, in := range []string{"", "cid=3", "path=/x", "cid=x,path=/x", "cid=-1,path=/x", "cid=3,path=/x,port=1", "3"} {
		if _, err := parseVsock(in); err == nil {
			t.Errorf("parseVsock(%q) accepted", in)
		}
	}
}

func TestParseSeccomp(t *testing.T) {
	for in, want := range map[string]seccompMode{"on": seccompOn, "log": seccompLog, "off": seccompOff, "false": seccompOff} {
		if got, err := parseSeccomp(in); err != nil || got != want {
			t.Errorf("parseSeccomp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "ON", "audit"} {
		if _, err := parseSeccomp(in); err == nil {
			t.Errorf("parseSeccomp(%q) accepted", in)
		}
	}
}

// TestBadInputOneLine runs the real binary: each bad invocation must print
// one line on stderr and exit 1 before touching KVM.
func TestBadInputOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "vmm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, append([]byte("\x7fELF"), make([]byte, 64)...), 0o644)
	disk := filepath.Join(dir, "disk.img")
	os.WriteFile(disk, make([]byte, 4096), 0o644)
	nokvm := "--kvm=" + filepath.Join(dir, "kvm")
	cases := [][]string{
		{"run", "--kernel", filepath.Join(dir, "missing"), nokvm},
		{"run", "--kernel", "/etc/hostname", nokvm},
		{"run", "--kernel", kernel, "--cpus", "0", nokvm},
		{"run", "--kernel", kernel, "--memory", "lots", nokvm},
		{"run", "--kernel", kernel, "--disk", "path=" + disk + ",readonly=maybe", nokvm},
		{"run", "--kernel", kernel, "--disk", "path=" + disk + ",readonly=on", nokvm}, // no /dev/kvm
		{"run", "--kernel", kernel, "extra-arg", nokvm},
		{"run", "--kernel", kernel, "--seccomp", "maybe", nokvm},
		{"run", "--kernel", kernel, "--vsock", "cid=2,path=" + filepath.Join(dir, "v.sock"), nokvm},
		{"run", "--kernel", kernel, "--vsock", "cid=3,path=" + filepath.Join(dir, "nodir", "v.sock"), nokvm},
	}
	for _, args := range cases {
		cmd := exec.Command(bin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != exitVMMError {
			t.Errorf("%v: err %v, want exit status %d", args, err, exitVMMError)
		}
		msg := strings.TrimSuffix(stderr.String(), "\n")
		if msg == "" || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "vmm: ") {
			t.Errorf("%v: stderr %q, want one line starting with vmm:", args, stderr.String())
		}
	}
}
