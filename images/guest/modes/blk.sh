# Mode blk: /dev/vda is a writable copy of images/out/disk.ext4. Checks the
# known content, writes two files, syncs and reads them back from the device.
# Host-side tests may then SIGKILL the VMM and check the image file:
#   /guest-note.txt holds "$GUEST_NOTE" plus a newline,
#   /guest-data.bin is a copy of /data.bin.
# images/build checks that disk.ext4 matches the EXPECT_* values below.
. /lib/vmm/lib.sh

EXPECT_HELLO='hello from the vmm-dev test disk'
EXPECT_DATA_SIZE=819200
EXPECT_DATA_SHA256=c34efa9ac9b3d67e2deaab10e534a10be312dddcd6a914e2cd850d11545f9714
GUEST_NOTE='written by the vmm guest blk test'

dev=/dev/vda
mnt=/mnt/vda

sha256_of() {
	sha256sum <"$1" | cut -d' ' -f1
}

vmm_wait_block "$dev" 10 || vmm_fail "$dev did not appear"
[ "$(cat /sys/block/vda/ro)" = 0 ] || vmm_fail "$dev is read-only"
mkdir -p "$mnt"
mount -t ext4 -o rw "$dev" "$mnt" || vmm_fail "mount -t ext4 $dev failed"

hello=$(cat "$mnt/hello.txt") || vmm_fail "cannot read hello.txt"
[ "$hello" = "$EXPECT_HELLO" ] || vmm_fail "hello.txt reads '$hello'"
size=$(wc -c <"$mnt/data.bin") || vmm_fail "cannot read data.bin"
[ "$size" -eq "$EXPECT_DATA_SIZE" ] || vmm_fail "data.bin has $size bytes, want $EXPECT_DATA_SIZE"
sum=$(sha256_of "$mnt/data.bin")
[ "$sum" = "$EXPECT_DATA_SHA256" ] || vmm_fail "data.bin sha256 $sum"

printf '%s\n' "$GUEST_NOTE" >"$mnt/guest-note.txt" || vmm_fail "cannot write guest-note.txt"
cp "$mnt/data.bin" "$mnt/guest-data.bin" || vmm_fail "cannot write guest-data.bin"
sync || vmm_fail "sync failed"

# Read back through the device, not the page cache.
echo 3 >/proc/sys/vm/drop_caches
note=$(cat "$mnt/guest-note.txt") || vmm_fail "cannot read back guest-note.txt"
[ "$note" = "$GUEST_NOTE" ] || vmm_fail "guest-note.txt reads back '$note'"
sum=$(sha256_of "$mnt/guest-data.bin")
[ "$sum" = "$EXPECT_DATA_SHA256" ] || vmm_fail "guest-data.bin reads back with sha256 $sum"
vmm_say "VMM-BLK wrote guest-note.txt guest-data.bin"
