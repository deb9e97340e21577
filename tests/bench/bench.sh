#!/usr/bin/env bash
# make bench: what ispmon costs, as ratios and differences taken in one run
# (the machine is shared; absolute numbers move, ratios much less).
#   1. per-packet cost of the TC programs vs an empty TC program
#      (bpf_prog_test_run_opts with repeat: build/tests/bench_tc)
#   2. forwarding throughput through a router namespace with ispmon, with an
#      empty TC program on the same hooks and with nothing attached, on a
#      kernel-only path (lan <-veth-> router <-veth-> wan, no userspace in
#      the forwarding path), BENCH_PAIRS rounds of three runs, with offloads
#      (GSO/GRO aggregates) and without (MTU-size packets): median ratios
#      and their spread; then the same with MTU-size packets and a
#      forwarding CPU of its own (endpoints on CPU 0, the router's receive
#      processing steered to CPU 1 with RPS), as on a router: throughput and
#      that CPU's busy time per Mbit
#   3. at a fixed offered load (BENCH_RATE): BPF run time per packet on that
#      real traffic (kernel.bpf_stats_enabled) next to the empty program on
#      the same hooks, and ispmon's CPU (daemon + BPF) per Mbit/s
#   4. kernel map memory at the default 16384 and at 65536 flows, daemon
#      RSS, /metrics scrape latency with 1000 LAN devices
# Prints a table and writes docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/bpfobjs.sh

[ "$(id -u)" -eq 0 ] || { echo "bench: needs root" >&2; exit 1; }
OUT=docs/benchmarks.md
TMP=$(mktemp -d)
PAIRS=${BENCH_PAIRS:-7}
SECS=${BENCH_SECONDS:-3}
RATE=${BENCH_RATE:-300M}
P=ispmb$$
L=$P-lan R=$P-rtr W=$P-wan
PORT=18350
SRV=203.0.113.2
PIN= # "taskset 1" while the endpoints are pinned to CPU 0 (section 2b)
ISPMON_PID= IPERF_PID= STATS_OLD=

cleanup() {
	[ -n "$ISPMON_PID" ] && kill -TERM "$ISPMON_PID" 2>/dev/null && wait "$ISPMON_PID" 2>/dev/null
	[ -n "$IPERF_PID" ] && kill "$IPERF_PID" 2>/dev/null
	[ -n "$STATS_OLD" ] && sysctl -qw kernel.bpf_stats_enabled="$STATS_OLD"
	for ns in $L $R $W; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

echo "== per-packet cost (bpf_prog_test_run, repeat)"
./build/tests/bench_tc | tee "$TMP/tc.txt" || exit 1

# --- the kernel-only path ------------------------------------------------------
for ns in $L $R $W; do ip netns add "$ns" && ip -n "$ns" link set lo up || exit 1; done
ip link add lan0 netns "$R" type veth peer name eth0 netns "$L" &&
	ip link add wan0 netns "$R" type veth peer name eth0 netns "$W" || exit 1
ip -n "$L" addr add 192.0.2.2/24 dev eth0 && ip -n "$L" link set eth0 up &&
	ip -n "$L" route add default via 192.0.2.1 &&
	ip -n "$R" addr add 192.0.2.1/24 dev lan0 && ip -n "$R" link set lan0 up &&
	ip -n "$R" addr add 203.0.113.1/24 dev wan0 && ip -n "$R" link set wan0 up &&
	ip -n "$W" addr add $SRV/24 dev eth0 && ip -n "$W" link set eth0 up &&
	ip -n "$W" route add 192.0.2.0/24 via 203.0.113.1 &&
	ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1 || exit 1
ip netns exec "$W" iperf3 -s -p 5201 >/dev/null 2>&1 &
IPERF_PID=$!
for _ in $(seq 1 50); do ip netns exec "$L" ping -c1 -W1 -q $SRV >/dev/null 2>&1 && break; sleep 0.1; done

# offloads on|off: GSO/TSO/GRO on every veth of the path.
offloads() {
	local ns dev
	for ns_dev in "$L:eth0" "$R:lan0" "$R:wan0" "$W:eth0"; do
		ns=${ns_dev%%:*} dev=${ns_dev#*:}
		ip netns exec "$ns" ethtool -K "$dev" tso "$1" gso "$1" gro "$1" >/dev/null 2>&1
	done
}
# iperf_mbps [RATE]: TCP upload from the LAN for SECS seconds, Mbit/s received.
iperf_mbps() {
	ip netns exec "$L" $PIN iperf3 -c $SRV -p 5201 -t "$SECS" ${1:+-b "$1"} -J 2>/dev/null |
		perl -MJSON::PP -e 'my $j = eval { decode_json(do { local $/; <STDIN> }) };
			printf "%.1f\n", ($j ? $j->{end}{sum_received}{bits_per_second} : 0) / 1e6'
}
start_ispmon() {
	ip netns exec "$R" ./ispmon --iface wan0 --lan-iface lan0 --listen 127.0.0.1:$PORT \
		--interval 1s --no-ping --no-speedtest "$@" >/dev/null 2>"$TMP/ispmon.err" &
	ISPMON_PID=$!
	for _ in $(seq 1 300); do
		grep -q 'msg="capabilities dropped"' "$TMP/ispmon.err" && return 0
		kill -0 "$ISPMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: ispmon did not start: $(head -c 400 "$TMP/ispmon.err")" >&2
	exit 1
}
stop_ispmon() {
	kill -TERM "$ISPMON_PID"
	wait "$ISPMON_PID"
	ISPMON_PID=
}
scrape() { ip netns exec "$R" curl -sf "http://127.0.0.1:$PORT/metrics"; }

# The empty TC program on the router's four hooks (clsact created for it):
# what attaching any TC program at all costs on this path.
attach_empty() {
	local dev dir
	for dev in wan0 lan0; do
		ip netns exec "$R" tc qdisc add dev $dev clsact || exit 1
		for dir in ingress egress; do
			ip netns exec "$R" tc filter add dev $dev $dir bpf da obj build/bench_empty.bpf.o sec tc || exit 1
		done
	done
}
detach_empty() {
	local dev
	for dev in wan0 lan0; do ip netns exec "$R" tc qdisc del dev $dev clsact; done
}
# run_arm without|empty|ispmon: one forwarding run, Mbit/s.
run_arm() {
	case $1 in
	without) iperf_mbps ;;
	empty) attach_empty; iperf_mbps; detach_empty ;;
	ispmon) start_ispmon --tcp-hooks off; iperf_mbps; stop_ispmon ;;
	esac
}

