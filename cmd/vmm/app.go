package main

import (
	"time"

	"github.com/urfave/cli/v2"
)

// Exit statuses of `vmm run` (documented in docs/cli.md and --help).
const (
	exitOK         = 0 // the guest powered off or rebooted, or the user quit with Ctrl-A x
	exitVMMError   = 1 // bad input, or the VMM or KVM failed
	exitGuestCrash = 2 // the guest kernel panicked or triple-faulted
)

func newApp(start time.Time) *cli.App {
	return &cli.App{
		Name:  "vmm",
		Usage: "boot Linux guests in KVM micro-VMs",
		Description: "Exit status of run: 0 guest powered off or rebooted (or Ctrl-A x), " +
			"1 bad input or VMM/KVM failure, 2 guest panic or triple fault.",
		Commands:        []*cli.Command{runCommand(start)},
		HideHelpCommand: true,
		// --disk path=X,readonly=on carries its own commas.
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*cli.Context, error) {},
	}
}
