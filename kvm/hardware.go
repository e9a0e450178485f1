package kvm

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strings"
)

// HardwareBacked reports whether /dev/kvm runs guests on hardware
// virtualisation (the CPU has vmx or svm and the emulating kvm_pvm backend is
// not loaded), with a reason to show when it is not. Tests use it to decide
// how much guest code they can afford: on an emulating backend every guest
// kernel-mode instruction costs microseconds.
func HardwareBacked() (bool, string) {
	return hardwareBacked("/dev/kvm", "/proc/cpuinfo", "/proc/modules", "/sys/module/kvm_pvm")
}

func hardwareBacked(dev, cpuinfo, modules, pvmSysfs string) (bool, string) {
	if _, err := os.Stat(dev); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, dev + " not present"
		}
		return false, "cannot stat " + dev + ": " + err.Error()
	}
	if mods, err := os.ReadFile(modules); err == nil && moduleLoaded(mods, "kvm_pvm") {
		return false, "kvm_pvm is loaded: /dev/kvm is the emulating PVM backend"
	}
	if _, err := os.Stat(pvmSysfs); err == nil {
		return false, "kvm_pvm is in /sys/module: /dev/kvm is the emulating PVM backend"
	}
	info, err := os.ReadFile(cpuinfo)
	if err != nil {
		return false, "cannot read " + cpuinfo + ": " + err.Error()
	}
	if !cpuHasVirtFlag(info) {
		return false, "the CPU flags in " + cpuinfo + " have neither vmx nor svm"
	}
	return true, "hardware virtualisation (vmx/svm) available"
}

// cpuHasVirtFlag reports whether a "flags" line of /proc/cpuinfo lists vmx
// or svm.
func cpuHasVirtFlag(cpuinfo []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}

// moduleLoaded reports whether /proc/modules lists module name.
func moduleLoaded(modules []byte, name string) bool {
	for line := range strings.Lines(string(modules)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}
