package machine

import (
	"io"
)

// panicBanner is what Linux prints first when it panics (kernel/panic.c).
var panicBanner = []byte("Kernel panic - not syncing")

// panicWatcher passes guest console output through and calls onPanic once
// when the kernel's panic banner goes by. It catches panics that happen
// before the guest has loaded its pvpanic driver (a bad init, say), which
// would otherwise leave the VM hanging or look like a reboot. A guest can
// only use it to stop itself, which it can do anyway.
type panicWatcher struct {
	out     io.Writer
	onPanic func()
	matched int // bytes of panicBanner matched so far
	fired   bool
}

func newPanicWatcher(out io.Writer, onPanic func()) *panicWatcher {
	return &panicWatcher{out: out, onPanic: onPanic}
}

func (w *panicWatcher) Write(p []byte) (int, error) {
	if !w.fired {
		w.scan(p)
	}
	return w.out.Write(p)
}

func (w *panicWatcher) scan(p []byte) {
	for _, b := range p {
		switch {
		case b == panicBanner[w.matched]:
			w.matched++
		case b == panicBanner[0]:
			w.matched = 1
		default:
			w.matched = 0
		}
		if w.matched == len(panicBanner) {
			w.fired = true
			w.onPanic()
			return
		}
	}
}
