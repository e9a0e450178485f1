# Helpers for the guest init and the test modes (busybox sh). Sourced, not run.
#
# The mode contract (see images/README.md): /modes/<name>.sh runs in its own
# shell; exit status 0 means PASS, anything else FAIL. A mode states why it
# failed with vmm_fail and may ask for a reboot (or for no shutdown) with
# vmm_after. The init prints the VMM-TEST-RESULT line and shuts down.

VMM_STATE=/run/vmm
VMM_CMDLINE=$(cat /proc/cmdline 2>/dev/null)

# vmm_arg NAME: print the value of NAME= from the kernel command line (last
# occurrence wins); status 1 if absent.
vmm_arg() {
	_vmm_found=1
	set -f
	for _vmm_w in $VMM_CMDLINE; do
		case $_vmm_w in
		"$1"=*)
			_vmm_val=${_vmm_w#*=}
			_vmm_found=0
			;;
		esac
	done
	set +f
	[ "$_vmm_found" = 0 ] && printf '%s\n' "$_vmm_val"
	return $_vmm_found
}

# vmm_fail REASON...: record why the mode failed and end it with status 1.
vmm_fail() {
	mkdir -p "$VMM_STATE"
	printf '%s\n' "$*" | tr '\n' ' ' | sed 's/ *$//' >"$VMM_STATE/reason"
	exit 1
}

# vmm_after poweroff|reboot|none: what the init does after the result line.
vmm_after() {
	mkdir -p "$VMM_STATE"
	case $1 in
	poweroff | reboot | none) printf '%s\n' "$1" >"$VMM_STATE/after" ;;
	*) vmm_fail "vmm_after: unknown action '$1'" ;;
	esac
}

# vmm_wait_block DEV SECONDS: wait until block device DEV exists.
vmm_wait_block() {
	_vmm_n=$(($2 * 10))
	while [ ! -b "$1" ]; do
		[ "$_vmm_n" -le 0 ] && return 1
		_vmm_n=$((_vmm_n - 1))
		sleep 0.1
	done
}

# vmm_load_mode_modules MODE: load the modules only MODE uses (in the
# initramfs, /lib/vmm/modules/MODE with its load-order; images/build), skipping
# those already loaded. Elsewhere (a root file system has no modules) it says
# so and assumes they are built in; the mode then finds out.
vmm_load_mode_modules() {
	_vmm_dir=/lib/vmm/modules/$1
	if [ ! -f "$_vmm_dir/load-order" ]; then
		vmm_say "VMM-INIT no $_vmm_dir/load-order here; assuming the $1 modules are built in"
		return 0
	fi
	while read -r _vmm_m; do
		[ -n "$_vmm_m" ] || continue
		[ -d "/sys/module/$_vmm_m" ] && continue
		_vmm_ko=$_vmm_dir/$_vmm_m.ko
		[ -f "$_vmm_ko" ] || _vmm_ko=/lib/modules/$(uname -r)/$_vmm_m.ko
		insmod "$_vmm_ko" 2>/tmp/insmod.log || vmm_fail "insmod $_vmm_m failed: $(cat /tmp/insmod.log)"
	done <"$_vmm_dir/load-order"
}

# vmm_say WORDS...: one line on the console.
vmm_say() {
	printf '%s\n' "$*"
}
