# Mode net: placeholder until the VMM has a network device.
. /lib/vmm/lib.sh
vmm_fail "not implemented"