# --- 2. forwarding ratio ---------------------------------------------------------
# Rounds of three runs (without anything attached, with the empty program,
# with ispmon) rotate which goes first, so that drift favours none.
ARMS="without empty ispmon"
for mode in on off; do
	offloads $mode
	for f in ratio with without empty eratio vsempty; do : >"$TMP/$f-$mode"; done
	echo "== forwarding, offloads $mode: $PAIRS rounds of ${SECS}s runs"
	for i in $(seq 1 "$PAIRS"); do
		order=$(echo "$ARMS $ARMS" | cut -d' ' -f$((i % 3 + 1))-$((i % 3 + 3)))
		for arm in $order; do
			eval "mb_$arm=\$(run_arm $arm)"
			eval "[ -n \"\$mb_$arm\" ]" || { echo "bench: the $arm run failed" >&2; exit 1; }
		done
		# shellcheck disable=SC2154 # set by the eval above
		{
			echo "$mb_ispmon" >>"$TMP/with-$mode"
			echo "$mb_without" >>"$TMP/without-$mode"
			echo "$mb_empty" >>"$TMP/empty-$mode"
			calc "%.3f\n" "($mb_without > 0) ? $mb_ispmon / $mb_without : 0" >>"$TMP/ratio-$mode"
			calc "%.3f\n" "($mb_without > 0) ? $mb_empty / $mb_without : 0" >>"$TMP/eratio-$mode"
			calc "%.3f\n" "($mb_empty > 0) ? $mb_ispmon / $mb_empty : 0" >>"$TMP/vsempty-$mode"
			echo "round $i ($order): without $mb_without Mbit/s, empty program $mb_empty, ispmon $mb_ispmon;" \
				"ratio $(tail -n1 "$TMP/ratio-$mode"), empty $(tail -n1 "$TMP/eratio-$mode"), ispmon/empty $(tail -n1 "$TMP/vsempty-$mode")"
		}
	done
done
for mode in on off; do
	eval "RATIO_$mode=\$(median <\"\$TMP/ratio-$mode\")"
	eval "SPREAD_$mode=\$(minmax <\"\$TMP/ratio-$mode\")"
	eval "ERATIO_$mode=\$(median <\"\$TMP/eratio-$mode\")"
	eval "ESPREAD_$mode=\$(minmax <\"\$TMP/eratio-$mode\")"
	eval "VSEMPTY_$mode=\$(median <\"\$TMP/vsempty-$mode\")"
	eval "VSSPREAD_$mode=\$(minmax <\"\$TMP/vsempty-$mode\")"
	eval "WITH_$mode=\$(median <\"\$TMP/with-$mode\")"
	eval "WITHOUT_$mode=\$(median <\"\$TMP/without-$mode\")"
	eval "EMPTY_$mode=\$(median <\"\$TMP/empty-$mode\")"
