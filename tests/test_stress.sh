#!/usr/bin/env bash
# Stress (issue 9): the web endpoint under load and misbehaving clients, and
# per-device accounting with 1000 LAN devices.
#
# http: ispmon watches lo in a namespace of its own and serves
#   127.0.0.1:PORT there. (a) 25 clients send half a request and stall, 25
#   send a request and never read the answer: a well-behaved scrape still
#   completes quickly, and the server drops the stalled ones (its 10 s
#   timeout). (b) STRESS_CLIENTS (200) clients scrape as fast as they can for
#   STRESS_SECONDS (60), half with a new connection per request, while 50
#   stalled clients stay connected and a probe scrapes once a second: no
#   error, memory bounded and flat, every connection released afterwards.
# devices: the emulated home network (tests/lib/netlab.sh); 1000 devices
#   (one MAC each) send UDP frames into the router's LAN interface, paced
#   100 devices per 300 ms: every device is seen, labels are capped at
#   --max-devices plus "other", the per-device bytes add up to what was
#   sent, and a scrape stays fast; then the same with --max-devices 1000.
#
# STRESS_PARTS="http devices" picks parts. Results in tests/artifacts/stress/.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
NETLAB_PREFIX=ispmsd$$
. tests/lib/netlab.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }

BIN=${ISPMON_BIN:-$PWD/ispmon}
SECONDS_LOAD=${STRESS_SECONDS:-60}
CLIENTS=${STRESS_CLIENTS:-200}
PARTS=${STRESS_PARTS:-http devices}
PORT=18000
NS=ispmst$$
ART=tests/artifacts/stress
TMP=$(mktemp -d)
LOAD=$PWD/build/tests/httpload
FLOOD=$PWD/build/tests/lanflood
ISPMON_PID=
BG_PIDS=()

mkdir -p "$ART"
cleanup() {
	local p
	for p in "${BG_PIDS[@]}" $ISPMON_PID; do kill -TERM "$p" 2>/dev/null; done
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	netlab_down
	rm -rf "$TMP"
}
netlab_install_trap
trap cleanup EXIT

make -s build/tests/httpload build/tests/lanflood >"$TMP/make.log" 2>&1 ||
	{ not_ok "build httpload and lanflood: $(head -c 400 "$TMP/make.log")"; exit 1; }
[ -x "$BIN" ] || { not_ok "no ispmon binary at $BIN (make first)"; exit 1; }

