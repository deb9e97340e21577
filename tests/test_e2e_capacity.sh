#!/usr/bin/env bash
# Passive capacity and latency under load in the emulated home network
# (WAN RTT 40 ms). For a line shaped to 20 and then 50 Mbit/s, a bulk
# download and a bulk upload from the lan device must give a passive
# capacity estimate within 5% of the goodput iperf3 measures, from at least
# 5 saturated intervals; ispmon's byte and packet counters equal the
# router's WAN interface counters exactly over line-rate transfers (read in
# quiet moments); the 100 ms peak is kept per scrape interval, and a
# ~0.3 s burst shows at the line rate in it where no 1 s interval could;
# app-limited traffic (2 Mbit/s paced on the 50 Mbit/s line, seen flowing
# at that rate by iperf3 and by ispmon) must not move the estimate; a deep
# shaper queue must show as bufferbloat (worse grade) and a short one not.
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

SECS=${CAPACITY_SECONDS:-8}

netlab_build_tools || exit 1
netlab_up 20 20 || exit 1
netlab_start_servers || exit 1

# Pings keep WAN-leg samples coming during a download (whose pure ACKs give
# none), as they do on a real router.
start_ispmon() {
	ispmon_run "$TMP/ispmon.err" --interval 1s --no-speedtest \
		--ping-target "$SRV_IP4" --ping-interval 300ms \
		--plan-download 50M --plan-upload 50M
}
# The same without pings, so the line can be quiet (for exact counters).
start_quiet_ispmon() {
	ispmon_run "$TMP/ispmon.err" --interval 1s --no-speedtest --no-ping \
		--plan-download 50M --plan-upload 50M
}
# qsnap NAME: a scrape ($TMP/NAME.prom) and the router's WAN interface
# counters ($TMP/NAME.if: rx_bytes tx_bytes rx_packets tx_packets) of one
# quiet moment: read before and after the scrape, more than an interval
# (1 s) apart, and unchanged, so the page has counted all they have.
wan_ctrs() {
	local s=/sys/class/net/$ROUTER_WAN_IF/statistics
	r cat $s/rx_bytes $s/tx_bytes $s/rx_packets $s/tx_packets | tr '\n' ' '
}
qsnap() {
	quiet_moment 1.3 wan_ctrs "$TMP/$1.prom" r curl -sf --max-time 2 http://127.0.0.1:8000/metrics &&
		echo "$QUIET" >"$TMP/$1.if"
}
# exact_counters A B WHAT: ispmon's per-direction bytes and packets between
# two quiet moments equal the WAN interface's (download = rx).
exact_counters() {
	local a=$1 b=$2 d c i got want
	for d in download upload; do
		for c in bytes packets; do
			case $d-$c in download-bytes) i=1 ;; upload-bytes) i=2 ;; download-packets) i=3 ;; upload-packets) i=4 ;; esac
			want=$(($(cut -d' ' -f$i "$TMP/$b.if") - $(cut -d' ' -f$i "$TMP/$a.if")))
			got=$(awk -v x="$(val "ispmon_passive_${c}_total{direction=\"$d\"}" "$TMP/$a.prom")" \
				-v y="$(val "ispmon_passive_${c}_total{direction=\"$d\"}" "$TMP/$b.prom")" 'BEGIN { printf "%.0f", y - x }')
			check "$3: $d $c $got, WAN interface $want, exactly" [ "$got" = "$want" ]
		done
	done
}
# iperf DIR: bulk transfer from the lan device for SECS s; prints the
# receiver's goodput in bytes/s (TCP payload, the first second omitted).
# A second argument picks the congestion control (this kernel's default is
# BBR, which keeps queues short; CUBIC fills them).
iperf() {
	local rev= cc=()
	[ "$1" = download ] && rev=-R
	[ -n "${2:-}" ] && cc=(-C "$2")
	ip netns exec "$NS_LAN" timeout $((SECS + 20)) iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" \
		-t "$SECS" -O 1 $rev "${cc[@]}" -J 2>/dev/null |
		awk -F'[:,]' '/"sum_received"/ { f = 1 } f && /"bits_per_second"/ { printf "%.0f\n", $2 / 8; exit }'
}
# A little idle time with pings so the idle RTT baseline exists.
idle_pings() { ip netns exec "$NS_LAN" ping -q -n -c "${1:-8}" -i 0.5 "$SRV_IP4" >/dev/null; }

