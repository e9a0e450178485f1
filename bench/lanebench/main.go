// Command lanebench compares the VMM's boot time, exits, memory overhead
// and disk throughput with QEMU's. It owns the benchmark protocol of
// docs/benchmarks.md and has two halves:
//
//	lanebench run [flags]       inside the nested lane (images/testbed/run):
//	                            boots every flavour, interleaved, and prints
//	                            the raw measurements as one JSON document
//	lanebench report [flags]    on the host: reads that document, prints the
//	                            table, writes results.json and boot-times.svg
//
// scripts/bench builds it (CGO_ENABLED=0, so it runs in the test host) and
// drives both halves.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lanebench run|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "report":
		err = reportMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want run or report)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanebench:", err)
		os.Exit(1)
	}
}