# kv FILE KEY: value of KEY=VALUE in the last line of FILE that has it.
kv() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k { v = $2 } END { print v }'; }
# le A B / lt A B: float comparisons for check.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 <= b + 0) }'; }
# rss_kb / sockets / cpu_ticks: of the running ispmon.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$ISPMON_PID/status" 2>/dev/null; }
sockets() { find "/proc/$ISPMON_PID/fd" -lname 'socket:*' 2>/dev/null | wc -l; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$ISPMON_PID/stat" 2>/dev/null; }

# wait_ready NS URL LOG: bounded wait (30 s: loading the BPF programs takes
# a while on a busy machine) until /metrics answers 200.
wait_ready() {
	local i
	for ((i = 0; i < 300; i++)); do
		ip netns exec "$1" curl -sf -o /dev/null --max-time 1 "$2" && return 0
		kill -0 "$ISPMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	not_ok "ispmon serves $2: $(head -c 400 "$3")"
	return 1
}

# stop_ispmon NAME LOG: SIGTERM, exit 0, nothing worse than info logged.
stop_ispmon() {
	local rc=0
	kill -TERM "$ISPMON_PID"
	wait "$ISPMON_PID" || rc=$?
	ISPMON_PID=
	check "$1: ispmon exits 0 on SIGTERM ($rc)" [ "$rc" -eq 0 ]
	check "$1: no warning or error logged" bash -c "! grep -Eq 'level=(warn|error)' '$2'"
}

# ---------------------------------------------------------------------------
part_http() {
	local url=http://127.0.0.1:$PORT/metrics log=$ART/http-ispmon.log
	local rss0 sock0 t0 s i n f

	ip netns add "$NS" && ip -n "$NS" link set lo up || { not_ok "namespace $NS"; return 1; }
	ip netns exec "$NS" "$BIN" --iface lo --listen "127.0.0.1:$PORT" --interval 1s \
		--no-ping --no-speedtest >/dev/null 2>"$log" &
	ISPMON_PID=$!
	wait_ready "$NS" "$url" "$log" || return 1
	nsl() { ip netns exec "$NS" "$LOAD" "$@" --addr "127.0.0.1:$PORT" --expect ispmon_build_info; }

	nsl probe --count 20 --interval-ms 100 >"$ART/http-probe-idle.out"
	f=$ART/http-probe-idle.out
	check "idle: 20 scrapes, no error (p50 $(kv "$f" lat_p50_ms) ms, page $(kv "$f" page_bytes) B)" \
		[ "$(kv "$f" errors)" = 0 ]
	sleep 1
	rss0=$(rss_kb)
	sock0=$(sockets)

	# (a) stalled clients alone.
	t0=$SECONDS
	nsl slow --partial 25 --noread 25 --duration 14 --src-spread 4 --src-base 100 \
		>"$ART/http-slow.out" 2>&1 &
	s=$!
	BG_PIDS+=("$s")
	sleep 1.5
	n=$(sockets)
	# The half requests must stay open; a never-read answer that fits in
	# the socket buffers is finished (and, without keep-alive, closed).
	check "stalled: the server holds the 25 half requests ($n sockets, $sock0 before)" \
		[ "$n" -ge $((sock0 + 25)) ]
	nsl probe --count 20 --interval-ms 250 --timeout-ms 5000 >"$ART/http-probe-stalled.out"
	f=$ART/http-probe-stalled.out
	check "stalled: 20 scrapes meanwhile, no error, p50 $(kv "$f" lat_p50_ms) ms, max $(kv "$f" lat_max_ms) ms (<= 500)" \
		bash -c "[ '$(kv "$f" errors)' = 0 ] && awk 'BEGIN { exit !($(kv "$f" lat_max_ms) <= 500) }'"
	# The server's connection timeout is 10 s: all released by 13 s.
	for ((i = 0; i < 100; i++)); do
		n=$(sockets)
		[ "$n" -le $((sock0 + 1)) ] && break
		[ $((SECONDS - t0)) -ge 14 ] && break
		sleep 0.1
	done
	check "stalled: the server released them after $((SECONDS - t0)) s ($n sockets, $sock0 before; timeout 10 s)" \
		[ "$n" -le $((sock0 + 1)) ]
	wait "$s"
	f=$ART/http-slow.out
	check "stalled: the 25 half requests were closed by the server after $(kv "$f" partial_min_life_ms)..$(kv "$f" partial_max_life_ms) ms (9-13 s)" \
		bash -c "[ '$(kv "$f" partial_closed_by_server)' = 25 ] && awk 'BEGIN { exit !($(kv "$f" partial_min_life_ms) >= 9000 && $(kv "$f" partial_max_life_ms) <= 13000) }'"

	# (b) CLIENTS clients for SECONDS_LOAD s, the stalled ones again, a probe.
	local d=$SECONDS_LOAD pl pp ps rss_q rss_peak=0 rss_end tick0 tick1 ov
	ov=$(ip netns exec "$NS" nstat -az TcpExtListenOverflows 2>/dev/null | awk '$1 == "TcpExtListenOverflows" { print $2 }')
	nsl slow --partial 25 --noread 25 --duration $((d + 2)) --restall --src-spread 4 --src-base 100 \
		>"$ART/http-load-slow.out" 2>&1 &
	ps=$!
	nsl load --clients "$CLIENTS" --duration "$d" --timeout-ms 15000 --src-spread 8 --src-base 10 \
		>"$ART/http-load.out" 2>&1 &
	pl=$!
	nsl probe --count "$d" --interval-ms 1000 --timeout-ms 15000 >"$ART/http-load-probe.out" 2>&1 &
	pp=$!
	BG_PIDS+=("$ps" "$pl" "$pp")
	tick0=$(cpu_ticks)
	: >"$ART/http-rss.txt"
	t0=$SECONDS
	while kill -0 "$pl" 2>/dev/null && [ $((SECONDS - t0)) -le $((d + 30)) ]; do
		n=$(rss_kb)
		echo "$((SECONDS - t0)) $n $(sockets)" >>"$ART/http-rss.txt"
		[ "${n:-0}" -gt "$rss_peak" ] && rss_peak=$n
		[ -z "${rss_q:-}" ] && [ $((SECONDS - t0)) -ge $((d / 4)) ] && rss_q=$n
		sleep 1
	done
	tick1=$(cpu_ticks)
	rss_end=$(rss_kb)
	wait "$pl" "$pp" "$ps"
	f=$ART/http-load.out
	echo "# load: $(cat "$f")"
	echo "# probe under load: $(cat "$ART/http-load-probe.out")"
	echo "# stalled during load: $(cat "$ART/http-load-slow.out" | tail -n 1)"
	check "load: $CLIENTS clients x ${d} s: $(kv "$f" requests) requests ($(kv "$f" rps)/s), $(kv "$f" errors) errors" \
		bash -c "[ '$(kv "$f" errors)' = 0 ] && [ '$(kv "$f" started)' = '$CLIENTS' ] && [ '$(kv "$f" requests)' -ge $((d * 10)) ]"
	check "load: request latency p50 $(kv "$f" lat_p50_ms) ms, p99 $(kv "$f" lat_p99_ms) ms, max $(kv "$f" lat_max_ms) ms (p50 <= 250)" \
		le "$(kv "$f" lat_p50_ms)" 250
	f=$ART/http-load-probe.out
	check "load: a scrape a second meanwhile: $(kv "$f" ok)/$d ok, p50 $(kv "$f" lat_p50_ms) ms, p90 $(kv "$f" lat_p90_ms) ms, max $(kv "$f" lat_max_ms) ms (p90 <= 1000, max <= 10000)" \
		bash -c "[ '$(kv "$f" errors)' = 0 ] && awk 'BEGIN { exit !($(kv "$f" lat_p90_ms) <= 1000 && $(kv "$f" lat_max_ms) <= 10000) }'"
	check "load: RSS ${rss0} kB idle, peak ${rss_peak} kB (at most +65536 kB)" \
		[ "$rss_peak" -le $((rss0 + 65536)) ]
	check "load: RSS flat under steady load: ${rss_q:-?} kB at $((d / 4)) s, ${rss_end:-?} kB at the end (at most +8192 kB)" \
		[ "${rss_end:-999999999}" -le $((${rss_q:-0} + 8192)) ]
	echo "# load: ispmon CPU $(awk -v a="$tick0" -v b="$tick1" -v d="$d" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f%%", (b - a) / hz / d * 100 }'), listen queue overflows $(( $(ip netns exec "$NS" nstat -az TcpExtListenOverflows 2>/dev/null | awk '$1 == "TcpExtListenOverflows" { print $2 }') - ${ov:-0} ))"
	# Everything released: the never-reading clients go after the 10 s timeout.
	t0=$SECONDS
	for ((i = 0; i < 150; i++)); do
		n=$(sockets)
		[ "$n" -le $((sock0 + 1)) ] && break
		sleep 0.1
	done
	check "load: every connection released after $((SECONDS - t0)) s ($n sockets, $sock0 before)" \
		[ "$n" -le $((sock0 + 1)) ]
	ip netns exec "$NS" curl -sf "$url" >"$ART/http-after.prom"
	f=$ART/http-after.prom
	local fa fe
	fa=$(metric_value "$f" ispmon_flows_active)
	fe=$(metric_value "$f" 'ispmon_flow_evictions_total{map="flow_state"}')
	check "after: ispmon still serves; flows_active $fa <= 16384, flow evictions $fe" \
		bash -c "[ -n '$fa' ] && [ '$fa' -le 16384 ]"
	echo "# after: RSS $(rss_kb) kB, flows_active $fa, flow_state evictions $fe, pending evictions $(metric_value "$f" 'ispmon_flow_evictions_total{map="pending"}')"
	stop_ispmon "http" "$log"
	ip netns del "$NS"
}

