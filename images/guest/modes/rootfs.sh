# Mode rootfs: passes if the init runs from rootfs.ext4 mounted by vmm.root=.
. /lib/vmm/lib.sh

[ -e /etc/vmm-rootfs ] || vmm_fail "running from the initramfs, not from rootfs.ext4 (vmm.root= missing?)"
want=$(vmm_arg vmm.root) || want=$(vmm_arg root) || vmm_fail "vmm.root= or root= missing from the command line"
dev=$(awk '$2 == "/" { d = $1 } END { print d }' /proc/mounts)
[ "$dev" = "$want" ] || vmm_fail "/ is mounted from '$dev', expected $want"
vmm_say "VMM-ROOTFS $dev"