for rate in 20 50; do
	netlab_unshape
	netlab_shape down $rate || exit 1
	netlab_shape up $rate || exit 1
	start_ispmon || { not_ok "ispmon starts"; exit 1; }
	idle_pings 6
	for dir in download upload; do
		# The delay lines are userspace programs on a shared 2-core
		# machine: when they fall behind, the line carries less than the
		# shaper's rate and says nothing about the shaper. Such a run is
		# repeated once, with a fresh ispmon (the estimate must come from
		# the run whose goodput is the truth).
		for try in 1 2; do
			truth=$(iperf $dir)
			awk -v t="${truth:-0}" -v r="$((rate * 125000))" 'BEGIN { exit !(t < 0.85 * r) }' || break
			[ $try = 2 ] && break
			echo "# $rate Mbit/s $dir: the testbed carried $truth B/s, under 0.85x the shaped rate: once more"
			start_ispmon || { not_ok "ispmon restarts"; exit 1; }
			idle_pings 6
		done
		sleep 1.5
		scrape
		est=$(val "ispmon_passive_capacity_bytes_per_second{direction=\"$dir\"}")
		ev=$(val "ispmon_passive_capacity_saturated_intervals{direction=\"$dir\"}")
		peak=$(val "ispmon_passive_throughput_peak_bytes_per_second{direction=\"$dir\"}")
		# Downloads reach the router through the bottleneck: their peak is
		# the line rate. Uploads are seen before it, with the sender's
		# bursts on top (up to twice the line rate here): at least the rate.
		hi=1.5
		[ $dir = upload ] && hi=3
		check "$rate Mbit/s $dir: 100 ms peak ${peak:-none} B/s at 0.85-${hi}x the shaped L2 rate" \
			awk -v p="${peak:-0}" -v r="$((rate * 125000))" -v h=$hi 'BEGIN { exit !(p >= 0.85 * r && p <= h * r) }'
		check "$rate Mbit/s $dir: estimate ${est:-unset} B/s vs iperf3 goodput ${truth:-?} B/s within 5% (${ev:-0} saturated intervals)" \
			rel_near "${est:-0}" "${truth:-1}" 0.05
		# The evidence: at least the estimator's minimum (5), at most
		# the seconds the transfer lasted (SECS + 1 omitted, + 1 for an
		# interval it straddles).
		check "$rate Mbit/s $dir: ${ev:-0} saturated intervals behind the estimate, 5 .. $((SECS + 2))" \
			bash -c "[ '${ev:-0}' -ge 5 ] && [ '${ev:-0}' -le $((SECS + 2)) ]"
		idle_pings 4
	done
	cp "$TMP/m.prom" "tests/artifacts/capacity-$rate.prom" 2>/dev/null

	# Byte counters exact at this rate: line-rate transfers both ways
	# between two quiet moments (ispmon without pings: a ping every
	# 300 ms leaves none), against the router's WAN interface counters.
	start_quiet_ispmon || { not_ok "ispmon starts without pings"; exit 1; }
	qsnap "x$rate-0" || not_ok "$rate Mbit/s: a quiet moment before the transfers"
	ip netns exec "$NS_LAN" iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 2 -R >/dev/null 2>&1
	ip netns exec "$NS_LAN" iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 2 >/dev/null 2>&1
	qsnap "x$rate-1" || not_ok "$rate Mbit/s: a quiet moment after the transfers"
	exact_counters "x$rate-0" "x$rate-1" "$rate Mbit/s, 2 s at line rate each way"
done

