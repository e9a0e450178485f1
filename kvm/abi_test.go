package kvm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// abiValue is one number the Go side must agree on with <linux/kvm.h>:
// a C expression and the Go value it must equal.
type abiValue struct {
	c     string
	goVal uint64
}

// mirrored lists the Go mirrors of kernel structs, with each Go field's C
// name, so field offsets can be compared too.
var mirroredForTest = []struct {
	c      string
	typ    reflect.Type
	size   uintptr
	fields map[string]string
}{
	{"kvm_regs", reflect.TypeFor[Regs](), sizeOf[Regs](), nil},
	{"kvm_sregs", reflect.TypeFor[Sregs](), sizeOf[Sregs](), map[string]string{
		"APICBase": "apic_base", "InterruptBitmap": "interrupt_bitmap"}},
	{"kvm_segment", reflect.TypeFor[Segment](), sizeOf[Segment](), nil},
	{"kvm_dtable", reflect.TypeFor[DTable](), sizeOf[DTable](), nil},
	{"kvm_fpu", reflect.TypeFor[FPU](), sizeOf[FPU](), map[string]string{
		"LastOpcode": "last_opcode", "LastIP": "last_ip", "LastDP": "last_dp"}},
	{"kvm_lapic_state", reflect.TypeFor[LAPICState](), sizeOf[LAPICState](), nil},
	{"kvm_cpuid_entry2", reflect.TypeFor[CPUIDEntry](), sizeOf[CPUIDEntry](), nil},
	{"kvm_cpuid2", reflect.TypeFor[cpuid2Header](), sizeOf[cpuid2Header](), nil},
	{"kvm_msrs", reflect.TypeFor[msrsHeader](), sizeOf[msrsHeader](), map[string]string{"NMSRs": "nmsrs"}},
	{"kvm_irq_routing", reflect.TypeFor[irqRoutingHeader](), sizeOf[irqRoutingHeader](), map[string]string{"Nr": "nr"}},
	{"kvm_userspace_memory_region", reflect.TypeFor[userspaceMemoryRegion](), sizeOf[userspaceMemoryRegion](), map[string]string{
		"GuestPhysAddr": "guest_phys_addr", "MemorySize": "memory_size", "UserspaceAddr": "userspace_addr"}},
	{"kvm_irq_level", reflect.TypeFor[irqLevel](), sizeOf[irqLevel](), nil},
	{"kvm_irqfd", reflect.TypeFor[irqfd](), sizeOf[irqfd](), map[string]string{"ResampleFD": "resamplefd"}},
	{"kvm_ioeventfd", reflect.TypeFor[ioeventfd](), sizeOf[ioeventfd](), nil},
	{"kvm_msi", reflect.TypeFor[msi](), sizeOf[msi](), map[string]string{
		"AddressLo": "address_lo", "AddressHi": "address_hi", "DevID": "devid"}},
	{"kvm_pit_config", reflect.TypeFor[pitConfig](), sizeOf[pitConfig](), nil},
	{"kvm_mp_state", reflect.TypeFor[mpState](), sizeOf[mpState](), map[string]string{"MPState": "mp_state"}},
	{"kvm_xcr", reflect.TypeFor[xcr](), sizeOf[xcr](), nil},
	{"kvm_xcrs", reflect.TypeFor[xcrs](), sizeOf[xcrs](), map[string]string{"NrXCRs": "nr_xcrs"}},
}

