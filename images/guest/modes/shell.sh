# Mode shell: an interactive shell on the console, restarted when it exits.
# The guest never powers off by itself; type "poweroff -f" to stop it.
. /lib/vmm/lib.sh

vmm_say "VMM-SHELL ready; type 'poweroff -f' to stop the guest"
while :; do
	setsid cttyhack sh -l
done
