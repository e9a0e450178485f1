package machine

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPanicWatcherFindsBannerAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	fired := 0
	w := newPanicWatcher(&out, func() { fired++ })
	text := "[ 1.0] KKernel pan" + "ic - not syncing: Attempted to kill init!\nKernel panic - not syncing again\n"
	for i := 0; i < len(text); i += 3 {
		end := min(i+3, len(text))
		w.Write([]byte(text[i:end]))
	}
	if fired != 1 {
		t.Fatalf("fired %d times, want 1", fired)
	}
	if out.String() != text {
		t.Fatalf("output altered: %q", out.String())
	}
	w2 := newPanicWatcher(&out, func() { t.Fatal("fired on innocent text") })
	w2.Write([]byte("Kernel panic_on_oops=0 Kernel pani"))
}

func TestParseMemory(t *testing.T) {
	good := map[string]uint64{"512M": 512, "512": 512, "2G": 2048, "1GiB": 1024, "64MB": 64}
	for in, want := range good {
		if got, err := ParseMemory(in); err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1M", "lots", "1T", "99999999999G", "1.5G"} {
		if _, err := ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) accepted", in)
		}
	}
}

func TestValidateRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notkernel")
	os.WriteFile(notKernel, bytes.Repeat([]byte{0x90}, 4096), 0o644)
	elf := filepath.Join(dir, "vmlinux")
	os.WriteFile(elf, append([]byte("\x7fELF"), make([]byte, 100)...), 0o644)
	base := Config{KernelPath: elf, CPUs: 1, MemoryMiB: 512, KVMPath: filepath.Join(dir, "no-kvm")}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"cpus0", func(c *Config) { c.CPUs = 0 }, "--cpus"},
		{"cpusmany", func(c *Config) { c.CPUs = MaxCPUs + 1 }, "--cpus"},
		{"memsmall", func(c *Config) { c.MemoryMiB = 1 }, "--memory"},
		{"nokernel", func(c *Config) { c.KernelPath = filepath.Join(dir, "missing") }, "no such file"},
		{"notkernel", func(c *Config) { c.KernelPath = notKernel }, "not a Linux kernel"},
		{"noinitrd", func(c *Config) { c.InitrdPath = filepath.Join(dir, "missing") }, "--initrd"},
		{"nodisk", func(c *Config) { c.Disks = []DiskConfig{{Path: filepath.Join(dir, "missing")}} }, "--disk"},
		{"nokvm", func(c *Config) {}, "does not exist"},
	}
	for _, tc := range cases {
		c := base
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one mentioning %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", tc.name, err)
		}
	}
}

// TestNewFailsCleanly: a failure part-way through New returns an error and
// releases what was built, without panicking.
func TestNewFailsCleanly(t *testing.T) {
	m, err := New(Config{KVMPath: filepath.Join(t.TempDir(), "kvm"), CPUs: 1, MemoryMiB: 64}, slog.New(slog.DiscardHandler), time.Now())
	if err == nil || m != nil {
		t.Fatalf("New = %v, %v; want an error", m, err)
	}
}
