# Mode panic: crashes the kernel with sysrq-c. What follows (pvpanic event,
# reboot or halt) depends on panic= and the VMM. Reaching the end is a FAIL.
. /lib/vmm/lib.sh

echo 1 >/proc/sys/kernel/sysrq || vmm_fail "cannot enable sysrq"
vmm_say "VMM-PANIC triggering sysrq-c"
echo c >/proc/sysrq-trigger
sleep 5
vmm_fail "kernel survived sysrq-c"
