# Mode cpus: prints "VMM-CPUS <n>" (processors in /proc/cpuinfo) and passes
# if n equals vmm.cpus= from the kernel command line.
. /lib/vmm/lib.sh

n=$(grep -c '^processor' /proc/cpuinfo)
vmm_say "VMM-CPUS $n"
want=$(vmm_arg vmm.cpus) || vmm_fail "vmm.cpus= missing from the command line"
case $want in
'' | *[!0-9]*) vmm_fail "vmm.cpus=$want is not a number" ;;
esac
[ "$n" -eq "$want" ] || vmm_fail "guest sees $n CPUs, vmm.cpus=$want"
