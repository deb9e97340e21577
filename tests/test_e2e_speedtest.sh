#!/usr/bin/env bash
# The speed test inside ispmon, end to end: WAN 30 ms RTT and 20 Mbit/s each
# way; ispmon in the router with a speed-test server in wan, first test 2-8 s
# after start. /metrics must show download and upload within 5% of iperf3's
# goodput, the data used, success; the latency under load is the kernel's
# view of the test's own connections (TCP hooks): above the 30 ms base, below
# base + a full shaper queue, and within 15% of the median of pings from the
# router during the same part of the load; the retransmits of the test's
# connections within the router namespace's RetransSegs over the same part
# of the load (polled every 20 ms: the bracket from the polls just inside to
# those 0.1 s outside it), both on this line and with 1% random loss on the
# way up (> 0 there; the delay line's own count of frames lost near 1%); a
# second ispmon pointed at a server that answers 404 reports the failure
# with its reason and keeps running.
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

PING_PID= SNMP_PID=
e2e_cleanup() {
	[ -n "$PING_PID" ] && kill -TERM "$PING_PID" 2>/dev/null
	[ -n "$SNMP_PID" ] && kill -TERM "$SNMP_PID" 2>/dev/null
}

netlab_build_tools || exit 1
netlab_up 15 15 && netlab_start_servers && netlab_shape down 20 && netlab_shape up 20 || exit 1

iperf_kbit() { # goodput seen by the receiver, from lan, 1 s omitted
	ip netns exec "$NS_LAN" timeout 30 iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 5 -O 1 -f k \
		--connect-timeout 3000 -J "$@" 2>/dev/null |
		awk -F'[:,]' '/"sum_received"/ { f = 1 } f && /"bits_per_second"/ { printf "%.0f\n", $2 / 1000; exit }'
}
truth_down=$(iperf_kbit -R)
truth_up=$(iperf_kbit)
check "iperf3 goodput: down ${truth_down:-?} kbit/s, up ${truth_up:-?} kbit/s" \
	bash -c "[ -n '$truth_down' ] && [ -n '$truth_up' ]"

# start_ispmon NAME ARGS...: run it in the router, wait for /metrics
start_ispmon() {
	local name=$1
	shift
	: >"$TMP/$name.err"
	ispmon_run "$TMP/$name.err" --interval 500ms --no-ping --speed-first-delay 2s --speed-interval 1m "$@"
}

# The truth for retransmits: the router namespace's RetransSegs, stamped,
# every 20 ms (bounded: 90 s). Nothing else there sends over the network.
ip netns exec "$NS_ROUTER" bash -c 'end=$((SECONDS + 90))
	while ((SECONDS < end)); do
		h=
		while read -r -a f; do
			[ "${f[0]}" = Tcp: ] || continue
			if [ -z "$h" ]; then h=("${f[@]}"); continue; fi
			for i in "${!h[@]}"; do [ "${h[i]}" = RetransSegs ] && echo "$EPOCHREALTIME ${f[i]}"; done
			break
		done </proc/net/snmp
		sleep 0.02
	done' >"$TMP/snmp.log" 2>&1 &
SNMP_PID=$!
logts() { date -d "$(sed -E 's/^ts=([^ ]+) .*/\1/' <<<"$1")" +%s.%N 2>/dev/null; }
# check_retrans NAME DIR: the test's retransmits in DIR against RetransSegs
# over its load: from rtt_begin (the first window line at the grace period,
# debug log) to the end (the result line). The lower bound counts from the
# first poll after the start to the last 0.1 s before the connections
# stopped, the upper from the last poll 0.1 s before the start to the first
# after the result: the kernel counts a retransmission at once, the hooks
# (tracepoint rung) at the socket's next ACK.
check_retrans() {
	local name=$1 dir=$2 bl el tb te got bounds
	bl=$(grep "msg=\"speedtest window\" direction=$dir " "$TMP/$name.err" |
		awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^t=/) t = substr($i, 3) } t >= 0.999999 { print; exit }')
	el=$(grep "msg=\"speedtest\" .*direction=$dir result=ok" "$TMP/$name.err" | head -n 1)
	tb=$(logts "$bl") te=$(logts "$el")
	got=$(val "ispmon_speedtest_retransmits{direction=\"$dir\"}")
	bounds=$(awk -v b="${tb:-0}" -v e="${te:-0}" -v m=0.1 \
		-v s="$(awk -v b="${tb:-0}" -v t="$(sed -nE 's/.* t=([0-9.]+) .*/\1/p' <<<"$bl")" \
			-v el="$(sed -nE 's/.* elapsed_s=([0-9.]+) .*/\1/p' <<<"$el")" 'BEGIN { printf "%.3f", b - t + el }')" '
		$1 <= b - m { u0 = $2 } $1 >= e && u1 == "" { u1 = $2 }
		$1 >= b && l0 == "" { l0 = $2 } $1 <= s - m { l1 = $2 }
		END { if (u0 != "" && u1 != "" && l0 != "" && l1 != "") print l1 - l0, u1 - u0 }' "$TMP/snmp.log")
	[ -n "$tb" ] && [ -n "$te" ] && [ -n "$bounds" ] || bounds=
	read -r RT_LO RT_HI <<<"${bounds:-x x}"
	RT_GOT=$got
	check "$name: $dir: retransmits ${got:-none} within RetransSegs [$RT_LO, $RT_HI] over the load" \
		awk -v g="${got:-x}" -v l="$RT_LO" -v h="$RT_HI" 'BEGIN { exit !(g ~ /^[0-9]+$/ && l != "x" && g >= l && g <= h) }'
}