// abiValues returns every size, offset, request number and constant the
// package shares with the kernel.
func abiValues() []abiValue {
	var vs []abiValue
	add := func(c string, v uint64) { vs = append(vs, abiValue{c, v}) }
	for _, m := range mirroredForTest {
		add("sizeof(struct "+m.c+")", uint64(m.size))
		for i := range m.typ.NumField() {
			f := m.typ.Field(i)
			if f.Name == "_" {
				continue
			}
			cname, ok := m.fields[f.Name]
			if !ok {
				cname = strings.ToLower(f.Name)
			}
			add(fmt.Sprintf("offsetof(struct %s, %s)", m.c, cname), uint64(f.Offset))
		}
	}
	add("sizeof(struct kvm_cpuid_entry2)", cpuidEntrySize)
	add("sizeof(struct kvm_msr_entry)", msrEntrySize)
	add("offsetof(struct kvm_msr_entry, data)", 8)
	add("sizeof(struct kvm_irq_routing_entry)", irqRoutingEntrySize)
	add("offsetof(struct kvm_irq_routing_entry, type)", irqRoutingTypeOffset)
	add("offsetof(struct kvm_irq_routing_entry, u)", irqRoutingUnion)
	add("offsetof(struct kvm_irq_routing_entry, u.irqchip.pin)", irqRoutingUnion+4)
	add("offsetof(struct kvm_irq_routing_entry, u.msi.address_hi)", irqRoutingUnion+4)
	add("offsetof(struct kvm_irq_routing_entry, u.msi.data)", irqRoutingUnion+8)
	for _, h := range []string{"kvm_cpuid2", "kvm_msrs", "kvm_irq_routing"} {
		add("sizeof(struct "+h+")", flexHeaderSize)
	}

	// The binary statistics file (stats.go).
	add("sizeof(struct kvm_stats_header)", statsHeaderSize)
	add("offsetof(struct kvm_stats_header, name_size)", 4)
	add("offsetof(struct kvm_stats_header, num_desc)", 8)
	add("offsetof(struct kvm_stats_header, desc_offset)", 16)
	add("offsetof(struct kvm_stats_header, data_offset)", 20)
	add("sizeof(struct kvm_stats_desc)", statsDescFixed)
	add("offsetof(struct kvm_stats_desc, size)", 6)
	add("offsetof(struct kvm_stats_desc, offset)", 8)
	add("offsetof(struct kvm_stats_desc, name)", statsDescFixed)
	add("KVM_STATS_TYPE_MASK", statsTypeMask)
	add("KVM_STATS_TYPE_PEAK", statsTypePeak)

	// struct kvm_run
	for _, o := range []struct {
		c string
		v uint64
	}{
		{"immediate_exit", runImmediateExit}, {"exit_reason", runExitReason},
		{"hw", runUnion}, {"kvm_valid_regs", runUnion + runUnionSize},
		{"hw.hardware_exit_reason", runHWExitReason},
		{"io.direction", runIODirection}, {"io.size", runIOSize}, {"io.port", runIOPort},
		{"io.count", runIOCount}, {"io.data_offset", runIODataOffset},
		{"mmio.phys_addr", runMMIOPhysAddr}, {"mmio.data", runMMIOData},
		{"mmio.len", runMMIOLen}, {"mmio.is_write", runMMIOIsWrite},
		{"fail_entry.hardware_entry_failure_reason", runFailReason}, {"fail_entry.cpu", runFailCPU},
		{"internal.suberror", runInternalSuberror}, {"internal.ndata", runInternalNData},
		{"internal.data", runInternalData},
		{"emulation_failure.flags", runEmulationFlags}, {"emulation_failure.insn_size", runEmulationInsnLen},
		{"emulation_failure.insn_bytes", runEmulationInsn},
		{"system_event.type", runSystemEventType}, {"system_event.ndata", runSystemEventNData},
		{"system_event.data", runSystemEventData},
	} {
		add("offsetof(struct kvm_run, "+o.c+")", o.v)
	}

	// Request numbers, built exactly as the call sites build them.
	reqs := []struct {
		c string
		v uintptr
	}{
		{"KVM_GET_API_VERSION", io(nrGetAPIVersion)},
		{"KVM_CREATE_VM", io(nrCreateVM)},
		{"KVM_CHECK_EXTENSION", io(nrCheckExtension)},
		{"KVM_GET_VCPU_MMAP_SIZE", io(nrGetVCPUMmapSize)},
		{"KVM_GET_SUPPORTED_CPUID", iowr(nrGetSupportedCPUID, sizeOf[cpuid2Header]())},
		{"KVM_CREATE_VCPU", io(nrCreateVCPU)},
		{"KVM_SET_USER_MEMORY_REGION", iow(nrSetUserMemoryRegion, sizeOf[userspaceMemoryRegion]())},
		{"KVM_SET_TSS_ADDR", io(nrSetTSSAddr)},
		{"KVM_SET_IDENTITY_MAP_ADDR", iow(nrSetIdentityMapAddr, sizeOf[uint64]())},
		{"KVM_CREATE_IRQCHIP", io(nrCreateIRQChip)},
		{"KVM_IRQ_LINE", iow(nrIRQLine, sizeOf[irqLevel]())},
		{"KVM_SET_GSI_ROUTING", iow(nrSetGSIRouting, sizeOf[irqRoutingHeader]())},
		{"KVM_IRQFD", iow(nrIRQFD, sizeOf[irqfd]())},
		{"KVM_CREATE_PIT2", iow(nrCreatePIT2, sizeOf[pitConfig]())},
		{"KVM_IOEVENTFD", iow(nrIOEventFD, sizeOf[ioeventfd]())},
		{"KVM_RUN", io(nrRun)},
		{"KVM_GET_REGS", ior(nrGetRegs, sizeOf[Regs]())},
		{"KVM_SET_REGS", iow(nrSetRegs, sizeOf[Regs]())},
		{"KVM_GET_SREGS", ior(nrGetSregs, sizeOf[Sregs]())},
		{"KVM_SET_SREGS", iow(nrSetSregs, sizeOf[Sregs]())},
		{"KVM_GET_MSRS", iowr(nrGetMSRs, sizeOf[msrsHeader]())},
		{"KVM_SET_MSRS", iow(nrSetMSRs, sizeOf[msrsHeader]())},
		{"KVM_GET_FPU", ior(nrGetFPU, sizeOf[FPU]())},
		{"KVM_SET_FPU", iow(nrSetFPU, sizeOf[FPU]())},
		{"KVM_GET_LAPIC", ior(nrGetLAPIC, sizeOf[LAPICState]())},
		{"KVM_SET_LAPIC", iow(nrSetLAPIC, sizeOf[LAPICState]())},
		{"KVM_SET_CPUID2", iow(nrSetCPUID2, sizeOf[cpuid2Header]())},
		{"KVM_GET_MP_STATE", ior(nrGetMPState, sizeOf[mpState]())},
		{"KVM_SET_MP_STATE", iow(nrSetMPState, sizeOf[mpState]())},
		{"KVM_SIGNAL_MSI", iow(nrSignalMSI, sizeOf[msi]())},
		{"KVM_GET_XCRS", ior(nrGetXCRS, sizeOf[xcrs]())},
		{"KVM_SET_XCRS", iow(nrSetXCRS, sizeOf[xcrs]())},
		{"KVM_GET_STATS_FD", io(nrGetStatsFD)},
	}
	for _, r := range reqs {
		add(r.c, uint64(r.v))
	}

	for c := Cap(0); c < 512; c++ {
		if n := capName(c); n != "" {
			add(n, uint64(c))
		}
	}
	for _, k := range []struct {
		c string
		v uint64
	}{
		{"KVM_API_VERSION", kvmAPIVersion},
		{"KVM_EXIT_UNKNOWN", exitUnknown}, {"KVM_EXIT_IO", exitIO}, {"KVM_EXIT_HLT", exitHLT},
		{"KVM_EXIT_MMIO", exitMMIO}, {"KVM_EXIT_SHUTDOWN", exitShutdown},
		{"KVM_EXIT_FAIL_ENTRY", exitFailEntry}, {"KVM_EXIT_INTR", exitIntr},
		{"KVM_EXIT_INTERNAL_ERROR", exitInternalError}, {"KVM_EXIT_SYSTEM_EVENT", exitSystemEvent},
		{"KVM_EXIT_IO_IN", exitIOIn}, {"KVM_EXIT_IO_OUT", exitIOOut},
		{"KVM_INTERNAL_ERROR_EMULATION", InternalErrorEmulation},
		{"KVM_INTERNAL_ERROR_SIMUL_EX", InternalErrorSimultaneousExc},
		{"KVM_INTERNAL_ERROR_DELIVERY_EV", InternalErrorDeliveryEvent},
		{"KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON", InternalErrorUnexpectedExitReason},
		{"KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES", emuFlagInsnBytes},
		{"KVM_SYSTEM_EVENT_SHUTDOWN", SystemEventShutdown}, {"KVM_SYSTEM_EVENT_RESET", SystemEventReset},
		{"KVM_SYSTEM_EVENT_CRASH", SystemEventCrash},
		{"KVM_MP_STATE_RUNNABLE", MPStateRunnable}, {"KVM_MP_STATE_UNINITIALIZED", MPStateUninitialized},
		{"KVM_MP_STATE_INIT_RECEIVED", MPStateInitReceived}, {"KVM_MP_STATE_HALTED", MPStateHalted},
		{"KVM_MP_STATE_SIPI_RECEIVED", MPStateSIPIReceived},
		{"KVM_IRQ_ROUTING_IRQCHIP", uint64(RouteIRQChip)}, {"KVM_IRQ_ROUTING_MSI", uint64(RouteMSI)},
		{"KVM_IRQCHIP_PIC_MASTER", IRQChipPICMaster}, {"KVM_IRQCHIP_PIC_SLAVE", IRQChipPICSlave},
		{"KVM_IRQCHIP_IOAPIC", IRQChipIOAPIC}, {"KVM_IOAPIC_NUM_PINS", ioapicPins},
		{"KVM_MEM_READONLY", MemReadonly}, {"KVM_PIT_SPEAKER_DUMMY", pitSpeakerDummy},
		{"KVM_IRQFD_FLAG_DEASSIGN", irqfdFlagDeassign},
		{"KVM_IOEVENTFD_FLAG_PIO", ioeventfdFlagPIO}, {"KVM_IOEVENTFD_FLAG_DEASSIGN", ioeventfdFlagDeassign},
		{"KVM_CPUID_FLAG_SIGNIFCANT_INDEX", CPUIDFlagSignificantIndex},
		{"KVM_MAX_XCRS", maxXCRs}, {"KVM_APIC_REG_SIZE", uint64(len(LAPICState{}.Regs))},
	} {
		add(k.c, k.v)
	}
	return vs
}