# ---------------------------------------------------------------------------
# devices: sums over a scrape.
dev_sum() { # dev_sum FILE METRIC DIRECTION [EXCLUDE_DEVICE]
	awk -v m="$2" -v d="$3" -v x="${4:-}" '
		index($1, m "{") == 1 && index($1, "direction=\"" d "\"") &&
		(x == "" || !index($1, "device=\"" x "\"")) { s += $2 }
		END { printf "%.0f\n", s }' "$1"
}
dev_labels() { # distinct device labels other than "other"
	grep -o '^ispmon_device_bytes_total{device="[^"]*"' "$1" | sort -u | grep -vc 'device="other"'
}

# run_devices NAME MAX_DEVICES MAC_PREFIX: ispmon on the router with a
# fresh device table, 1000 devices paced in, checks.
run_devices() {
	local name=$1 maxd=$2 pfx=$3 log=$ART/devices-$1-ispmon.log url=http://127.0.0.1:$PORT/metrics
	local st=/sys/class/net/$ROUTER_LAN_IF/statistics f i m0 m1 inj_b inj_f lanb0 lanb1 got want
	local rx0 rx1 drop0 drop1 t0 t1

	ip netns exec "$NS_ROUTER" "$BIN" --iface "$ROUTER_WAN_IF" --lan-iface "$ROUTER_LAN_IF" \
		--max-devices "$maxd" --listen "127.0.0.1:$PORT" --interval 100ms \
		--no-ping --no-speedtest >/dev/null 2>"$log" &
	ISPMON_PID=$!
	wait_ready "$NS_ROUTER" "$url" "$log" || return 1
	# The real device first, so that it holds a label of its own.
	ip netns exec "$NS_LAN" ping -n -q -c 3 -i 0.2 "$ROUTER_LAN_IP4" >/dev/null
	for ((i = 0; i < 50; i++)); do
		ip netns exec "$NS_ROUTER" curl -sf "$url" >"$TMP/m0.prom"
		grep -q "device=\"$LAN_MAC\"" "$TMP/m0.prom" && break
		sleep 0.1
	done
	m0=$TMP/m0.prom
	rx0=$(ip netns exec "$NS_ROUTER" cat "$st/rx_bytes")
	drop0=$(ip netns exec "$NS_ROUTER" cat "$st/rx_dropped")
	ip netns exec "$NS_LANEM" "$FLOOD" --iface "$LANEM_ROUTER_IF" --dst-mac "$ROUTER_LAN_MAC" \
		--dst-ip "$ROUTER_LAN_IP4" --devices 1000 --frames 3 --batch 100 --gap-ms 300 \
		--mac-prefix "$pfx" >"$ART/devices-$name-flood.out" 2>&1
	inj_b=$(kv "$ART/devices-$name-flood.out" bytes)
	inj_f=$(kv "$ART/devices-$name-flood.out" frames)
	sleep 0.5
	ip netns exec "$NS_ROUTER" curl -sf "$url" >"$TMP/m1.prom"
	m1=$TMP/m1.prom
	cp "$m1" "$ART/devices-$name.prom"
	rx1=$(ip netns exec "$NS_ROUTER" cat "$st/rx_bytes")
	drop1=$(ip netns exec "$NS_ROUTER" cat "$st/rx_dropped")
	check "$name: injected 3000 frames from 1000 MACs, $inj_b bytes; $ROUTER_LAN_IF got $((rx1 - rx0)) bytes, dropped $((drop1 - drop0))" \
		bash -c "[ '$inj_f' = 3000 ] && [ $((drop1 - drop0)) = 0 ] && [ $((rx1 - rx0)) -ge '$inj_b' ]"
	got=$(metric_value "$m1" ispmon_devices_seen)
	check "$name: all devices seen: ispmon_devices_seen $got (want 1001: 1000 + the lan device)" [ "$got" = 1001 ]
	want=$((maxd < 1001 ? maxd : 1001))
	got=$(dev_labels "$m1")
	check "$name: $got device labels (--max-devices $maxd) plus \"other\"" \
		bash -c "[ '$got' = '$want' ] && grep -q 'ispmon_device_bytes_total{device=\"other\",direction=\"upload\"}' '$m1'"
	# Every family together: no device label beyond the cap, and the page
	# grows by at most a device's series per label, whatever was seen.
	got=$(grep -o 'device="[^"]*"' "$m1" | sort -u | grep -vc 'device="other"')
	local per=$(grep -c "device=\"$LAN_MAC\"" "$m1") s0=$(grep -vc '^#' "$m0") s1=$(grep -vc '^#' "$m1")
	check "$name: $got distinct device labels across every family (at most $want); $s1 series, from $s0 with one device (at most +$per per label: $((s0 + want * per)))" \
		bash -c "[ '$got' -le '$want' ] && [ '$per' -ge 4 ] && [ '$s1' -le $((s0 + want * per)) ]"
	lanb0=$(metric_value "$m0" "ispmon_device_bytes_total{device=\"$LAN_MAC\",direction=\"upload\"}")
	lanb1=$(metric_value "$m1" "ispmon_device_bytes_total{device=\"$LAN_MAC\",direction=\"upload\"}")
	got=$(($(dev_sum "$m1" ispmon_device_bytes_total upload "$LAN_MAC") - $(dev_sum "$m0" ispmon_device_bytes_total upload "$LAN_MAC")))
	check "$name: the devices' upload bytes (labelled + other) grew by $got = the $inj_b injected (lan device: +$((lanb1 - lanb0)), apart)" \
		[ "$got" = "$inj_b" ]
	got=$(($(dev_sum "$m1" ispmon_device_packets_total upload "$LAN_MAC") - $(dev_sum "$m0" ispmon_device_packets_total upload "$LAN_MAC")))
	check "$name: and their upload packets by $got = $inj_f" [ "$got" = "$inj_f" ]
	got=$(($(dev_sum "$m1" ispmon_device_bytes_total download "$LAN_MAC") - $(dev_sum "$m0" ispmon_device_bytes_total download "$LAN_MAC")))
	check "$name: nothing went back to them: download +$got" [ "$got" = 0 ]
	if command -v promtool >/dev/null; then
		check "$name: promtool check metrics accepts the page" \
			bash -c "promtool check metrics <'$m1' >'$TMP/promtool' 2>&1"
	fi
	ip netns exec "$NS_ROUTER" "$LOAD" probe --addr "127.0.0.1:$PORT" --count 50 --interval-ms 20 \
		--expect ispmon_devices_seen >"$ART/devices-$name-probe.out"
	f=$ART/devices-$name-probe.out
	check "$name: 50 scrapes, page $(kv "$f" page_bytes) B, p50 $(kv "$f" lat_p50_ms) ms, p99 $(kv "$f" lat_p99_ms) ms (p50 <= 50, max <= 500)" \
		bash -c "[ '$(kv "$f" errors)' = 0 ] && awk 'BEGIN { exit !($(kv "$f" lat_p50_ms) <= 50 && $(kv "$f" lat_max_ms) <= 500) }'"
	t0=$(cpu_ticks)
	sleep 3
	t1=$(cpu_ticks)
	echo "# $name: collector with 1001 devices, interval 100 ms: CPU $(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f%%", (b - a) / hz / 3 * 100 }'), RSS $(rss_kb) kB"
	stop_ispmon "$name" "$log"
}

