# Mode vsock: the VMM gives the guest a virtio-vsock device and the host test
# listens on the host side (CID 2). The mode loads the vsock modules (kept out
# of the init's list: /lib/vmm/modules/vsock), waits up to 5 s for
# /dev/vsock and a local CID, then, with /sbin/vsock (guest/vsock.S):
#
#   1. guest->host: sends "hello from the guest\n" to CID 2 port 5000 and
#      expects exactly "hello from the host: hello from the guest\n" back (the
#      host's server answers with that prefix and everything it received);
#   2. a connect to CID 2 port 5999, where nobody listens, must be refused
#      with a reset (vsock send exits 2 with errno 104, ECONNRESET);
#   3. host->guest: `vsock echo 5001` in the foreground: the host connects to
#      the guest's CID on port 5001 once it sees the "listening" line, sends
#      data, reads the echo and closes; the mode waits for that.
#
# Prints:
#   VMM-VSOCK cid=<guest CID>
#   VMM-VSOCK sent ok
#   VMM-VSOCK refused ok
#   vsock: listening on port 5001     (from vsock echo; the host's cue)
#   VMM-VSOCK echo done
. /lib/vmm/lib.sh

# Modules: only the initramfs has them. In the rootfs stage (vmm.root=) the
# mode works only with a kernel that has vsock built in.
vmm_load_mode_modules vsock

# /dev/vsock comes with the vsock core; the CID only once the virtio
# transport has found its device (until then it reads as VMADDR_CID_ANY).
n=50
cid=
until [ -c /dev/vsock ] && cid=$(vsock cid 2>/tmp/cid.log) && [ "$cid" != 4294967295 ]; do
	[ "$n" -le 0 ] && break
	n=$((n - 1))
	sleep 0.1
done
[ -c /dev/vsock ] || vmm_fail "no /dev/vsock after 5 s"
[ -n "$cid" ] || vmm_fail "vsock cid: $(cat /tmp/cid.log)"
[ "$cid" != 4294967295 ] || vmm_fail "no local CID after 5 s: no virtio-vsock device?"
vmm_say "VMM-VSOCK cid=$cid"

printf 'hello from the guest\n' | vsock send 2 5000 >/tmp/reply 2>/tmp/send.log ||
	vmm_fail "vsock send 2 5000 exited $?: $(cat /tmp/send.log)"
printf 'hello from the host: hello from the guest\n' >/tmp/want
cmp -s /tmp/reply /tmp/want ||
	vmm_fail "vsock send 2 5000: reply of $(wc -c </tmp/reply) bytes is not the expected one: $(head -c 80 /tmp/reply)"
vmm_say "VMM-VSOCK sent ok"

status=0
vsock send 2 5999 </dev/null >/tmp/refused 2>&1 || status=$?
# Refused means the host end answered with a reset (ECONNRESET, 104), not
# that the connect timed out.
[ "$status" = 2 ] && grep -q 'errno 104)' /tmp/refused ||
	vmm_fail "vsock send 2 5999 (nobody listening) exited $status, want 2 with errno 104: $(cat /tmp/refused)"
vmm_say "VMM-VSOCK refused ok"

status=0
vsock echo 5001 2>/tmp/echo.log || status=$?
[ "$status" = 0 ] || vmm_fail "vsock echo 5001 exited $status: $(cat /tmp/echo.log)"
vmm_say "VMM-VSOCK echo done"
exit 0
