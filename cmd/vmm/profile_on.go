//go:build vmmprofile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startCPUProfile starts a CPU profile written to path; the returned
// function stops it and closes the file. It is meant for measurement runs
// (go tool pprof bin/vmm FILE), not for production use: it is built only
// with -tags vmmprofile, because linking runtime/pprof alone adds about
// 0.35 MiB to every VMM's resident memory (docs/benchmarks.md, Memory).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
