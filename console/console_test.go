package console

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestEscapeSequences(t *testing.T) {
	cases := []struct {
		in, want string
		escaped  bool
	}{
		{"hello\r", "hello\r", false},
		{"a\x01\x01b", "a\x01b", false},
		{"a\x01cb", "a\x01cb", false},
		{"ls\x01xrest", "ls", true},
	}
	for _, c := range cases {
		escaped := false
		// One byte at a time: the prefix and its key arrive in separate reads.
		in := NewInput(iotest.OneByteReader(bytes.NewReader([]byte(c.in))), func() { escaped = true })
		got, err := io.ReadAll(in)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want || escaped != c.escaped {
			t.Errorf("%q: got %q escaped=%v, want %q escaped=%v", c.in, got, escaped, c.want, c.escaped)
		}
	}
}
