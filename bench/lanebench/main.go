// Command lanebench compares the VMM's boot time, exits, memory overhead
// and disk throughput with QEMU's. It owns the benchmark protocol of
// docs/benchmarks.md and has two halves:
//
//	lanebench run [flags]       inside the nested lane (images/testbed/run):
//	                            boots every flavour, interleaved, and prints
//	                            the raw measurements as one JSON document
//	lanebench report [flags]    on the host: reads that document, prints the
//	                            table, writes results.json and boot-times.svg
//	lanebench trace [flags]     inside the lane: one boot of each flavour
//	                            with KVM's trace events on; prints its exits
//	                            to the init marker by exit reason
//
// scripts/bench builds it (CGO_ENABLED=0, so it runs in the test host) and
// drives the first two halves; scripts/trace-exits runs trace.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lanebench run|report|trace [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "report":
		err = reportMain(os.Args[2:])
	case "trace":
		err = traceMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want run, report or trace)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanebench:", err)
		os.Exit(1)
	}
}