# The 100 ms sampling matters: a 2 MB download on the idle 50 Mbit/s line
# (~0.5 s, of it ~0.25 s at the line rate after slow start) has its peak
# near the line rate, while the whole burst, D bytes, is well under what
# one second at the line rate carries: no 1 s interval could show more
# than D B/s. The quiet ispmon (no pings) from above.
qsnap b0 || not_ok "burst: a quiet moment before"
took=$(lan curl -sS -o /dev/null -w '%{time_total}' "http://$SRV_IP4:$HTTP_PORT/bytes/2000000")
sleep 1.5
qsnap b1 || not_ok "burst: a quiet moment after"
peak=$(val 'ispmon_passive_throughput_peak_bytes_per_second{direction="download"}' "$TMP/b1.prom")
burst=$(awk -v x="$(val 'ispmon_passive_bytes_total{direction="download"}' "$TMP/b0.prom")" \
	-v y="$(val 'ispmon_passive_bytes_total{direction="download"}' "$TMP/b1.prom")" 'BEGIN { printf "%.0f", y - x }')
check "burst of ${took:-?} s: 100 ms peak ${peak:-none} B/s at 0.85-1.5x the 6.25e6 B/s line rate" \
	awk -v p="${peak:-0}" 'BEGIN { exit !(p >= 0.85 * 6250000 && p <= 1.5 * 6250000) }'
check "burst: all of it, $burst B, is under half a second at the line rate: 1 s sampling would show at most $burst B/s" \
	awk -v d="$burst" 'BEGIN { exit !(d >= 2000000 && d < 0.5 * 6250000) }'
exact_counters b0 b1 "burst"

# Peaks per scrape: a 2 s download, then 15 s quiet (longer than any
# sliding window would keep it): the next scrape still shows the burst,
# over a window reaching back to the previous scrape; the scrape after that
# shows only the quiet since.
scrape
t0=$SECONDS
ip netns exec "$NS_LAN" iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 2 -R >/dev/null 2>&1
sleep 15
scrape
peak=$(val 'ispmon_passive_throughput_peak_bytes_per_second{direction="download"}')
win=$(val ispmon_passive_throughput_peak_window_seconds)
check "peak per scrape: a burst 15 s ago is still the peak (${peak:-none} B/s >= 0.85 x 50 Mbit/s) over the ${win:-?} s since the last scrape ($((SECONDS - t0)) s)" \
	awk -v p="${peak:-0}" -v w="${win:-0}" -v e="$((SECONDS - t0))" 'BEGIN { exit !(p >= 0.85 * 6250000 && w >= e - 2 && w <= e + 2) }'
sleep 2
scrape
peak=$(val 'ispmon_passive_throughput_peak_bytes_per_second{direction="download"}')
win=$(val ispmon_passive_throughput_peak_window_seconds)
check "peak per scrape: the next scrape shows only the quiet 2 s since (${peak:-none} B/s < 50 kB/s, window ${win:-?} s)" \
	awk -v p="${peak:-1e9}" -v w="${win:-0}" 'BEGIN { exit !(p < 50000 && w >= 1 && w <= 3.5) }'

# App-limited: 2 Mbit/s paced TCP, then UDP, on the 50 Mbit/s line, on a
# fresh ispmon: no standing queue, so no saturation and no estimate. The
# streams must have run: iperf3 received 2 Mbit/s (+-10%), and ispmon's
# download bytes over each run are 1.00-1.10x the payload iperf3 received
# (L2 headers add 4.6% to a 1448-byte TCP segment, 2.9% to UDP's).
start_ispmon || exit 1
idle_pings 6
for proto in tcp udp; do
	u=()
	[ $proto = udp ] && u=(-u)
	t=$SECS
	[ $proto = udp ] && t=4
	scrape "$TMP/a0.prom"
	ip netns exec "$NS_LAN" timeout $((t + 20)) iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t $t -R -b 2M "${u[@]}" -J \
		>"$TMP/app-$proto.json" 2>/dev/null
	sleep 1.5
	scrape "$TMP/a1.prom"
	got=$(jq -r '.end.sum_received.bytes // empty' "$TMP/app-$proto.json" 2>/dev/null)
	bps=$(jq -r '.end.sum_received.bits_per_second // empty' "$TMP/app-$proto.json" 2>/dev/null)
	secs=$(jq -r '.end.sum_received.seconds // empty' "$TMP/app-$proto.json" 2>/dev/null)
	seen=$(awk -v x="$(val 'ispmon_passive_bytes_total{direction="download"}' "$TMP/a0.prom")" \
		-v y="$(val 'ispmon_passive_bytes_total{direction="download"}' "$TMP/a1.prom")" 'BEGIN { printf "%.0f", y - x }')
	check "app-limited $proto: iperf3 received ${bps:-nothing} bit/s, within 10% of 2 Mbit/s" \
		rel_near "${bps:-0}" 2000000 0.10
	check "app-limited $proto: ispmon saw $seen B down ($(awk -v s="$seen" -v t="${secs:-1}" 'BEGIN { printf "%.2f", s * 8 / t / 1e6 }') Mbit/s), 1.00-1.10x the ${got:-?} B iperf3 received" \
		awk -v s="$seen" -v g="${got:-0}" 'BEGIN { exit !(g > 0 && s >= g && s <= 1.10 * g) }'
