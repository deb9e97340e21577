#!/usr/bin/env bash
# The WAN interface goes down and up, then is deleted and created again
# under the same name (new ifindex, as after a PPPoE redial): ispmon must
# re-attach both its filters by name within 2 s of the interface existing
# again and keep counting both directions, counters never going back; the
# same for a LAN interface (a rebuilt bridge or Wi-Fi interface), whose
# device keeps its counters. On SIGTERM nothing of it is left on either.
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

BIN=${ISPMON_BIN:-$PWD/ispmon} # tests/test_sanitize.sh runs it with the ASan build
A=ispmra$$ # ispmon's namespace: wan0 192.0.2.1, lan0 198.51.100.1
B=ispmrb$$ # the WAN side's other end, 192.0.2.2
C=ispmrc$$ # a household device on lan0, 198.51.100.2
DEV_MAC=02:00:00:00:0c:02
TMP=$(mktemp -d)
PID=

cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	ip netns del "$A" 2>/dev/null
	ip netns del "$B" 2>/dev/null
	ip netns del "$C" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

a() { ip netns exec "$A" "$@"; }
b() { ip netns exec "$B" "$@"; }
c() { ip netns exec "$C" "$@"; }

link_up() {
	a ip link add wan0 type veth peer name peer0 netns "$B" &&
		a ip addr add 192.0.2.1/24 dev wan0 && a ip link set wan0 up &&
		b ip addr add 192.0.2.2/24 dev peer0 && b ip link set peer0 up
}
lan_up() {
	a ip link add lan0 type veth peer name eth0 netns "$C" &&
		c ip link set eth0 address $DEV_MAC &&
		a ip addr add 198.51.100.1/24 dev lan0 && a ip link set lan0 up &&
		c ip addr add 198.51.100.2/24 dev eth0 && c ip link set eth0 up
}
ip netns add "$A" && ip netns add "$B" && ip netns add "$C" || exit 1
a ip link set lo up
b ip link set lo up
c ip link set lo up
link_up || exit 1
lan_up || exit 1

ip netns exec "$A" "$BIN" --iface wan0 --lan-iface lan0 --listen 127.0.0.1:18001 --interval 100ms --no-speedtest \
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

# pkts DIRECTION: WAN packets as /metrics shows them, after a fresh read.
pkts() {
	sleep 0.3
	a curl -sf http://127.0.0.1:18001/metrics |
		awk -v k="ispmon_passive_packets_total{direction=\"$1\"}" '$1 == k { print $2 }'
}
# devpkts DIRECTION: the LAN device's packets (labelled by its MAC).
devpkts() {
	sleep 0.3
	a curl -sf http://127.0.0.1:18001/metrics |
		awk -v k="ispmon_device_packets_total{device=\"$DEV_MAC\",direction=\"$1\"}" '$1 == k { print $2 }'
}
# 20 pings from the WAN side: 20 packets in (download), 20 replies out.
pings() { b ping -q -n -c 20 -i 0.02 -W 1 192.0.2.1 >/dev/null; }
lanpings() { c ping -q -n -c 20 -i 0.02 -W 1 198.51.100.1 >/dev/null; }
# ours IF: ispmon's filters on IF, both hooks (2 when attached).
ours() {
	echo $(($(a tc filter show dev "$1" ingress 2>/dev/null | grep -c 'name tc_ingress') +
		$(a tc filter show dev "$1" egress 2>/dev/null | grep -c 'name tc_egress')))
}
# wait_ours IF T0: seconds from T0 until both filters are on IF (gives up at 5 s).
wait_ours() {
	while [ "$(ours "$1")" != 2 ]; do
		awk -v t0="$2" -v t="$(date +%s.%N)" 'BEGIN { exit !(t - t0 > 5) }' && break
		sleep 0.05
	done
	awk -v t0="$2" -v t="$(date +%s.%N)" 'BEGIN { printf "%.2f", t - t0 }'
}
# recreate IF UP_FN: delete IF, and after a pause create it again with
# UP_FN; sets OLD and NEW (ifindex) and DT, the seconds from just before it
# existed again (configuring it is part of the 2 s) until both filters
# were back.
recreate() {
	OLD=$(a cat /sys/class/net/"$1"/ifindex)
	a ip link del "$1"
	sleep 0.7
	local t0
	t0=$(date +%s.%N)
	$2 || exit 1
	NEW=$(a cat /sys/class/net/"$1"/ifindex)
	DT=$(wait_ours "$1" "$t0")
}
# grew A B: counter B went on from A by at least 20 (the pings).
grew() { [ -n "$1" ] && [ -n "$2" ] && [ "$2" -ge $(($1 + 20)) ]; }

