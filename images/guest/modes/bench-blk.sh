# Mode bench-blk: sequential O_DIRECT throughput of /dev/vda, for the
# benchmarks (scripts/bench, docs/benchmarks.md). Reads the first
# vmm.bench.mib MiB (default 128, at most the disk size) with 1 MiB requests,
# then writes zeros over the same range. THE DISK'S CONTENT IS DESTROYED: give
# it a scratch image. Prints one line per direction:
#   VMM-BLKBENCH read bytes=<n> seconds=<s>
#   VMM-BLKBENCH write bytes=<n> seconds=<s>
# The seconds come from /proc/uptime around each dd (10 ms resolution).
. /lib/vmm/lib.sh

dev=/dev/vda
vmm_wait_block "$dev" 10 || vmm_fail "$dev did not appear"
[ "$(cat /sys/block/vda/ro)" = 0 ] || vmm_fail "$dev is read-only"

mib=$(vmm_arg vmm.bench.mib) || mib=128
case $mib in '' | *[!0-9]*) vmm_fail "vmm.bench.mib=$mib is not a number" ;; esac
sectors=$(cat /sys/block/vda/size) || vmm_fail "cannot read the size of $dev"
disk_mib=$((sectors / 2048))
[ "$mib" -le "$disk_mib" ] || mib=$disk_mib
[ "$mib" -gt 0 ] || vmm_fail "$dev is smaller than 1 MiB"

# now: /proc/uptime in hundredths of a second.
now() {
	read -r up _ </proc/uptime
	echo "${up%.*}${up#*.}" | sed 's/^0*//;s/^$/0/'
}

# run DIRECTION DD-ARGS...: time one dd and print its line.
run() {
	dir=$1
	shift
	t0=$(now)
	dd bs=1M count="$mib" "$@" 2>"$VMM_STATE/dd.err" || vmm_fail "dd $dir failed: $(tr '\n' ' ' <"$VMM_STATE/dd.err")"
	t1=$(now)
	cs=$((t1 - t0))
	vmm_say "VMM-BLKBENCH $dir bytes=$((mib * 1048576)) seconds=$((cs / 100)).$(printf '%02d' $((cs % 100)))"
}

mkdir -p "$VMM_STATE"
run read if="$dev" of=/dev/null iflag=direct
run write if=/dev/zero of="$dev" oflag=direct