done
cp "$TMP/a1.prom" "$TMP/m.prom"
est=$(val 'ispmon_passive_capacity_bytes_per_second{direction="download"}')
sat=$(val 'ispmon_passive_saturated_intervals_total{direction="download"}')
check "app-limited 2 Mbit/s: no capacity estimate (${est:-unset}), ${sat:-?} saturated intervals" \
	bash -c "[ -z '$est' ] && [ '${sat:-1}' = 0 ]"

# Bufferbloat: 20 Mbit/s with a deep queue (1000 packets: ~600 ms) and with
# a short one (20 packets: ~12 ms), a CUBIC download filling it.
for q in 1000 20; do
	netlab_unshape
	netlab_shape down 20 $q || exit 1
	netlab_shape up 20 $q || exit 1
	start_ispmon || exit 1
	idle_pings 10
	iperf download cubic >/dev/null
	sleep 1.5
	scrape
	bloat=$(val ispmon_bufferbloat_seconds)
	grade=$(grep -o 'ispmon_bufferbloat_grade_info{grade="[^"]*"' "$TMP/m.prom" | cut -d'"' -f2)
	idle=$(val ispmon_passive_rtt_idle_seconds)
	loaded=$(val ispmon_passive_rtt_loaded_seconds)
	echo "# queue $q: idle ${idle:-?} s, loaded ${loaded:-?} s, bufferbloat ${bloat:-?} s, grade ${grade:-?}"
	# The baseline is the path's, whatever the queue held after the load.
	check "queue $q: idle baseline ${idle:-?} s within 4 ms of the 40 ms path" near "${idle:-1}" 0.040 0.004
	if [ $q = 1000 ]; then
		deep_grade=${grade:-}
		check "deep queue: loaded RTT rises by > 60 ms, grade C or worse (${bloat:-?} s, ${grade:-?})" \
			bash -c "awk -v b='${bloat:-0}' 'BEGIN { exit !(b > 0.06) }' && [[ '${grade:-}' == [CDF] ]]"
	else
		check "short queue: bufferbloat under 30 ms, grade A or A+ (${bloat:-?} s, ${grade:-?})" \
			bash -c "awk -v b='${bloat:-1}' 'BEGIN { exit !(b < 0.03) }' && [[ '${grade:-}' == A || '${grade:-}' == A+ ]]"
		check "the deep queue's grade ($deep_grade) is worse than the short one's (${grade:-?})" \
			[ "$deep_grade" \> "${grade:-Z}" ]
	fi
done
check "plan exported as bytes/s: --plan-download 50M and --plan-upload 50M are 6250000 each" \
	[ "$(val 'ispmon_plan_bytes_per_second{direction="download"}')/$(val 'ispmon_plan_bytes_per_second{direction="upload"}')" = 6250000/6250000 ]
if promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1; then
	ok "promtool check metrics accepts the capacity metrics"
else
	not_ok "promtool check metrics: $(head -c 300 "$TMP/promtool")"
fi
check "no warning or error logged" bash -c "! grep -Eq 'level=(warn|error)' $TMP/ispmon.err"
tap_exit