# The kernel's device table (an LRU map) against 1000 devices all active at
# once, on a fresh table: sized 1024 + 128 per CPU (the LRU's per-CPU free
# lists), it holds them all, every byte counted. Then 300 more: past what
# the collector remembers (1024 devices), measured only.
burst_devices() {
	local log=$ART/devices-burst-ispmon.log url=http://127.0.0.1:$PORT/metrics n b g g0 s s0
	ip netns exec "$NS_ROUTER" "$BIN" --iface "$ROUTER_WAN_IF" --lan-iface "$ROUTER_LAN_IF" \
		--max-devices 1 --listen "127.0.0.1:$PORT" --interval 100ms --no-ping --no-speedtest \
		>/dev/null 2>"$log" &
	ISPMON_PID=$!
	wait_ready "$NS_ROUTER" "$url" "$log" || return 1
	g0=0 s0=0
	for n in 1000 300; do
		ip netns exec "$NS_LANEM" "$FLOOD" --iface "$LANEM_ROUTER_IF" --dst-mac "$ROUTER_LAN_MAC" \
			--dst-ip "$ROUTER_LAN_IP4" --devices "$n" --frames 1 --rounds 3 --batch "$n" --gap-ms 100 \
			--mac-prefix $((n == 300 ? 30 : 31)) >"$TMP/burst.out"
		sleep 0.5
		ip netns exec "$NS_ROUTER" curl -sf "$url" >"$TMP/b.prom"
		b=$(kv "$TMP/burst.out" bytes)
		g=$(dev_sum "$TMP/b.prom" ispmon_device_bytes_total upload)
		s=$(metric_value "$TMP/b.prom" ispmon_devices_seen)
		echo "# burst: $n new devices at once (x3, 100 ms apart): $((s - s0)) seen, $((g - g0)) of $b bytes counted ($(awk -v g=$((g - g0)) -v b="$b" 'BEGIN { printf "%.0f", 100 * g / b }')%)"
		[ "$n" = 1000 ] && check "burst: 1000 devices at once on a fresh table: $((s - s0)) seen, $((g - g0)) of $b bytes counted (want all)" \
			[ "$((s - s0))" = 1000 -a "$((g - g0))" = "$b" ]
		g0=$g s0=$s
	done
	stop_ispmon "burst" "$log"
}

part_devices() {
	netlab_build_tools || { not_ok "netlab tools"; return 1; }
	netlab_up 0 0 || { not_ok "netlab_up"; return 1; }
	# The injected frames stop at the router's door (they are counted at
	# its TC hook before): no ICMP errors, no ARP for the fake devices.
	ip netns exec "$NS_ROUTER" nft -f - <<-EOF || { not_ok "nft drop rule"; return 1; }
		table inet stressdrop {
			chain pre {
				type filter hook prerouting priority raw; policy accept;
				iifname "$ROUTER_LAN_IF" udp dport 9 drop
			}
		}
	EOF
	run_devices top32 32 1d
	run_devices top1000 1000 1e
	burst_devices
}

for p in $PARTS; do
	case $p in
	http) part_http ;;
	devices) part_devices ;;
	*) not_ok "unknown part '$p' (http, devices)" ;;
	esac
	[ -n "$ISPMON_PID" ] && { kill -TERM "$ISPMON_PID"; wait "$ISPMON_PID"; ISPMON_PID=; }
done
tap_exit
