// Command vmm boots a Linux guest in a KVM micro-VM. See `vmm run --help`.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	start := time.Now()
	err := newApp(start, os.Stdout).Run(os.Args)
	if err == nil {
		return
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "vmm:", msg)
	}
	os.Exit(exitCode(err))
}