done
echo "ratio with/without: offloads on $RATIO_on ($SPREAD_on), off $RATIO_off ($SPREAD_off);" \
	"empty program/without: on $ERATIO_on, off $ERATIO_off; ispmon/empty: on $VSEMPTY_on, off $VSEMPTY_off"

# --- 2b. a forwarding CPU of its own ---------------------------------------------
# On a router the endpoints are other machines: the router's CPU forwards
# and does nothing else. Here: both iperf3 ends (and ispmon's daemon) on
# CPU 0, the router namespace's receive processing (and so its forwarding
# and both TC hooks of each packet) steered to CPU 1 by RPS on lan0 and
# wan0, and the endpoints' receive processing back to CPU 0.
# rps MASK_ROUTER MASK_ENDPOINTS: RPS CPU masks (0 0: off).
rps() {
	local ns_dev
	for ns_dev in "$R:lan0:$1" "$R:wan0:$1" "$L:eth0:$2" "$W:eth0:$2"; do
		IFS=: read -r ns dev mask <<<"$ns_dev"
		ip netns exec "$ns" sh -c "echo $mask >/sys/class/net/$dev/queues/rx-0/rps_cpus" || return 1
	done
}
# cpu1_idle: CPU 1's idle ticks so far and the time now, "TICKS SECONDS".
# Its busy share over a run is what idle leaves of the wall clock: this
# VM's tick accounting files much of the softirq time (the forwarding) as
# nothing at all, but idle is exact (NO_HZ accounts it on leaving idle).
cpu1_idle() { echo "$(awk '$1 == "cpu1" { print $5 + $6 }' /proc/stat) $(date +%s.%N)"; }
DEDICATED=0
if [ "$(nproc)" -ge 2 ] && rps 2 1 2>/dev/null; then
	DEDICATED=1
	offloads off
	PIN="taskset 1"
	taskset -a -p 1 "$IPERF_PID" >/dev/null
	HZ=$(getconf CLK_TCK)
	for f in dmb dbusy dratio; do : >"$TMP/$f"; done
	for a in without empty ispmon; do : >"$TMP/dmb-$a"; : >"$TMP/dcpu-$a"; done
	echo "== a forwarding CPU of its own (MTU-size packets): $PAIRS rounds of ${SECS}s runs"
	for i in $(seq 1 "$PAIRS"); do
		order=$(echo "$ARMS $ARMS" | cut -d' ' -f$((i % 3 + 1))-$((i % 3 + 3)))
		for arm in $order; do
			case $arm in
			empty) attach_empty ;;
			ispmon) start_ispmon --tcp-hooks off && taskset -a -p 1 "$ISPMON_PID" >/dev/null ;;
			esac
			read -r i0 w0 <<<"$(cpu1_idle)"
			mb=$(iperf_mbps)
			read -r i1 w1 <<<"$(cpu1_idle)"
			case $arm in
			empty) detach_empty ;;
			ispmon) stop_ispmon ;;
			esac
			[ -n "$mb" ] || { echo "bench: the $arm run failed" >&2; exit 1; }
			echo "$mb" >>"$TMP/dmb-$arm"
			# CPU 1's busy share over the run, percent.
			calc "%.1f\n" "100 * (1 - ($i1 - $i0) / ($HZ * ($w1 - $w0)))" >>"$TMP/dcpu-$arm"
			eval "dm_$arm=$mb"
		done
		# shellcheck disable=SC2154 # set by the eval above
		calc "%.3f\n" "($dm_without > 0) ? $dm_ispmon / $dm_without : 0" >>"$TMP/dratio"
		echo "round $i ($order): without $dm_without Mbit/s, empty $dm_empty, ispmon $dm_ispmon;" \
			"forwarding CPU $(tail -n1 "$TMP/dcpu-without")%, $(tail -n1 "$TMP/dcpu-empty")%, $(tail -n1 "$TMP/dcpu-ispmon")%"
	done
	PIN=
	taskset -a -pc "0-$(($(nproc) - 1))" "$IPERF_PID" >/dev/null
	rps 0 0
	DRATIO=$(median <"$TMP/dratio") DSPREAD=$(minmax <"$TMP/dratio")
	for a in without empty ispmon; do
		eval "DMB_$a=\$(median <\"\$TMP/dmb-$a\")"
		eval "DCPU_$a=\$(median <\"\$TMP/dcpu-$a\")"
		# the forwarding CPU's busy time per Mbit carried, ns
		eval "DNS_$a=\$(calc '%.0f' \"\$DMB_$a > 0 ? \$DCPU_$a / 100 * 1e9 / \$DMB_$a : 0\")"
	done
	echo "forwarding CPU of its own: ratio $DRATIO ($DSPREAD); CPU 1 busy $DCPU_without / $DCPU_empty / $DCPU_ispmon %"
	if awk -v c="$DCPU_without" 'BEGIN { exit !(c < 95) }'; then
		D_WHY="The forwarding CPU was not saturated without ispmon (the endpoints' CPU
