package devices

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBufferedOutputNewline(t *testing.T) {
	w := &syncBuffer{}
	b := NewBufferedOutput(w, time.Hour, 0)
	for _, c := range []byte("hello") {
		if err := b.WriteByte(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, n := w.snapshot(); n != 0 {
		t.Fatalf("%d writes before a newline", n)
	}
	if err := b.WriteByte('\n'); err != nil {
		t.Fatal(err)
	}
	if got, n := w.snapshot(); got != "hello\n" || n != 1 {
		t.Fatalf("got %q in %d writes", got, n)
	}
	b.WriteByte('x')
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, n := w.snapshot(); got != "hello\nx" || n != 2 {
		t.Fatalf("after Close: %q in %d writes", got, n)
	}
	// After Close bytes go straight through.
	b.WriteByte('y')
	if got, _ := w.snapshot(); got != "hello\nxy" {
		t.Fatalf("after Close: %q", got)
	}
}

func TestBufferedOutputFull(t *testing.T) {
	w := &syncBuffer{}
	b := NewBufferedOutput(w, time.Hour, 0)
	for range DefaultBufferSize*3 - 1 {
		b.WriteByte('a')
	}
	if got, n := w.snapshot(); len(got) != 2*DefaultBufferSize || n != 2 {
		t.Fatalf("%d bytes in %d writes, want %d in 2", len(got), n, 2*DefaultBufferSize)
	}
	b.Flush()
	if got, n := w.snapshot(); len(got) != 3*DefaultBufferSize-1 || n != 3 {
		t.Fatalf("after Flush: %d bytes in %d writes", len(got), n)
	}
}

func TestBufferedOutputTimer(t *testing.T) {
	w := &syncBuffer{}
	b := NewBufferedOutput(w, 10*time.Millisecond, 0)
	defer b.Close()
	start := time.Now()
	for _, c := range []byte("prompt$ ") {
		b.WriteByte(c)
	}
	waitFor(t, "the timer flush", func() bool { got, _ := w.snapshot(); return got == "prompt$ " })
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Errorf("flushed after %v, before the delay", d)
	}
	if _, n := w.snapshot(); n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	// The timer re-arms for the next burst.
	b.WriteByte('z')
	waitFor(t, "the second timer flush", func() bool { got, _ := w.snapshot(); return got == "prompt$ z" })
}

func TestBufferedOutputWrite(t *testing.T) {
	w := &syncBuffer{}
	b := NewBufferedOutput(w, time.Hour, 8)
	if n, err := b.Write([]byte("abc")); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if _, n := w.snapshot(); n != 0 {
		t.Fatal("flushed without newline or full buffer")
	}
	b.Write([]byte("defghijklm")) // fills 8, keeps 5
	if got, _ := w.snapshot(); got != "abcdefgh" {
		t.Fatalf("got %q", got)
	}
	b.Write([]byte("n\nop"))
	if got, _ := w.snapshot(); got != "abcdefghijklmn\nop" {
		t.Fatalf("got %q", got)
	}
	long := strings.Repeat("q", 20)
	b.Write([]byte(long))
	b.Close()
	if got, _ := w.snapshot(); got != "abcdefghijklmn\nop"+long {
		t.Fatalf("got %q", got)
	}
}

func TestBufferedOutputErrors(t *testing.T) {
	b := NewBufferedOutput(failWriter{}, time.Millisecond, 0)
	b.WriteByte('a')
	time.Sleep(20 * time.Millisecond) // the timer's write fails
	if err := b.Close(); !errors.Is(err, errWrite) {
		t.Fatalf("Close = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := b.WriteByte('\n'); !errors.Is(err, errWrite) {
		t.Fatalf("WriteByte = %v", err)
	}
}
