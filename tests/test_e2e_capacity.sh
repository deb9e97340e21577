#!/usr/bin/env bash
# Passive capacity and latency under load in the emulated home network
# (WAN RTT 40 ms). For a line shaped to 20 and then 50 Mbit/s, a bulk
# download and a bulk upload from the lan device must give a passive
# capacity estimate within 5% of the goodput iperf3 measures; the 100 ms
# peak is kept per scrape interval; app-limited
# traffic (2 Mbit/s paced on the 50 Mbit/s line) must not move it; a deep
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
		idle_pings 4
	done
	cp "$TMP/m.prom" "tests/artifacts/capacity-$rate.prom" 2>/dev/null
done

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

# App-limited: 2 Mbit/s paced UDP on the 50 Mbit/s line, on a fresh ispmon:
# no standing queue, so no saturation and no estimate.
start_ispmon || exit 1
idle_pings 6
ip netns exec "$NS_LAN" iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t "$SECS" -R -b 2M >/dev/null 2>&1
ip netns exec "$NS_LAN" iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 4 -R -u -b 2M >/dev/null 2>&1
sleep 1.5
scrape
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
check "plan exported as bytes/s" [ "$(val 'ispmon_plan_bytes_per_second{direction="download"}')" = 6250000 ]
if promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1; then
	ok "promtool check metrics accepts the capacity metrics"
else
	not_ok "promtool check metrics: $(head -c 300 "$TMP/promtool")"
fi
check "no warning or error logged" bash -c "! grep -Eq 'level=(warn|error)' $TMP/ispmon.err"
tap_exit