SERVER="$SRV_IP4:$HTTP_PORT"
start_ispmon ok --log-level debug --speed-url "http://$SERVER/bytes/{bytes}" --speed-upload-url "http://$SERVER/upload" ||
	{ not_ok "ispmon starts with a speed-test server"; exit 1; }
# Pings through the same bottleneck queues while the test runs: the truth
# for the latency under load (bounded: 30 s).
r ping -D -n -i 0.05 -w 30 "$SRV_IP4" >"$TMP/ping.log" 2>&1 &
PING_PID=$!
# wait_test: until the first test's both directions are done (bounded:
# its delay and up to 2 x 10 s of load fit in 30 s).
wait_test() {
	for _ in $(seq 1 60); do
		scrape
		awk '/^ispmon_speedtest_runs_total\{direction="upload"/ { n += $2 } END { exit !(n > 0) }' "$TMP/m.prom" &&
			[ "$(val ispmon_speedtest_running)" = 0 ] && break
		sleep 0.5
	done
}
wait_test
down=$(val "ispmon_speedtest_bytes_per_second{direction=\"download\",server=\"$SERVER\"}")
up=$(val "ispmon_speedtest_bytes_per_second{direction=\"upload\",server=\"$SERVER\"}")
down_k=$(awk -v v="${down:-0}" 'BEGIN { printf "%.0f", v * 8 / 1000 }')
up_k=$(awk -v v="${up:-0}" 'BEGIN { printf "%.0f", v * 8 / 1000 }')
check "download $down_k kbit/s within 5% of iperf3's $truth_down" rel_near "$down_k" "${truth_down:-1}" 0.05
check "upload $up_k kbit/s within 5% of iperf3's $truth_up" rel_near "$up_k" "${truth_up:-1}" 0.05
check "probe success for $SERVER" [ "$(val "ispmon_probe_success{probe=\"speedtest\",target=\"$SERVER\"}")" = 1 ]
used=$(val ispmon_speedtest_data_used_bytes_total)
check "data used ${used:-?} bytes: the test's traffic, under 2 x 30 MB" \
	awk -v u="${used:-0}" 'BEGIN { exit !(u > 2e6 && u < 60e6) }'
kill -TERM "$PING_PID" 2>/dev/null
wait "$PING_PID" 2>/dev/null
PING_PID=
check "the loaded RTT is the kernel's view (TCP hooks)" \
	[ "$(val 'ispmon_speedtest_rtt_source_info{source="kernel"}')" = 1 ]
# ping_median FROM TO: median ping RTT (ms) of the replies stamped in [FROM, TO] (unix s).
ping_median() {
	awk -v a="$1" -v b="$2" -F'[][ =]+' '/ time=/ {
		for (i = 1; i <= NF; i++) if ($i == "time") v = $(i + 1)
		if ($2 >= a && $2 <= b) print v + 0 }' "$TMP/ping.log" | sort -n |
		awk '{ x[n++] = $1 } END { if (!n) exit 1
			printf "%.1f\n", (n % 2) ? x[int(n / 2)] : (x[n / 2 - 1] + x[n / 2]) / 2 }'
}
queue_ms=$(awk 'BEGIN { printf "%.0f", 1000 * 1514 * 8 / 20e6 * 1000 }') # pfifo 1000 at 20 Mbit/s
for dir in download upload; do
	rtt=$(val "ispmon_speedtest_loaded_rtt_seconds{direction=\"$dir\"}")
	rtt_ms=$(awk -v r="${rtt:-0}" 'BEGIN { printf "%.1f", r * 1000 }')
	check "$dir: loaded RTT $rtt_ms ms above the 30 ms base and below base + a full queue ($queue_ms ms)" \
		awk -v r="$rtt_ms" -v q="$queue_ms" 'BEGIN { exit !(r > 31.5 && r < 30 + q) }'
	# The load's RTT period: from grace (1 s) after the start to the end,
	# which the result line's time stamp closes.
	line=$(grep "msg=\"speedtest\" .*direction=$dir result=ok" "$TMP/ok.err" | head -n 1)
	end=$(date -d "$(sed -E 's/^ts=([^ ]+) .*/\1/' <<<"$line")" +%s.%N 2>/dev/null)
	el=$(sed -nE 's/.* elapsed_s=([0-9.]+) .*/\1/p' <<<"$line")
	truth=$(ping_median "$(awk -v e="${end:-0}" -v l="${el:-0}" 'BEGIN { printf "%.3f", e - l + 1 }')" "${end:-0}")
	check "$dir: loaded RTT $rtt_ms ms within 15% of the pings' median meanwhile (${truth:-none} ms)" \
		rel_near "$rtt_ms" "${truth:-0}" 0.15
	check_retrans ok $dir