check "both filters on wan0 and on lan0" [ "$(ours wan0)" = 2 -a "$(ours lan0)" = 2 ]
pings
p1=$(pkts download) u1=$(pkts upload)
check "counting on wan0: ${p1:-none} download, ${u1:-none} upload packets after 20 pings" \
	[ "${p1:-0}" -ge 20 -a "${u1:-0}" -ge 20 ]

a ip link set wan0 down
sleep 1
a ip link set wan0 up
b ip link set peer0 up
sleep 0.5
check "link down/up: both filters still on wan0" [ "$(ours wan0)" = 2 ]
pings
p2=$(pkts download) u2=$(pkts upload)
check "link down/up: still counting (download ${p1:-?} -> ${p2:-?}, upload ${u1:-?} -> ${u2:-?})" \
	eval 'grew "$p1" "$p2" && grew "$u1" "$u2"'

recreate wan0 link_up
new=$NEW
check "recreated wan0 (ifindex $OLD -> $NEW): both filters back ${DT}s after it was created (<= 2 s)" \
	awk -v d="$DT" -v o="$(ours wan0)" 'BEGIN { exit !(o == 2 && d <= 2) }'
check "logged the loss and the new attachment" \
	bash -c "grep -q 'interface gone' $TMP/err && grep -q 'msg=\"attached\" iface=wan0 ifindex=$new ' $TMP/err"
pings
p3=$(pkts download) u3=$(pkts upload)
check "still counting both directions after the redial, never back (download ${p2:-?} -> ${p3:-?}, upload ${u2:-?} -> ${u3:-?})" \
	eval 'grew "$p2" "$p3" && grew "$u2" "$u3"'

# The LAN side: the device's counters carry on through a rebuilt lan0.
lanpings
d1=$(devpkts upload) e1=$(devpkts download)
check "device $DEV_MAC counted on lan0: ${d1:-none} upload, ${e1:-none} download packets" \
	[ "${d1:-0}" -ge 20 -a "${e1:-0}" -ge 20 ]
recreate lan0 lan_up
check "recreated lan0 (ifindex $OLD -> $NEW): both filters back ${DT}s after it was created (<= 2 s)" \
	awk -v d="$DT" -v o="$(ours lan0)" 'BEGIN { exit !(o == 2 && d <= 2) }'
lanpings
d2=$(devpkts upload) e2=$(devpkts download)
check "device still counted after lan0 was rebuilt, never back (upload ${d1:-?} -> ${d2:-?}, download ${e1:-?} -> ${e2:-?})" \
	eval 'grew "$d1" "$d2" && grew "$e1" "$e2"'
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
for ifc in wan0 lan0; do
	check "no filter or clsact left on the new $ifc" bash -c "[ \$(ip netns exec $A tc filter show dev $ifc ingress | wc -l) = 0 ] && [ \$(ip netns exec $A tc filter show dev $ifc egress | wc -l) = 0 ] && ! ip netns exec $A tc qdisc show dev $ifc | grep -q clsact"
done
check "no error logged" bash -c "! grep -q 'level=error' $TMP/err"
check "it held programs and maps: $(echo $PROGS | wc -w) programs, $(echo $MAPS | wc -w) maps" \
	[ "$(echo $PROGS | wc -w)" -ge 2 -a "$(echo $MAPS | wc -w)" -ge 5 ]
check "bpftool prog: none of its programs left ($(echo $PROGS))" bpf_gone "$PROGS" prog
check "bpftool map: none of its maps left" bpf_gone "$MAPS" map
check "bpftool net show dev wan0 and lan0: no tc filter" \
	bash -c "! ip netns exec $A bpftool net show dev wan0 | grep -q 'tc_' && ! ip netns exec $A bpftool net show dev lan0 | grep -q 'tc_'"
check "nothing pinned by it in /sys/fs/bpf" bash -c "! find /sys/fs/bpf -name '*ispmon*' 2>/dev/null | grep -q ."
tap_exit
