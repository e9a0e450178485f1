package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

const sampleTrace = `# tracer: nop
#
# entries-in-buffer/entries-written: 9/9   #P:2
#
             vmm-128     [001] .....     5.506620: kvm_exit: vcpu 0 reason npf rip 0x1000000 info1 0x0000000200000006 info2 0x0000000000009000 intr_info 0x00000000 error_code 0x00000000
             vmm-128     [001] .....     5.510340: kvm_exit: vcpu 0 reason cpuid rip 0xffffffff81001a4c info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
             vmm-128     [001] .....     5.511884: kvm_exit: vcpu 0 reason cpuid rip 0x7f0012345678 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
             vmm-128     [001] .....     5.600000: kvm_exit: vcpu 0 reason msr rip 0xffffffff81073914 info1 0x0000000000000001 info2 0x0000000000000000 intr_info 0x000000ec error_code 0x00000000
             vmm-128     [001] .....     5.600001: kvm_msr: msr_write 6e0 = 0x2a1c3b4d5e
             vmm-128     [001] .....     5.700000: kvm_exit: vcpu 0 reason io rip 0xffffffff8199f43e info1 0x000000000cf80040 info2 0xffffffff8199f43f intr_info 0x00000000 error_code 0x00000000
             vmm-128     [001] .....     5.700001: kvm_pio: pio_write at 0xcf8 size 4 count 1 val 0x80000000 
             vmm-128     [001] .....     6.506620: kvm_exit: vcpu 0 reason io rip 0x401000 info1 0x0000000004400010 info2 0x0000000000401001 intr_info 0x00000000 error_code 0x00000000
             vmm-128     [001] .....     6.506621: kvm_pio: pio_write at 0x440 size 1 count 1 val 0x1 
             vmm-128     [001] .....     6.600000: kvm_exit: vcpu 0 reason hlt rip 0xffffffff81001000 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
`

func TestSummarizeTrace(t *testing.T) {
	s, err := summarizeTrace(strings.NewReader(sampleTrace), math.Inf(1))
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 6 || s.ByReason["cpuid"] != 2 || s.UserCPUID != 1 || s.ByReason["io"] != 2 || s.ByReason["hlt"] != 0 {
		t.Errorf("summary %+v", s)
	}
	if s.MSRWrites["6e0"] != 1 || s.PortIO["out 0xcf8"] != 1 || len(s.PortIO) != 1 {
		t.Errorf("MSRs %v, ports %v", s.MSRWrites, s.PortIO)
	}
	if d := s.MarkerAt - s.FirstEvent; !s.SawMarker || s.Lost || d < 1.000000 || d > 1.000002 {
		t.Errorf("marker %v at %v, first %v, lost %v", s.SawMarker, s.MarkerAt, s.FirstEvent, s.Lost)
	}
	var out bytes.Buffer
	printTrace(&out, []string{"ours"}, []TraceSummary{s})
	var words []string
	for _, l := range strings.Split(out.String(), "\n") {
		words = append(words, strings.Join(strings.Fields(l), " "))
	}
	text := strings.Join(words, "\n")
	for _, want := range []string{"\nall 6\n", "\nof which user mode 1\n", "MSR writes 6e0 1", "port I/O out 0xcf8 1", "marker port write 1.000 s"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	lost, err := summarizeTrace(strings.NewReader(strings.Replace(sampleTrace, "9/9", "9/12", 1)), math.Inf(1))
	if err != nil || !lost.Lost {
		t.Errorf("overrun buffer not noticed: %v %+v", err, lost)
	}
	if _, err := summarizeTrace(strings.NewReader("# tracer: nop\n"), math.Inf(1)); err == nil {
		t.Error("an empty trace gave no error")
	}
	// Without the port write (a guest whose OUT faulted), the count ends
	// at the marker line's time.
	noPort := strings.Replace(sampleTrace, "pio_write at 0x440", "pio_write at 0x80", 1)
	cut, err := summarizeTrace(strings.NewReader(noPort), 5.65)
	if err != nil || cut.SawMarker || !cut.AtLine || cut.Total != 4 || cut.MarkerAt != 5.65 {
		t.Errorf("cut at the line: %v %+v", err, cut)
	}
}
