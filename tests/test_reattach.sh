#!/usr/bin/env bash
# The WAN interface goes down and up, then is deleted and created again
# under the same name (new ifindex, as after a PPPoE redial): ispmon must
# re-attach by name within 2 s and keep counting, counters never going back;
# on SIGTERM nothing of it is left on the interface.
# All of it runs with the capabilities ispmon keeps after setup (README,
# "Privileges"): every thread has CAP_NET_ADMIN only, in the effective,
# permitted and bounding sets, and no_new_privs; pings (a raw socket opened
# before the drop) go on through the redial. After exit, bpftool no longer
# knows any of the programs and maps the process held (by id: other
# ispmon instances may run meanwhile).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
. tests/lib/bpfobjs.sh

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

ip netns exec "$A" "$BIN" --iface wan0 --listen 127.0.0.1:18001 --interval 100ms --no-speedtest \
	--ping-target 192.0.2.2 --ping-interval 200ms >/dev/null 2>"$TMP/err" &
PID=$!
for _ in $(seq 1 100); do grep -q 'capabilities dropped' "$TMP/err" && break; sleep 0.1; done
for _ in $(seq 1 50); do a curl -sf -o /dev/null http://127.0.0.1:18001/metrics && break; sleep 0.1; done

# caps_ok: every thread of ispmon has exactly CAP_NET_ADMIN (bit 12).
caps_ok() {
	local t n=0
	for t in /proc/$PID/task/*; do
		awk '/^Cap(Eff|Prm|Bnd):/ && $2 != "0000000000001000" { bad = 1 }
		     /^Cap(Inh|Amb):/ && $2 != "0000000000000000" { bad = 1 }
		     /^NoNewPrivs:/ && $2 != 1 { bad = 1 }
		     END { exit bad }' "$t/status" || return 1
		n=$((n + 1))
	done
	[ "$n" -ge 2 ]
}
check "logged the capabilities kept: cap_net_admin" grep -q 'msg="capabilities dropped" kept=cap_net_admin$' "$TMP/err"
check "every thread ($(ls /proc/$PID/task | wc -l)): CapEff = CapPrm = CapBnd = cap_net_admin, no inheritable or ambient, no_new_privs" caps_ok
pongs() { a curl -sf http://127.0.0.1:18001/metrics | awk '$1 == "ispmon_ping_received_total{target=\"192.0.2.2\"}" { print $2 }'; }

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
q1=$(pongs)
sleep 1
q2=$(pongs)
check "pings answered after the redial, capabilities dropped (${q1:-?} -> ${q2:-?} replies)" \
	[ "${q2:-0}" -ge $((${q1:-0} + 3)) ]
check "still only cap_net_admin in every thread after re-attaching" caps_ok
w=$(a curl -sf http://127.0.0.1:18001/metrics | grep -o 'ispmon_wan_interface_info{iface="wan0",ifindex="[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
check "/metrics shows the new ifindex ($w)" [ "$w" = "$new" ]

PROGS=$(bpf_ids "$PID" prog_id)
MAPS=$(bpf_ids "$PID" map_id)
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
check "exits 0 on SIGTERM ($rc)" [ "$rc" = 0 ]
check "no filter or clsact left on the new wan0" bash -c "[ \$(ip netns exec $A tc filter show dev wan0 ingress | wc -l) = 0 ] && ! ip netns exec $A tc qdisc show dev wan0 | grep -q clsact"
check "no error logged" bash -c "! grep -q 'level=error' $TMP/err"
check "it held programs and maps: $(echo $PROGS | wc -w) programs, $(echo $MAPS | wc -w) maps" \
	[ "$(echo $PROGS | wc -w)" -ge 2 -a "$(echo $MAPS | wc -w)" -ge 5 ]
check "bpftool prog: none of its programs left ($(echo $PROGS))" bpf_gone "$PROGS" prog
check "bpftool map: none of its maps left" bpf_gone "$MAPS" map
check "bpftool net show dev wan0: no tc filter" \
	bash -c "! ip netns exec $A bpftool net show dev wan0 | grep -q 'tc_'"
check "nothing pinned by it in /sys/fs/bpf" bash -c "! find /sys/fs/bpf -name '*ispmon*' 2>/dev/null | grep -q ."
tap_exit
