# Mode blk-ro: /dev/vdb is attached read-only. Reading must work and a write
# must fail (EIO from the device, or EPERM/EACCES if the VMM advertises
# VIRTIO_BLK_F_RO and the kernel refuses it first). If vdb is an ext4 file
# system with a hello.txt (disk.ext4), that file is checked too.
# Prints "VMM-BLK-RO ro=<sysfs ro> write=<error>".
. /lib/vmm/lib.sh

EXPECT_HELLO='hello from the vmm-dev test disk'
dev=/dev/vdb
mnt=/mnt/vdb

vmm_wait_block "$dev" 10 || vmm_fail "$dev did not appear"
ro=$(cat /sys/block/vdb/ro)
dd if="$dev" of=/tmp/vdb-block0 bs=4096 count=1 iflag=direct 2>/dev/null || vmm_fail "reading $dev failed"
[ "$(wc -c </tmp/vdb-block0)" -eq 4096 ] || vmm_fail "short read from $dev"

# Write back the block just read, so a VMM that wrongly accepts it changes nothing.
if err=$(dd if=/tmp/vdb-block0 of="$dev" bs=4096 count=1 oflag=direct conv=notrunc,fsync 2>&1); then
	vmm_fail "write to read-only $dev succeeded (sysfs ro=$ro)"
fi
err=$(printf '%s\n' "$err" | grep -m1 -v '^[0-9]* records' | sed 's/^dd: //')
vmm_say "VMM-BLK-RO ro=$ro write=${err:-failed}"

mkdir -p "$mnt"
if mount -t ext4 -o ro,noload "$dev" "$mnt" 2>/dev/null; then
	hello=$EXPECT_HELLO
	[ -e "$mnt/hello.txt" ] && hello=$(cat "$mnt/hello.txt")
	umount "$mnt"
	[ "$hello" = "$EXPECT_HELLO" ] || vmm_fail "hello.txt on $dev reads '$hello'"
fi
exit 0
