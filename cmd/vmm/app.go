package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit statuses of `vmm run` (documented in --help).
const (
	exitOK         = 0 // the guest powered off or rebooted, or the user quit with Ctrl-A x
	exitVMMError   = 1 // bad input, or the VMM or KVM failed
	exitGuestCrash = 2 // the guest kernel panicked or triple-faulted
)

const appDescription = "Exit status of run: 0 guest powered off or rebooted (or Ctrl-A x), " +
	"1 bad input or VMM/KVM failure, 2 guest panic or triple fault."

// The command line is parsed with the standard flag package, not a CLI
// framework. urfave/cli (used before) renders help with text/template, whose
// calls to reflect.Value.MethodByName make the linker keep every exported
// method of every type in the program: 4 MB more binary, of which 1.9 MiB
// was resident in every VM process (docs/benchmarks.md, Memory). Flags are
// written --name VALUE or --name=VALUE (one dash works too); repeatable
// flags (--disk, --net) never split on commas.

// exitError carries the message and exit status of a failed command.
type exitError struct {
	msg  string
	code int
}

func (e *exitError) Error() string { return e.msg }

// exitCode is the process exit status for err (nil: success).
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitVMMError
}

func usageError(format string, args ...any) error {
	return &exitError{msg: fmt.Sprintf(format, args...), code: exitVMMError}
}

// command is one subcommand of vmm.
type command struct {
	name        string
	usage       string // one line, for vmm --help
	description string // for vmm CMD --help
	// flags defines the command's flags on fs and returns the action that
	// runs once they are parsed.
	flags func(fs *flag.FlagSet) func(args []string) error
	// hidden flags are left out of the help.
	hidden []string
}

// app is the vmm command line: its subcommands and where help goes.
type app struct {
	stdout   io.Writer
	commands []command
}

func newApp(start time.Time, stdout io.Writer) *app {
	return &app{stdout: stdout, commands: []command{runCommand(start)}}
}

// Run runs the command named by args (os.Args: args[0] is the program).
func (a *app) Run(args []string) error {
	if len(args) > 0 {
		args = args[1:]
	}
	if len(args) == 0 {
		a.help()
		return nil
	}
	switch name := args[0]; name {
	case "-h", "-help", "--help":
		a.help()
		return nil
	case "help":
		if len(args) == 1 {
			a.help()
			return nil
		}
		c, err := a.lookup(args[1])
		if err != nil {
			return err
		}
		c.help(a.stdout)
		return nil
	default:
		c, err := a.lookup(name)
		if err != nil {
			return err
		}
		return c.run(args[1:], a.stdout)
	}
}

func (a *app) lookup(name string) (*command, error) {
	for i := range a.commands {
		if a.commands[i].name == name {
			return &a.commands[i], nil
		}
	}
	if strings.HasPrefix(name, "-") {
		return nil, usageError("unknown option %q before the command (see vmm --help)", name)
	}
	return nil, usageError("unknown command %q (see vmm --help)", name)
}

func (a *app) help() {
	w := a.stdout
	fmt.Fprintf(w, "NAME:\n   vmm - boot Linux guests in KVM micro-VMs\n\n")
	fmt.Fprintf(w, "USAGE:\n   vmm command [command options]\n   vmm help command\n\n")
	fmt.Fprintf(w, "DESCRIPTION:\n   %s\n\n", appDescription)
	fmt.Fprintf(w, "COMMANDS:\n")
	for _, c := range a.commands {
		fmt.Fprintf(w, "   %-5s %s\n", c.name, c.usage)
	}
}

// flagSet builds the command's flags without printing anything itself:
// errors come back to run, help goes where help asks.
func (c *command) flagSet() (*flag.FlagSet, func([]string) error) {
	fs := flag.NewFlagSet("vmm "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	action := c.flags(fs)
	return fs, action
}

func (c *command) run(args []string, stdout io.Writer) error {
	fs, action := c.flagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.help(stdout)
			return nil
		}
		return usageError("%s: %v (see vmm %s --help)", c.name, err, c.name)
	}
	if fs.NArg() > 0 {
		return usageError("%s: unexpected argument %q (flags only)", c.name, fs.Arg(0))
	}
	return action(fs.Args())
}

// help prints the command's description and its flags, one a line, with
// their argument names (from `backquotes` in the usage) and defaults.
func (c *command) help(w io.Writer) {
	fs, _ := c.flagSet()
	fmt.Fprintf(w, "NAME:\n   vmm %s - %s\n\n", c.name, c.usage)
	fmt.Fprintf(w, "USAGE:\n   vmm %s [command options]\n\n", c.name)
	if c.description != "" {
		fmt.Fprintf(w, "DESCRIPTION:\n")
		for _, line := range strings.Split(c.description, "\n") {
			if line == "" {
				fmt.Fprintln(w)
				continue
			}
			fmt.Fprintf(w, "   %s\n", line)
		}
		fmt.Fprintln(w)
	}
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		for _, h := range c.hidden {
			if f.Name == h {
				return
			}
		}
		arg, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if arg != "" {
			left += " " + arg
		}
		var def any
		if g, ok := f.Value.(flag.Getter); ok {
			def = g.Get()
		}
		switch def := def.(type) {
		case string:
			if def != "" {
				usage += fmt.Sprintf(" (default: %q)", def)
			}
		case int:
			usage += fmt.Sprintf(" (default: %d)", def)
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	rows = append(rows, row{"--help, -h", "show help"})
	width = max(width, len(rows[len(rows)-1].left))
	fmt.Fprintf(w, "OPTIONS:\n")
	for _, r := range rows {
		fmt.Fprintf(w, "   %-*s  %s\n", width, r.left, r.right)
	}
}
