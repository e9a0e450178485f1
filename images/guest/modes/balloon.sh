# Mode balloon: the VMM gives the guest a virtio balloon with free page
# reporting (vmm run --balloon). The mode loads virtio_balloon (kept out of
# the init's list: /lib/vmm/modules/balloon), checks that the driver bound
# and negotiated REPORTING and DEFLATE_ON_OOM (feature bits 5 and 2), then
# touches memory and frees it
# again, so that the host can watch the VMM's resident memory fall once the
# guest reports the freed blocks:
#
#   vmm.balloon.mib=N    MiB to touch, as a file in a tmpfs (default 256)
#   vmm.balloon.wait=S   after freeing, how long to wait for the host (default 120)
#
# After "VMM-BALLOON freed" it waits for one line on the console (the host's
# "I have seen it"), then prints "VMM-BALLOON done".
#
# Prints:
#   VMM-BALLOON bound device=<virtioN> reporting=1 deflate_on_oom=1
#   VMM-BALLOON touched mib=<N>
#   VMM-BALLOON freed
#   VMM-BALLOON done
. /lib/vmm/lib.sh

vmm_load_mode_modules balloon

drv=/sys/bus/virtio/drivers/virtio_balloon
n=50
dev=
while [ -z "$dev" ]; do
	for d in "$drv"/virtio*; do
		[ -e "$d" ] && dev=${d##*/}
	done
	[ -n "$dev" ] && break
	n=$((n - 1))
	[ "$n" -gt 0 ] || vmm_fail "virtio_balloon bound no device within 5 s"
	sleep 0.1
done
features=$(cat "/sys/bus/virtio/devices/$dev/features")
reporting=$(printf '%s' "$features" | cut -c6)
[ "$reporting" = 1 ] || vmm_fail "REPORTING (bit 5) not negotiated: features $features"
oom=$(printf '%s' "$features" | cut -c3)
[ "$oom" = 1 ] || vmm_fail "DEFLATE_ON_OOM (bit 2) not negotiated: features $features"
vmm_say "VMM-BALLOON bound device=$dev reporting=$reporting deflate_on_oom=$oom"

mib=$(vmm_arg vmm.balloon.mib) || mib=256
wait=$(vmm_arg vmm.balloon.wait) || wait=120
mkdir -p /run/fill
mount -t tmpfs -o size=$((mib + 16))m tmpfs /run/fill || vmm_fail "mount a tmpfs of $((mib + 16)) MiB failed"
dd if=/dev/zero of=/run/fill/data bs=1M count="$mib" 2>/tmp/dd.log || vmm_fail "filling $mib MiB failed: $(cat /tmp/dd.log)"
vmm_say "VMM-BALLOON touched mib=$mib"
rm /run/fill/data
umount /run/fill
vmm_say "VMM-BALLOON freed"

read -r -t "$wait" _ || vmm_fail "no line from the host within $wait s"
vmm_say "VMM-BALLOON done"
exit 0
