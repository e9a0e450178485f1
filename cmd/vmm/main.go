// Command vmm boots a Linux guest in a KVM micro-VM. See `vmm run --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

func main() {
	start := time.Now()
	err := newApp(start).Run(os.Args)
	if err == nil {
		return
	}
	code := exitVMMError
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "vmm:", msg)
	}
	os.Exit(code)
}
