package guest

import (
	"slices"
	"testing"
)

func TestLaneTripleFaults(t *testing.T) {
	out := `=== RUN   TestA
--- PASS: TestA (1.00s)
=== RUN   TestNetTAP
    net_test.go:196: vmm: status 2 after 1m9s
        vmm: guest stopped: triple-fault (vcpu 0: registers already reset by KVM)
--- FAIL: TestNetTAP (69.27s)
=== RUN   TestB
--- FAIL: TestB (2.00s)
`
	if got := laneTripleFaults(out); got != nil {
		t.Errorf("a failure without a triple fault: %v, want nil (no rerun)", got)
	}
	onlyTF := out[:len(out)-len("=== RUN   TestB\n--- FAIL: TestB (2.00s)\n")]
	if got := laneTripleFaults(onlyTF); !slices.Equal(got, []string{"TestNetTAP"}) {
		t.Errorf("laneTripleFaults = %v, want [TestNetTAP]", got)
	}
	if got := laneTripleFaults("=== RUN   TestA\n--- PASS: TestA (1.00s)\n"); got != nil {
		t.Errorf("no failure: %v", got)
	}
	args := withoutRunFlag([]string{"guest.test", "-test.run=Net", "-test.v", "-test.run=^(TestNetTAP)$"})
	if !slices.Equal(args, []string{"guest.test", "-test.v", "-test.run=^(TestNetTAP)$"}) {
		t.Errorf("withoutRunFlag = %v", args)
	}
}
