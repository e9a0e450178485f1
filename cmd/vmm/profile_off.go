//go:build !vmmprofile

package main

import "errors"

// startCPUProfile fails: this binary was built without runtime/pprof (see
// profile_on.go).
func startCPUProfile(string) (func(), error) {
	return nil, errors.New("--cpu-profile: this vmm was built without profiling; rebuild with `go build -tags vmmprofile ./cmd/vmm`")
}
