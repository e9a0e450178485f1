package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"--mac", "52:54:00:12:34:56", "--hostfwd", "tcp::8080-:80", "--hostfwd", "udp:0.0.0.0:53-:53", "--log-level", "info"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.mac.String() != "52:54:00:12:34:56" || len(o.forwards) != 2 || o.forwards[1].Proto != "udp" || o.level != slog.LevelInfo {
		t.Errorf("parsed %+v", o)
	}
	for _, bad := range [][]string{
		{"--mac", "52:54:00"},
		{"--hostfwd", "tcp::0-:80"},
		{"--log-level", "loud"},
		{"extra"},
	} {
		if _, err := parseArgs(bad, io.Discard); err == nil {
			t.Errorf("parseArgs(%q) accepted", bad)
		}
	}
}

func TestRunWithoutSocket(t *testing.T) {
	// The test process's descriptor 3 is not vmm's packet socket.
	err := run(nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "vmm run --net user") {
		t.Errorf("run = %v", err)
	}
}
