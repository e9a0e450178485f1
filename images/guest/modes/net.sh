# Mode net: bring up eth0 (virtio-net) and exchange data with the host in
# both directions. Everything is driven by the command line:
#
#   vmm.ip=ADDR/BITS vmm.gw=ADDR   static address and default gateway, or
#   vmm.dhcp=1                     udhcpc (the gateway comes from the lease)
#   vmm.net.ping=0                 skip pinging the gateway (default: 3 pings)
#   vmm.net.get=URL                fetch URL with wget ...
#   vmm.net.sha256=HEX             ... and require this SHA-256 of its body
#   vmm.net.serve=1                serve /run/www on port 80 with busybox httpd:
#                                  data.bin (random bytes) and hello.txt
#   vmm.net.size=MIB               size of data.bin, default 1
#   vmm.net.done=URL               then wait until URL answers (the host's "I am
#   vmm.net.wait=S                 done fetching"), at most S seconds (default 60)
#
# (busybox wget -T crashes, hence timeout(1).)
#
# Prints:
#   VMM-NET eth0 mac=<mac> ip=<addr/bits> gw=<gw>
#   VMM-NET ping <gw> ok
#   VMM-NET get <bytes> bytes sha256=<hex> ms=<download time>
#   VMM-NET serving port=80 data.bin bytes=<n> sha256=<hex>
#   VMM-NET host done
#   VMM-NET stats rx_packets=.. rx_length_errors=.. rx_dropped=.. tx_packets=.. tx_dropped=..
#   VMM-NET irqs dev=.. loc=.. res=.. cal=.. tlb=..  (interrupts since boot, all
#     CPUs: the device's, local timer, reschedule, function-call and TLB IPIs)
. /lib/vmm/lib.sh

dev=eth0

n=100
while [ ! -e /sys/class/net/$dev ]; do
	[ "$n" -le 0 ] && vmm_fail "$dev did not appear (virtio_net loaded: $(lsmod | grep -c '^virtio_net'))"
	n=$((n - 1))
	sleep 0.1
done
ip link set lo up
ip link set $dev up || vmm_fail "ip link set $dev up failed"
mac=$(cat /sys/class/net/$dev/address)

if [ "$(vmm_arg vmm.dhcp)" = 1 ]; then
	cat >/run/udhcpc.sh <<'SCRIPT'
#!/bin/sh
case $1 in
bound | renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do
		ip route add default via "$r" dev "$interface" && break
	done
	printf '%s\n' "${router%% *}" >/run/udhcpc.gw
	;;
esac
exit 0
SCRIPT
	chmod 0755 /run/udhcpc.sh
	udhcpc -i $dev -n -q -t 10 -T 1 -s /run/udhcpc.sh >/run/udhcpc.log 2>&1 ||
		vmm_fail "udhcpc got no lease: $(tail -n 2 /run/udhcpc.log | tr '\n' ' ')"
	gw=$(cat /run/udhcpc.gw 2>/dev/null)
	[ -n "$gw" ] || vmm_fail "DHCP lease without a router"
else
	addr=$(vmm_arg vmm.ip) || vmm_fail "need vmm.ip=ADDR/BITS (or vmm.dhcp=1)"
	gw=$(vmm_arg vmm.gw) || vmm_fail "need vmm.gw=ADDR"
	ip addr add "$addr" dev $dev || vmm_fail "ip addr add $addr failed"
	ip route add default via "$gw" dev $dev || vmm_fail "ip route add default via $gw failed"
fi
cidr=$(ip -o -4 addr show dev $dev | awk '{ print $4; exit }')
vmm_say "VMM-NET $dev mac=$mac ip=$cidr gw=$gw"

if [ "$(vmm_arg vmm.net.ping)" != 0 ]; then
	ping -c 3 -W 5 "$gw" >/run/ping.log 2>&1 || vmm_fail "ping $gw: $(tail -n 2 /run/ping.log | tr '\n' ' ')"
	vmm_say "VMM-NET ping $gw ok"
fi

# uptime_ms: /proc/uptime in milliseconds (10 ms resolution).
uptime_ms() {
	awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime
}

if url=$(vmm_arg vmm.net.get); then
	t0=$(uptime_ms)
	timeout 300 wget -q -O /run/got.bin "$url" 2>/run/wget.log || vmm_fail "wget $url: $(cat /run/wget.log | tr '\n' ' ')"
	t1=$(uptime_ms)
	sum=$(sha256sum /run/got.bin | cut -d' ' -f1)
	vmm_say "VMM-NET get $(wc -c </run/got.bin) bytes sha256=$sum ms=$((t1 - t0))"
	if want=$(vmm_arg vmm.net.sha256); then
		[ "$sum" = "$want" ] || vmm_fail "wget $url: sha256 $sum, want $want"
	fi
	rm -f /run/got.bin
fi

if [ "$(vmm_arg vmm.net.serve)" = 1 ]; then
	mkdir -p /run/www
	printf 'hello from the vmm guest\n' >/run/www/hello.txt
	mib=$(vmm_arg vmm.net.size) || mib=1
	case $mib in
	'' | *[!0-9]*) vmm_fail "vmm.net.size=$mib is not a number of MiB" ;;
	esac
	[ "$mib" -ge 1 ] && [ "$mib" -le 256 ] || vmm_fail "vmm.net.size=$mib not in 1..256"
	dd if=/dev/urandom of=/run/www/data.bin bs=65536 count=$((mib * 16)) 2>/dev/null || vmm_fail "making data.bin failed"
	httpd -p 80 -h /run/www || vmm_fail "httpd did not start"
	sum=$(sha256sum /run/www/data.bin | cut -d' ' -f1)
	vmm_say "VMM-NET serving port=80 data.bin bytes=$(wc -c </run/www/data.bin) sha256=$sum"
fi

if done_url=$(vmm_arg vmm.net.done); then
	wait=$(vmm_arg vmm.net.wait) || wait=60
	end=$(($(cut -d. -f1 /proc/uptime) + wait))
	until timeout 10 wget -q -O /dev/null "$done_url" 2>/dev/null; do
		[ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && vmm_fail "host did not report done within ${wait}s"
		sleep 0.5
	done
	vmm_say "VMM-NET host done"
fi

st=/sys/class/net/$dev/statistics
vmm_say "VMM-NET stats rx_packets=$(cat $st/rx_packets) rx_length_errors=$(cat $st/rx_length_errors)" \
	"rx_dropped=$(cat $st/rx_dropped) tx_packets=$(cat $st/tx_packets) tx_dropped=$(cat $st/tx_dropped)"
# irqsum PATTERN: the per-CPU counts of /proc/interrupts rows whose name
# (the first field, or the last for device rows) matches PATTERN, summed.
irqsum() {
	awk -v pat="$1" -v ncpu="$(grep -c '^processor' /proc/cpuinfo)" '
		$1 ~ pat || $NF ~ pat { for (i = 2; i <= ncpu + 1; i++) n += $i }
		END { print n + 0 }' /proc/interrupts
}
virtio=$(basename "$(readlink /sys/class/net/$dev/device)")
vmm_say "VMM-NET irqs dev=$(irqsum "^$virtio(-|\$)") loc=$(irqsum '^LOC:') res=$(irqsum '^RES:')" \
	"cal=$(irqsum '^CAL:') tlb=$(irqsum '^TLB:')"
exit 0
