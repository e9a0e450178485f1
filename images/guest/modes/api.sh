# Mode api: a guest for the control socket test (vmm run --api-socket). It
# loads the balloon modules (the test runs it with --balloon, so that the
# socket's balloon request has a driver to inflate), says it is ready, then
# prints a tick every 0.2 s until the VM is stopped from outside: ticks stop
# while the VM is paused and come back on resume.
#
# Prints:
#   VMM-API ready
#   VMM-API tick <n>    (n = 1, 2, ...)
. /lib/vmm/lib.sh

vmm_load_mode_modules balloon
vmm_say "VMM-API ready"
i=0
while :; do
	i=$((i + 1))
	vmm_say "VMM-API tick $i"
	sleep 0.2
done
