#!/usr/bin/env bash
# The WAN interface goes down and up, then is deleted and created again
# under the same name (new ifindex, as after a PPPoE redial): ispmon must
# re-attach by name within 2 s and keep counting, counters never going back;
# on SIGTERM nothing of it is left on the interface.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }

BIN=$PWD/ispmon
A=ispmra$$ # ispmon's namespace, interface wan0 192.0.2.1
B=ispmrb$$ # the other end, 192.0.2.2
TMP=$(mktemp -d)
PID=

cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	ip netns del "$A" 2>/dev/null
	ip netns del "$B" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

a() { ip netns exec "$A" "$@"; }
b() { ip netns exec "$B" "$@"; }

link_up() {
	a ip link add wan0 type veth peer name peer0 netns "$B" &&
		a ip addr add 192.0.2.1/24 dev wan0 && a ip link set wan0 up &&
		b ip addr add 192.0.2.2/24 dev peer0 && b ip link set peer0 up
}
ip netns add "$A" && ip netns add "$B" || exit 1
a ip link set lo up
b ip link set lo up
link_up || exit 1

ip netns exec "$A" "$BIN" --iface wan0 --listen 127.0.0.1:18001 --interval 100ms --no-ping --no-speedtest \
	>/dev/null 2>"$TMP/err" &
PID=$!
for _ in $(seq 1 50); do a curl -sf -o /dev/null http://127.0.0.1:18001/metrics && break; sleep 0.1; done

pkts() { # download packets as /metrics shows them, after a fresh read
	sleep 0.3
	a curl -sf http://127.0.0.1:18001/metrics |
		awk '$1 == "ispmon_passive_packets_total{direction=\"download\"}" { print $2 }'
}
pings() { b ping -q -n -c 20 -i 0.02 -W 1 192.0.2.1 >/dev/null; }
ours() { a tc filter show dev wan0 ingress 2>/dev/null | grep -c 'name tc_ingress'; }

pings
p1=$(pkts)
check "counting on wan0: ${p1:-none} download packets after 20 pings" [ "${p1:-0}" -ge 20 ]

a ip link set wan0 down
sleep 1
a ip link set wan0 up
b ip link set peer0 up
sleep 0.5
check "link down/up: filter still on wan0" [ "$(ours)" = 1 ]
pings
p2=$(pkts)
check "link down/up: still counting (${p1:-?} -> ${p2:-?})" [ "${p2:-0}" -ge $((${p1:-0} + 20)) ]

old=$(a cat /sys/class/net/wan0/ifindex)
a ip link del wan0
sleep 0.7
link_up || exit 1
new=$(a cat /sys/class/net/wan0/ifindex)
t0=$(date +%s.%N)
while [ "$(ours)" != 1 ]; do
	if awk -v t0="$t0" -v t="$(date +%s.%N)" 'BEGIN { exit !(t - t0 > 5) }'; then break; fi
	sleep 0.05
done
dt=$(awk -v t0="$t0" -v t="$(date +%s.%N)" 'BEGIN { printf "%.2f", t - t0 }')
check "recreated wan0 (ifindex $old -> $new): re-attached after ${dt}s (<= 2 s)" \
	awk -v d="$dt" -v o="$(ours)" 'BEGIN { exit !(o == 1 && d <= 2) }'
check "logged the loss and the new attachment" \
	bash -c "grep -q 'interface gone' $TMP/err && grep -q 'msg=\"attached\" iface=wan0 ifindex=$new ' $TMP/err"
pings
p3=$(pkts)
check "still counting after the redial, never back (${p2:-?} -> ${p3:-?})" [ "${p3:-0}" -ge $((${p2:-0} + 20)) ]
w=$(a curl -sf http://127.0.0.1:18001/metrics | grep -o 'ispmon_wan_interface_info{iface="wan0",ifindex="[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
check "/metrics shows the new ifindex ($w)" [ "$w" = "$new" ]

kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
check "exits 0 on SIGTERM ($rc)" [ "$rc" = 0 ]
check "no filter or clsact left on the new wan0" bash -c "[ \$(ip netns exec $A tc filter show dev wan0 ingress | wc -l) = 0 ] && ! ip netns exec $A tc qdisc show dev wan0 | grep -q clsact"
check "no error logged" bash -c "! grep -q 'level=error' $TMP/err"
tap_exit