was the limit), so ispmon's cost shows as its extra busy time:"
	else
		D_WHY="The forwarding CPU was saturated, so ispmon's cost shows as lost
throughput, and as its busy time per Mbit:"
	fi
fi

# --- 3. fixed offered load: BPF time per packet, CPU per Mbit/s ------------------
STATS_OLD=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
# prog_stats IDS: "run_time_ns run_cnt" summed over those programs; per
# program "id run_time_ns run_cnt" lines into $TMP/progs.now.
prog_stats() {
	local t=0 n=0 i line
	: >"$TMP/progs.now"
	for i in $1; do
		line=$(bpftool -j prog show id "$i" 2>/dev/null |
			perl -MJSON::PP -e 'my $p = decode_json(do { local $/; <STDIN> });
				print(($p->{run_time_ns} // 0), " ", ($p->{run_cnt} // 0), "\n")')
		echo "$i $line" >>"$TMP/progs.now"
		t=$((t + ${line% *})) n=$((n + ${line#* }))
	done
	echo "$t $n"
}
# task_ns PID: CPU time of all of PID's threads, ns.
task_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
# load_run MODE IDS PID [TCP_IDS]: one run at RATE; sets MBPS NS_PKT PKTS
# CPU_NS (the TC programs' BPF time + the daemon's when PID is given), and
# with TCP_IDS the TCP hooks' TCP_NS TCP_RUNS CPU_TCP_NS.
load_run() {
	local t0 n0 t1 n1 c0=0 c1=0
	offloads "$1"
	[ -n "${4:-}" ] && read -r u0 m0 <<<"$(prog_stats "$4")"
	read -r t0 n0 <<<"$(prog_stats "$2")"
	mv "$TMP/progs.now" "$TMP/progs.before"
	[ -n "$3" ] && c0=$(task_ns "$3")
	MBPS=$(iperf_mbps "$RATE")
	[ -n "$3" ] && c1=$(task_ns "$3")
	if [ -n "${4:-}" ]; then
		read -r u1 m1 <<<"$(prog_stats "$4")"
		TCP_RUNS=$((m1 - m0))
		TCP_NS=$(calc "%.1f" "$TCP_RUNS > 0 ? ($u1 - $u0) / $TCP_RUNS : 0")
		CPU_TCP_NS=$((u1 - u0))
	fi
	read -r t1 n1 <<<"$(prog_stats "$2")" # last: its per-program lines stay
	PKTS=$((n1 - n0))
	NS_PKT=$(calc "%.1f" "$PKTS > 0 ? ($t1 - $t0) / $PKTS : 0")
	CPU_NS=$((t1 - t0 + c1 - c0))
	DAEMON_NS=$((c1 - c0))
}
echo "== fixed load $RATE: BPF run time per packet, CPU"
start_ispmon
ALL_IDS=$(bpf_ids "$ISPMON_PID" prog_id)
# id -> "interface direction" of each attached program
ip netns exec "$R" bpftool -j net show | perl -MJSON::PP -e '
	my $j = decode_json(do { local $/; <STDIN> });
	for my $e (@$j) { for my $t (@{ $e->{tc} // [] }) { my $k = $t->{kind}; $k =~ s{^clsact/}{};
		print "$t->{id} $t->{devname} $k\n" } }' >"$TMP/hooks"
# The TC programs, and the rest: the TCP hooks (they run for every socket
# on the host, also the iperf3 endpoints' here, and return at once for
# sockets of other namespaces).
IDS=$(awk '{ print $1 }' "$TMP/hooks" | tr '\n' ' ')
TCP_IDS=$(for i in $ALL_IDS; do grep -q "^$i " "$TMP/hooks" || echo "$i"; done | tr '\n' ' ')
for mode in off on; do
	load_run $mode "$IDS" "$ISPMON_PID" "$TCP_IDS"
	eval "TCPNS_$mode=$TCP_NS TCPRUNS_$mode=$TCP_RUNS CPUTCP_$mode=$CPU_TCP_NS"
	# ns per run of each program: "iface dir ns runs"
	join <(sort "$TMP/hooks") <(join <(sort "$TMP/progs.before") <(sort "$TMP/progs.now")) |
		awk '{ n = $7 - $5; printf "%s %s %.1f %d\n", $2, $3, n ? ($6 - $4) / n : 0, n }' |
		sort >"$TMP/per-prog-$mode"
	eval "MBPS_$mode=$MBPS NS_$mode=$NS_PKT PKTS_$mode=$PKTS"
	eval "CPU_$mode=$CPU_NS DAEMON_$mode=$DAEMON_NS"
done
MAP16_LOG=$(grep -o 'memory_bytes=[0-9]*' "$TMP/ispmon.err" | cut -d= -f2)
scrape >"$TMP/m16.prom"
RSS_IDLE=$(awk '/^VmRSS/ { print $2 }' "/proc/$ISPMON_PID/status")
stop_ispmon
# The floor: the empty program on the same four hooks, same load (every tc
# program in the router namespace is it now).
attach_empty
ip netns exec "$R" bpftool -j net show | perl -MJSON::PP -e '
	my $j = decode_json(do { local $/; <STDIN> });
	for my $e (@$j) { for my $t (@{ $e->{tc} // [] }) { my $k = $t->{kind}; $k =~ s{^clsact/}{};
		print "$t->{id} $t->{devname} $k\n" } }' >"$TMP/ehooks"
EIDS=$(awk '{ print $1 }' "$TMP/ehooks" | sort -u | tr '\n' ' ')
for mode in off on; do
	load_run $mode "$EIDS" ""
	eval "FLOOR_$mode=$NS_PKT"
	# the empty program's ns per run on each hook: "iface dir ns"
	join <(sort "$TMP/ehooks") <(join <(sort "$TMP/progs.before") <(sort "$TMP/progs.now")) |
		awk '{ n = $7 - $5; printf "%s-%s %.1f\n", $2, $3, n ? ($6 - $4) / n : 0 }' |
		sort >"$TMP/floor-prog-$mode"
done
detach_empty
sysctl -qw kernel.bpf_stats_enabled="$STATS_OLD"
STATS_OLD=
for mode in off on; do
	eval "m=\$MBPS_$mode c=\$CPU_$mode d=\$DAEMON_$mode"
	# CPU share of one core over the run, per 100 Mbit/s carried.
	eval "CORE_$mode=\$(calc '%.2f' \"$m > 0 ? 100 * $c / ($SECS * 1e9) / ($m / 100) : 0\")"
	eval "NSMBIT_$mode=\$(calc '%.0f' \"$m > 0 ? $c / ($m * $SECS) : 0\")"
	eval "DMS_$mode=\$(calc '%.2f' \"$d / 1e6\")"
done
echo "MTU packets: ispmon $NS_off ns/packet, empty $FLOOR_off ns; GSO: $NS_on vs $FLOOR_on ns per aggregate"
echo "CPU per 100 Mbit/s: $CORE_off % of a core (MTU), $CORE_on % (GSO)"

# --- 4. memory, 1000 devices ------------------------------------------------------
offloads on
start_ispmon --max-flows 65536
MAP64_LOG=$(grep -o 'memory_bytes=[0-9]*' "$TMP/ispmon.err" | cut -d= -f2)
scrape >"$TMP/m64.prom"
stop_ispmon
mapb() { awk -v k="ispmon_bpf_map_memory_bytes{map=\"$2\"}" '$1 == k { print $2 }' "$1"; }

make -s build/tests/lanflood >/dev/null || exit 1
ip netns exec "$R" nft -f - <<-EOF || exit 1
	table inet benchdrop {
		chain pre {
			type filter hook prerouting priority raw; policy accept;
			iifname "lan0" udp dport 9 drop
		}
	}
EOF
start_ispmon --max-devices 1000
ip netns exec "$L" ./build/tests/lanflood --iface eth0 --dst-mac "$(ip netns exec "$R" cat /sys/class/net/lan0/address)" \
	--dst-ip 192.0.2.1 --devices 1000 --frames 3 --batch 100 --gap-ms 50 --src-net 192.0.2 >"$TMP/flood.out" || exit 1
sleep 2.5
scrape >"$TMP/m1k.prom"
DEVS=$(awk '$1 == "ispmon_devices_seen" { print $2 }' "$TMP/m1k.prom")
for _ in $(seq 1 20); do
	ip netns exec "$R" curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/metrics"
done >"$TMP/scrape"
SCRAPE_MS=$(awk '{ print $1 * 1000 }' "$TMP/scrape" | median)
SCRAPE_MAX=$(awk '{ print $1 * 1000 }' "$TMP/scrape" | sort -g | tail -n1)
SCRAPE_BYTES=$(wc -c <"$TMP/m1k.prom")
RSS_1K=$(awk '/^VmRSS/ { print $2 }' "/proc/$ISPMON_PID/status")
stop_ispmon
echo "maps: $MAP16_LOG bytes at 16384 flows, $MAP64_LOG at 65536; RSS $RSS_IDLE kB idle, $RSS_1K kB with $DEVS devices; scrape $SCRAPE_MS ms for $SCRAPE_BYTES bytes"

# --- verdicts, checked before anything is written ---------------------------------
verdict() { awk -v r="$1" 'BEGIN { if (r == "") exit 1; print (r >= 0.98) ? "meets" : "misses" }'; }
V_on=$(verdict "$RATIO_on") && V_off=$(verdict "$RATIO_off") ||
	{ echo "bench: no forwarding ratio to judge (on '$RATIO_on', off '$RATIO_off')" >&2; exit 1; }
# The micro-benchmark's rows over the 100 ns target, by name.
OVER100=$(tail -n +2 "$TMP/tc.txt" | awk '$4 >= 100 { printf "%s%s (%s ns)", n++ ? ", " : "", $1, $4 }')
MICRO_MAX=$(tail -n +2 "$TMP/tc.txt" | awk 'NR == 1 || $4 > m { m = $4 } END { print m }')
MICRO_MIN=$(tail -n +2 "$TMP/tc.txt" | awk 'NR == 1 || $4 < m { m = $4 } END { print m }')
[ -n "$MICRO_MAX" ] || { echo "bench: no micro-benchmark rows" >&2; exit 1; }

# --- docs/benchmarks.md -------------------------------------------------------------
kb() { calc "%.0f" "${1:-0} / 1024"; }
mkdir -p docs
{
	echo "# ispmon benchmarks"
	echo
	echo "Written by \`make bench\` ($(date -u +%Y-%m-%dT%H:%MZ)) on $(uname -r), $(nproc) cores,"
	echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'). Shared machine:"
	echo "compare the ratios and differences, which are taken in the same run."
	echo
	echo "## Per-packet cost of the TC programs (bpf_prog_test_run_opts, median of 7 x 200k runs)"
	echo
	echo "| packet | ispmon ns | empty TC program ns | overhead ns | ratio |"
	echo "| --- | --- | --- | --- | --- |"
	tail -n +2 "$TMP/tc.txt" | awk '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
	echo
	echo "\`lan_\` rows: the same frames through the programs as loaded on a LAN"
	echo "interface, which also count per device (a per-CPU slot cache in front of"
	echo "the device table: an array lookup for a household's devices)."
	echo
	echo "Every run repeats one packet, as a burst of segments repeats its TSval"
	echo "and TSecr for a clock tick (1 ms on Linux): after the first, the \`tcp_*_ts\`"
	echo "rows take the per-CPU burst shortcut (bpf/rtt.h) and skip the flow table."
	echo "\`table_\` rows: the same packets with the shortcut off, through the flow"
	echo "table's hash lookup, which is what the first packet of each new TSval"
	echo "costs (plus a clock read, and a record when one is due)."
	echo
	echo "The target is well under 100 ns per packet over the empty program: in"
	echo "this run the overhead is $MICRO_MIN-$MICRO_MAX ns, ${OVER100:+over 100 ns for }${OVER100:-every row under 100 ns}."
	echo "For scale, the published figure for ePPing (passive RTT on tc) is"
	echo "269-325 ns per packet in production."
	echo
	echo "## Forwarding throughput with and without ispmon"
	echo
	echo "A kernel-only path: LAN namespace, router namespace (IPv4 forwarding,"
	echo "ispmon on its WAN and LAN interfaces), WAN namespace with iperf3, plain"
	echo "veths; a TCP upload for ${SECS}s per run, $PAIRS rounds of three runs (nothing"
	echo "attached, the empty TC program on the same four hooks, ispmon) rotating"
	echo "which goes first, ispmon started and stopped for each run with it"
	echo "(\`--tcp-hooks off\`: here the iperf3 endpoints share the router's kernel,"
	echo "and the TCP hooks would run for their sockets, which on a router are"
	echo "other machines; their cost is in the next section). Ratios are medians"
	echo "of the rounds' ratios, spreads their min-max."
	echo
	echo "| offloads | nothing attached | empty TC program | ispmon | ispmon / nothing (spread) | empty / nothing (spread) | ispmon / empty (spread) |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	echo "| on (GSO/GRO aggregates) | $WITHOUT_on Mbit/s | $EMPTY_on Mbit/s | $WITH_on Mbit/s | $RATIO_on ($SPREAD_on) | $ERATIO_on ($ESPREAD_on) | $VSEMPTY_on ($VSSPREAD_on) |"
	echo "| off (MTU-size packets) | $WITHOUT_off Mbit/s | $EMPTY_off Mbit/s | $WITH_off Mbit/s | $RATIO_off ($SPREAD_off) | $ERATIO_off ($ESPREAD_off) | $VSEMPTY_off ($VSSPREAD_off) |"
	echo
	echo "The empty program column is the floor of the method: a clsact qdisc and"
	echo "four programs that return at once already cost the path that much here,"
	echo "before ispmon reads a header."
	echo
	echo "The target is a ratio of at least 0.98: this run $V_on it with"
	echo "offloads ($RATIO_on) and $V_off it with MTU-size packets ($RATIO_off)."
	echo "Every part of this path (iperf3 sender and receiver, forwarding in"
	echo "softirq) runs on the same $(nproc) cores and keeps them busy, so the path is"
	echo "CPU-bound and whatever ispmon spends per packet shows one to one as lost"
	echo "throughput. At the rate reached without ispmon on MTU-size packets"
	echo "($WITHOUT_off Mbit/s), ispmon's measured cost ($NSMBIT_off ns of CPU per Mbit, next"
	echo "section) comes to $(calc '%.0f' "$NSMBIT_off * $WITHOUT_off / 1e7")% of one core, taken from the same cores."
	echo "With offloads the programs run once per aggregate of up to 64 kB and"
	echo "the cost disappears in this shared machine's noise (see the spread). On"
	echo "a router the forwarding CPU is not shared with the endpoints, and a home"
	echo "line carries a small fraction of these rates: at 1 Gbit/s of MTU-size"
	echo "packets the same cost is $(calc '%.0f' "$NSMBIT_off * 1000 / 1e7")% of a core."
	echo
	if [ "$DEDICATED" = 1 ]; then
		echo "## A forwarding CPU of its own (MTU-size packets)"
		echo
		echo "As on a router, where the endpoints are other machines: both iperf3"
		echo "ends and ispmon's daemon pinned to CPU 0, the router namespace's"
		echo "receive processing (and with it the forwarding and both TC hooks each"
		echo "packet crosses) steered to CPU 1 with RPS on lan0 and wan0, the"
		echo "endpoints' back to CPU 0. $PAIRS rounds of three ${SECS}s runs, medians."
		echo
		echo "| figure | nothing attached | empty TC program | ispmon |"
		echo "| --- | --- | --- | --- |"
		echo "| carried | $DMB_without Mbit/s | $DMB_empty Mbit/s | $DMB_ispmon Mbit/s |"
		echo "| forwarding CPU busy (all but its idle time) | $DCPU_without % | $DCPU_empty % | $DCPU_ispmon % |"
		echo "| forwarding CPU per Mbit carried | $DNS_without ns | $DNS_empty ns | $DNS_ispmon ns |"
		echo
		echo "Throughput with ispmon over without: $DRATIO (spread $DSPREAD), which"
		echo "$(verdict "$DRATIO") the 0.98 target. $D_WHY"
		echo "$(calc '%.0f' "$DNS_ispmon - $DNS_without") ns per Mbit over nothing attached, $(calc '%.0f' "$DNS_ispmon - $DNS_empty") ns over the empty"
		echo "program ($(calc '%.1f' "($DNS_ispmon - $DNS_without) * 100 / 1e7")% of a core per 100 Mbit/s)."
		echo
	fi
	echo "## Real traffic at a fixed offered load ($RATE TCP, ${SECS}s, kernel.bpf_stats_enabled)"
	echo
	echo "| figure | MTU-size packets | GSO aggregates |"
	echo "| --- | --- | --- |"
	echo "| carried | $MBPS_off Mbit/s | $MBPS_on Mbit/s |"
	echo "| ispmon BPF run time per program run | $NS_off ns ($PKTS_off runs) | $NS_on ns ($PKTS_on runs) |"
	echo "| the empty TC program, same hooks and load | $FLOOR_off ns | $FLOOR_on ns |"
	echo "| ispmon over the empty program | $(calc '%.1f' "$NS_off - $FLOOR_off") ns | $(calc '%.1f' "$NS_on - $FLOOR_on") ns |"
	echo "| daemon CPU (user+sys, all threads) | $DMS_off ms | $DMS_on ms |"
	echo "| ispmon CPU (BPF + daemon) per Mbit carried | $NSMBIT_off ns | $NSMBIT_on ns |"
	echo "| ispmon CPU per 100 Mbit/s, share of one core | $CORE_off % | $CORE_on % |"
	echo "| TCP hooks (tp_btf), run time per run: every segment any socket on the host receives, the endpoints' here | $TCPNS_off ns ($TCPRUNS_off runs) | $TCPNS_on ns ($TCPRUNS_on runs) |"
	echo
	echo "Per program (MTU-size packets; an upload crosses LAN ingress and WAN"
	echo "egress, its ACKs WAN ingress and LAN egress):"
	echo
	echo "| interface | hook | ispmon ns per run | empty program ns per run | over it | runs |"
	echo "| --- | --- | --- | --- | --- | --- |"
	awk '{ print $1 "-" $2, $0 }' "$TMP/per-prog-off" | sort | join - "$TMP/floor-prog-off" |
		awk '{ printf "| %s | %s | %s | %s | %.1f | %s |\n", ($2 == "wan0" ? "WAN" : "LAN"), $3, $4,
			$6, $4 - $6, $5 }'
	echo
	echo "The hooks that carry the data run for each of its packets and stay in"
	echo "cache; those that carry only the ACKs run some 50 times less often and"
	echo "find their code and maps cold each time: there even the empty program"
	echo "costs several times what it costs on the data hooks."
	echo
	over=$(calc '%.0f' "$NS_off - $FLOOR_off")
	echo "On this real traffic ispmon costs $over ns per program run over the empty"
	echo "program (MTU-size packets), $(awk -v o="$over" 'BEGIN { print (o < 100) ? "within" : "above" }') the 100 ns target (the"
	echo "micro-benchmark above runs the same programs on one hot packet and flow"
	echo "entry: no cache misses, no map growth); the ACK hooks cost most per run"
	echo "(cold, as above, and the RTT match: hash lookups in the flow and pending"
	echo "tables, where the data's bursts take the per-CPU shortcut) but run for a"
	echo "small share of the packets."
	echo
	echo "bpf_stats times the program alone; on real traffic the packet's headers"
	echo "are often not in cache yet and the maps are larger than in the"
	echo "micro-benchmark, so both programs cost more than under prog_test_run."
	echo
	echo "## Memory and the web endpoint"
	echo
	echo "| figure | value |"
	echo "| --- | --- |"
	echo "| kernel map memory, WAN + one LAN interface, default 16384 flows | $MAP16_LOG bytes ($(kb "$MAP16_LOG") kB) |"
	echo "| of which flow_state + pending | $(( $(mapb "$TMP/m16.prom" flow_state) + $(mapb "$TMP/m16.prom" pending) )) bytes |"
	echo "| kernel map memory, WAN + one LAN interface, --max-flows 65536 | $MAP64_LOG bytes ($(kb "$MAP64_LOG") kB) |"
	echo "| of which flow_state + pending | $(( $(mapb "$TMP/m64.prom" flow_state) + $(mapb "$TMP/m64.prom" pending) )) bytes |"
	echo "| of which the LAN device table ($(nproc) CPUs: 1024 + 128 per CPU entries, per-CPU values) | $(mapb "$TMP/m64.prom" devices) bytes |"
	echo "| daemon RSS, idle | $RSS_IDLE kB |"
	echo "| daemon RSS with $DEVS LAN devices (--max-devices 1000) | $RSS_1K kB |"
	echo "| /metrics scrape with $DEVS devices, median / max of 20 | $SCRAPE_MS / $SCRAPE_MAX ms for $SCRAPE_BYTES bytes |"
	echo
	echo "Map memory is what the kernel charges (memlock in fdinfo). The flow"
	echo "tables are LRU hash maps, which the kernel allocates whole at creation:"
	echo "the figure at 65536 entries is the memory with 65536 flows tracked."
} >"$OUT"
echo "wrote $OUT"
