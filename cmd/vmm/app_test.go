package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"vmm"}, {"vmm", "--help"}, {"vmm", "-h"}, {"vmm", "help"}} {
		var out strings.Builder
		if err := newApp(time.Now(), &out).Run(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "run   boot a kernel") {
			t.Errorf("%v: help lacks the run command:\n%s", args, out.String())
		}
	}
	for _, args := range [][]string{{"vmm", "run", "--help"}, {"vmm", "run", "-h"}, {"vmm", "help", "run"}} {
		var out strings.Builder
		if err := newApp(time.Now(), &out).Run(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		help := out.String()
		for _, want := range []string{"--kernel FILE", "--disk SPEC", "--net SPEC", "--memory SIZE", `(default: "512M")`,
			"(default: 1)", "--metrics-file FILE", "Exit status: 0", "--help, -h"} {
			if !strings.Contains(help, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, help)
			}
		}
		if strings.Contains(help, "cpu-profile") {
			t.Errorf("%v: help shows the hidden --cpu-profile", args)
		}
		for i, line := range strings.Split(help, "\n") {
			if strings.TrimRight(line, " ") != line {
				t.Errorf("%v: line %d has trailing spaces: %q", args, i+1, line)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := map[string][]string{
		`unknown command "frob"`:                {"vmm", "frob"},
		`unknown command "frob"` + " ":          {"vmm", "help", "frob"},
		`unknown option "--kernel"`:             {"vmm", "--kernel", "x"},
		"flag provided but not defined: -bogus": {"vmm", "run", "--bogus"},
		"--kernel is required":                  {"vmm", "run"},
		`unexpected argument "extra"`:           {"vmm", "run", "--kernel", "k", "extra"},
		`invalid value "x" for flag -cpus`:      {"vmm", "run", "--kernel", "k", "--cpus", "x"},
		"flag needs an argument: -memory":       {"vmm", "run", "--kernel", "k", "--memory"},
	}
	for want, args := range cases {
		var out strings.Builder
		err := newApp(time.Now(), &out).Run(args)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err %v, want one line containing %q", args, err, want)
		}
		if code := exitCode(err); code != exitVMMError {
			t.Errorf("%v: exit status %d, want %d", args, code, exitVMMError)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q on stdout", args, out.String())
		}
	}
}

// TestRunFlags checks that flags reach runOptions: both --name VALUE and
// --name=VALUE, and repeated --disk/--net keep their commas.
func TestRunFlags(t *testing.T) {
	dir := t.TempDir()
	k, a, b := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, f := range []string{k, a, b} {
		if err := os.WriteFile(f, append([]byte("\x7fELF"), make([]byte, 4092)...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := &runOptions{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	o.define(fs)
	err := fs.Parse([]string{"--kernel=" + k, "--disk", "path=" + a + ",readonly=on", "-disk", "path=" + b, "--cpus", "2",
		"--net", "user,hostfwd=tcp::8080-:80,mac=52:54:00:01:02:03", "--memory=1G"})
	if err != nil {
		t.Fatal(err)
	}
	want := runOptions{kernel: k, cmdline: "console=ttyS0", cpus: 2, memory: "1G",
		disks: specList{"path=" + a + ",readonly=on", "path=" + b}, nets: specList{"user,hostfwd=tcp::8080-:80,mac=52:54:00:01:02:03"},
		kvm: "/dev/kvm", logLevel: "warn"}
	if !reflect.DeepEqual(*o, want) {
		t.Fatalf("parsed %+v\nwant   %+v", *o, want)
	}
	cfg, _, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryMiB != 1024 || len(cfg.Disks) != 2 || !cfg.Disks[0].ReadOnly || len(cfg.Nets) != 1 || len(cfg.Nets[0].HostForwards) != 1 {
		t.Fatalf("config %+v", cfg)
	}
}

func TestExitCode(t *testing.T) {
	if exitCode(nil) != exitOK {
		t.Error("nil error is not exit 0")
	}
	if exitCode(&exitError{msg: "guest stopped: panic", code: exitGuestCrash}) != exitGuestCrash {
		t.Error("exitError code lost")
	}
}
