package devices

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"time"
)

// Defaults for the serial console's output buffering.
const (
	DefaultFlushDelay = 10 * time.Millisecond
	DefaultBufferSize = 4096
)

// BufferedOutput batches bytes written one at a time (a UART's transmit
// register) into few writes to the underlying writer: it flushes on a newline,
// when the buffer reaches its size, and otherwise once delay has passed since
// the first unflushed byte, from a one-shot timer armed only while bytes wait.
// No goroutine polls.
//
// Writes to the underlying writer happen with mu held, from the caller's
// goroutine (newline, full buffer, Flush, Close) or the timer's, so they never
// interleave. Write errors cannot be reported to the guest: the bytes are
// dropped, later output is still attempted, and the first error is returned
// by Flush or Close.
type BufferedOutput struct {
	w     io.Writer
	delay time.Duration

	mu     sync.Mutex // protects everything below
	buf    []byte     // pending bytes; cap fixed at construction
	timer  *time.Timer
	armed  bool  // timer scheduled for the bytes in buf
	closed bool  // after Close, bytes are written straight through
	err    error // first write error not yet returned
}

// NewBufferedOutput wraps w (nil discards). delay <= 0 selects
// DefaultFlushDelay and size <= 0 DefaultBufferSize.
func NewBufferedOutput(w io.Writer, delay time.Duration, size int) *BufferedOutput {
	if w == nil {
		w = io.Discard
	}
	if delay <= 0 {
		delay = DefaultFlushDelay
	}
	if size <= 0 {
		size = DefaultBufferSize
	}
	b := &BufferedOutput{w: w, delay: delay, buf: make([]byte, 0, size)}
	b.timer = time.AfterFunc(time.Hour, b.timerFlush)
	b.timer.Stop()
	return b
}

// WriteByte queues c, flushing if it is a newline or fills the buffer.
func (b *BufferedOutput) WriteByte(c byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_, err := b.w.Write([]byte{c})
		return err
	}
	b.buf = append(b.buf, c)
	if c == '\n' || len(b.buf) == cap(b.buf) {
		return b.flushLocked()
	}
	b.armLocked()
	return nil
}

// Write queues p, flushing whenever the buffer fills and at the end if p
// holds a newline.
func (b *BufferedOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	newline := bytes.IndexByte(p, '\n') >= 0
	done := 0
	for done < len(p) {
		k := min(len(p)-done, cap(b.buf)-len(b.buf))
		b.buf = append(b.buf, p[done:done+k]...)
		done += k
		if len(b.buf) == cap(b.buf) {
			if err := b.flushLocked(); err != nil {
				return done, err
			}
		}
	}
	if newline {
		return done, b.flushLocked()
	}
	if len(b.buf) > 0 {
		b.armLocked()
	}
	return done, nil
}

// Flush writes out any pending bytes now.
func (b *BufferedOutput) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// Close flushes pending bytes and stops the timer; later writes go straight
// to the underlying writer. It does not close that writer. It returns the
// first write error seen since the last Flush or Close.
func (b *BufferedOutput) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	b.closed = true
	b.timer.Stop()
	return err
}

func (b *BufferedOutput) timerFlush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A flush may have raced with the timer firing; then buf is empty, or
	// holds newer bytes whose delay has started anyway, and flushing is
	// harmless. The error is kept for Flush or Close.
	b.armed = false
	if err := b.writeLocked(); err != nil && b.err == nil {
		b.err = err
	}
}

// armLocked starts the delay timer for the bytes in buf if not running.
func (b *BufferedOutput) armLocked() {
	if !b.armed && !b.closed {
		b.armed = true
		b.timer.Reset(b.delay)
	}
}

// flushLocked writes buf, disarms the timer and returns the oldest
// unreported error.
func (b *BufferedOutput) flushLocked() error {
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	err := b.writeLocked()
	if b.err != nil {
		if err == nil {
			err = b.err
		} else {
			err = errors.Join(b.err, err)
		}
		b.err = nil
	}
	return err
}

// writeLocked hands buf to the underlying writer and empties it whatever the
// outcome: a console cannot retry.
func (b *BufferedOutput) writeLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}
