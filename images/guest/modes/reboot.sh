# Mode reboot: PASS, then the init reboots (reboot -f) instead of powering off.
. /lib/vmm/lib.sh
vmm_after reboot