// TestABIAgainstKernelHeaders compiles a C program against <linux/kvm.h>
// that prints every value in abiValues, and compares.
func TestABIAgainstKernelHeaders(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed: cannot compare with <linux/kvm.h>")
	}
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		t.Skip("/usr/include/linux/kvm.h missing (apt-get install linux-libc-dev)")
	}
	vs := abiValues()
	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void) {\n")
	for i, v := range vs {
		fmt.Fprintf(&src, "\tprintf(\"%d %%llu\\n\", (unsigned long long)(%s));\n", i, v.c)
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	cfile, bin := filepath.Join(dir, "abi.c"), filepath.Join(dir, "abi")
	if err := os.WriteFile(cfile, src.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-o", bin, cfile).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("abi program: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		idx, val, ok := strings.Cut(sc.Text(), " ")
		i, err1 := strconv.Atoi(idx)
		c, err2 := strconv.ParseUint(val, 10, 64)
		if !ok || err1 != nil || err2 != nil || i < 0 || i >= len(vs) {
			t.Fatalf("bad line %q", sc.Text())
		}
		seen++
		if vs[i].goVal != c {
			t.Errorf("%s = %d (%#x) in C, %d (%#x) in Go", vs[i].c, c, c, vs[i].goVal, vs[i].goVal)
		}
	}
	if seen != len(vs) {
		t.Fatalf("C program printed %d values, want %d", seen, len(vs))
	}
	t.Logf("compared %d sizes, offsets, requests and constants with <linux/kvm.h>", seen)
}

// TestStructSizes checks the mirrored structs' sizes without a compiler
// (values from the x86_64 kernel headers).
func TestStructSizes(t *testing.T) {
	want := map[string]uintptr{
		"kvm_regs": 144, "kvm_sregs": 312, "kvm_segment": 24, "kvm_dtable": 16,
		"kvm_fpu": 416, "kvm_lapic_state": 1024, "kvm_cpuid_entry2": 40, "kvm_cpuid2": 8,
		"kvm_msrs": 8, "kvm_irq_routing": 8, "kvm_userspace_memory_region": 32, "kvm_irq_level": 8,
		"kvm_irqfd": 32, "kvm_ioeventfd": 64, "kvm_msi": 32, "kvm_pit_config": 64,
		"kvm_mp_state": 4, "kvm_xcr": 16, "kvm_xcrs": 392,
	}
	for _, m := range mirroredForTest {
		w, ok := want[m.c]
		if !ok {
			t.Errorf("no expected size for %s", m.c)
			continue
		}
		if m.size != w || m.typ.Size() != w {
			t.Errorf("sizeof %s = %d, want %d", m.c, m.size, w)
		}
	}
	if cpuidEntrySize != sizeOf[CPUIDEntry]() {
		t.Errorf("cpuidEntrySize %d != sizeof CPUIDEntry %d", cpuidEntrySize, sizeOf[CPUIDEntry]())
	}
}

func TestRequestEncoding(t *testing.T) {
	// Values from the kernel headers, written out by hand.
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_RUN", io(nrRun), 0xAE80},
		{"KVM_GET_REGS", ior(nrGetRegs, sizeOf[Regs]()), 0x8090AE81},
		{"KVM_SET_SREGS", iow(nrSetSregs, sizeOf[Sregs]()), 0x4138AE84},
		{"KVM_GET_SUPPORTED_CPUID", iowr(nrGetSupportedCPUID, sizeOf[cpuid2Header]()), 0xC008AE05},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if s := reqSize(iow(nrSetFPU, sizeOf[FPU]())); s != 416 {
		t.Errorf("reqSize = %d, want 416", s)
	}
}

func TestCapString(t *testing.T) {
	if s := CapIRQChip.String(); s != "KVM_CAP_IRQCHIP" {
		t.Errorf("CapIRQChip = %q", s)
	}
	if s := Cap(9999).String(); s != "KVM_CAP_9999" {
		t.Errorf("Cap(9999) = %q", s)
	}
}

func TestRunningRequests(t *testing.T) {
	// The requests a running VM issues, from the kernel headers by hand:
	// a seccomp filter built from RunningRequests must let each through.
	want := []uintptr{
		0xAE80,     // KVM_RUN
		0x4008AE61, // KVM_IRQ_LINE
		0x4020AE76, // KVM_IRQFD
		0x4040AE79, // KVM_IOEVENTFD
		0x4008AE6A, // KVM_SET_GSI_ROUTING
		0x4020AEA5, // KVM_SIGNAL_MSI
		0x8090AE81, // KVM_GET_REGS
		0x8138AE83, // KVM_GET_SREGS
	}
	got := RunningRequests()
	if len(got) != len(want) {
		t.Fatalf("RunningRequests() = %#x, want %#x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("RunningRequests()[%d] = %#x, want %#x", i, got[i], want[i])
		}
	}
}
