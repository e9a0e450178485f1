package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// kvmDebugfs is where KVM publishes each VM's counters: a directory
// "<pid>-<fd>" per VM, holding one file per counter, summed over its vCPUs.
// Reading them there counts every VM exit of any VMM, ours and QEMU alike,
// also the exits KVM handled without the VMM (CPUID, MSRs, nested page
// faults, host interrupts).
const kvmDebugfs = "/sys/kernel/debug/kvm"

// ensureKVMDebugfs mounts debugfs if KVM's directory is not there yet. It
// returns why the counters cannot be read, or nil.
func ensureKVMDebugfs() error {
	if _, err := os.Stat(kvmDebugfs); err == nil {
		return nil
	}
	if err := unix.Mount("debugfs", "/sys/kernel/debug", "debugfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount debugfs: %w", err)
	}
	if _, err := os.Stat(kvmDebugfs); err != nil {
		return err
	}
	return nil
}

// kvmExitCounters reads the exit counters ("exits" and "*_exits") of the
// VMs process pid has open; nil if it has none (or debugfs is missing).
// KVM names a VM's directory after the thread that created it, which in
// a Go VMM need not be the main one, so every thread of pid is looked for.
func kvmExitCounters(pid int) map[string]uint64 {
	dirs, _ := filepath.Glob(filepath.Join(kvmDebugfs, "*-*"))
	var out map[string]uint64
	for _, d := range dirs {
		name, _, _ := strings.Cut(filepath.Base(d), "-")
		tid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); err != nil {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(d, "*exits"))
		for _, f := range files {
			name := filepath.Base(f)
			if name != "exits" && !strings.HasSuffix(name, "_exits") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				continue
			}
			if out == nil {
				out = map[string]uint64{}
			}
			out[name] += n
		}
	}
	return out
}
