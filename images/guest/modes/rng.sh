# Mode rng: the VMM gives the guest a virtio entropy device (vmm run --rng).
# The kernel's hw_random core must pick it as the current source, and
# /dev/hwrng must deliver bytes that are not all zero.
# Prints "VMM-RNG current=<source> bytes=<n>".
. /lib/vmm/lib.sh

sys=/sys/class/misc/hw_random
i=0
while [ ! -e "$sys/rng_current" ] || ! grep -q virtio "$sys/rng_current"; do
	i=$((i + 1))
	[ "$i" -le 50 ] || vmm_fail "no virtio hw_random source (available: $(cat "$sys/rng_available" 2>/dev/null))"
	sleep 0.1
done
current=$(cat "$sys/rng_current")
dd if=/dev/hwrng of=/tmp/rng bs=64 count=4 2>/dev/null || vmm_fail "reading /dev/hwrng failed"
n=$(wc -c </tmp/rng)
[ "$n" -eq 256 ] || vmm_fail "read $n bytes from /dev/hwrng, want 256"
dd if=/dev/zero of=/tmp/zero bs=256 count=1 2>/dev/null
cmp -s /tmp/rng /tmp/zero && vmm_fail "/dev/hwrng gave 256 zero bytes"
vmm_say "VMM-RNG current=$current bytes=$n"