done
if promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1; then
	ok "promtool check metrics accepts the page with speed-test metrics"
else
	not_ok "promtool check metrics: $(head -c 300 "$TMP/promtool")"
fi

# 1% of the frames lost on the way up: the upload retransmits (the
# download's data comes from the server, which retransmits it). Rates are
# not checked here; 4 s per direction at most.
# up_frames: "FORWARDED LOST" frames on the way up so far.
up_frames() { netlab_stats | awk '$1 == "up" { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	print v["fwd_frames"], v["drop_loss"] }'; }
read -r fwd0 lost0 < <(up_frames)
netlab_set_loss 0 1 || exit 1
start_ispmon loss --log-level debug --speed-first-delay 1s --speed-max-time 4s \
	--speed-url "http://$SERVER/bytes/{bytes}" --speed-upload-url "http://$SERVER/upload" ||
	{ not_ok "ispmon starts on the lossy line"; exit 1; }
wait_test
check_retrans loss download
check_retrans loss upload
check "loss: upload: retransmits ${RT_GOT:-none} > 0 with 1% loss" [ "${RT_GOT:-0}" -gt 0 ]
netlab_set_loss 0 0 || exit 1
read -r fwd1 lost1 < <(up_frames)
check "loss: the delay line dropped $((lost1 - lost0)) of $((fwd1 - fwd0 + lost1 - lost0)) frames going up (1% +-0.4%)" \
	awk -v l=$((lost1 - lost0)) -v n=$((fwd1 - fwd0 + lost1 - lost0)) 'BEGIN { exit !(n > 1000 && l >= 0.006 * n && l <= 0.014 * n) }'
kill -TERM "$SNMP_PID" 2>/dev/null
wait "$SNMP_PID" 2>/dev/null
SNMP_PID=

# A failing server: a reason, and ispmon carries on serving.
start_ispmon fail --speed-url "http://$SERVER/status/404" ||
	{ not_ok "ispmon starts with a failing speed-test server"; exit 1; }
for _ in $(seq 1 40); do
	scrape
	grep -q 'ispmon_probe_failures_total{probe="speedtest"' "$TMP/m.prom" && break
	sleep 0.5
done
check "404 counted as failure reason http_4xx" \
	grep -q "ispmon_probe_failures_total{probe=\"speedtest\",.*reason=\"http_4xx\".* [1-9]" "$TMP/m.prom"
check "probe success 0 for the failing server" \
	[ "$(val "ispmon_probe_success{probe=\"speedtest\",target=\"$SERVER\"}")" = 0 ]
sleep 1
check "ispmon still running and serving after the failure" bash -c "kill -0 $ISPMON_PID && ip netns exec $NS_ROUTER curl -sf -o /dev/null http://127.0.0.1:8000/metrics"
kill -TERM "$ISPMON_PID"
rc=0
wait "$ISPMON_PID" || rc=$?
ISPMON_PID=
check "clean exit ($rc)" [ "$rc" = 0 ]
check "no error logged" bash -c "! grep -q 'level=error' $TMP/ok.err $TMP/loss.err $TMP/fail.err"
tap_exit
