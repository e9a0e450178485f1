package kvm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHardwareBacked(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dev := write("kvm", "")
	vmx := write("cpuinfo-vmx", "processor\t: 0\nflags\t\t: fpu vme vmx sse\n")
	svm := write("cpuinfo-svm", "processor\t: 0\nflags\t\t: fpu svm\n")
	none := write("cpuinfo-none", "processor\t: 0\nflags\t\t: fpu hypervisor svmx\n")
	pvm := write("modules-pvm", "kvm_pvm 65536 0 - Live 0x0\nkvm 1 1 kvm_pvm, Live 0x0\n")
	plain := write("modules", "kvm_amd 1 0 - Live 0x0\nkvm 1 1 kvm_amd, Live 0x0\n")
	missing := filepath.Join(dir, "missing")

	for _, c := range []struct {
		name                  string
		dev, cpu, mods, sysfs string
		want                  bool
		reason                string
	}{
		{"vmx", dev, vmx, plain, missing, true, "hardware"},
		{"svm, no /proc/modules", dev, svm, missing, missing, true, "hardware"},
		{"no flag", dev, none, plain, missing, false, "neither vmx nor svm"},
		{"pvm module", dev, vmx, pvm, missing, false, "kvm_pvm"},
		{"pvm in sysfs", dev, svm, missing, dir, false, "kvm_pvm"},
		{"no device", missing, vmx, plain, missing, false, "not present"},
	} {
		got, reason := hardwareBacked(c.dev, c.cpu, c.mods, c.sysfs)
		if got != c.want || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: (%v, %q), want (%v, ...%q...)", c.name, got, reason, c.want, c.reason)
		}
	}
	ok, reason := HardwareBacked()
	t.Logf("this machine: hardware-backed=%v (%s)", ok, reason)
}
