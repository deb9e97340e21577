#!/usr/bin/env bash
# make demo, shortened: scripts/demo.sh with DEMO_SECONDS=62 and its cycle
# compressed (DEMO_TIME_SCALE=0.6: normal, bufferbloat at 15 s, a 4.8 s
# outage at 27 s, normal, evening peak at 42 s) must build the household
# (5 devices), reach ispmon and Prometheus from this machine at the URLs it
# prints, show every device's kind of traffic in ispmon (bulk, video, a
# two-way call, web, DNS, a device without TCP timestamps measured by
# SEQ/ACK), run a speed test, record the outage, and follow the line
# through its phases against the emulated truth, from /metrics taken every
# second: the WAN-leg round trips of the normal line (from the 16 ms path,
# at most its full queues more), far above in the bufferbloat phase (ispmon's
# loaded round trips too), from the peak's 50 ms path later; the download
# rate near the 50 Mbit/s line in the bloat phase and held under the
# peak's 20 Mbit/s, the capacity estimate with it. Prometheus scrapes all
# along and evaluates the recording rule ispmon:internet_up (down in the
# outage); DEMO_SCREENSHOTS takes its four screenshots (OK, down, the end
# at desktop and phone width); and the demo leaves nothing behind: no
# namespace, link, run directory or process. A second run stopped with
# SIGINT cleans up as well.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
for t in prometheus yq jq iperf3 chromium node; do
	command -v "$t" >/dev/null || { echo "not ok - $t missing (scripts/deps.sh installs it)"; exit 1; }
done
make -s -C tests/tools >/dev/null && [ -x ./ispmon ] || { echo "not ok - ./ispmon or the tools are not built"; exit 1; }

SECS=${DEMO_TEST_SECONDS:-62}
SCALE=0.6
TMP=$(mktemp -d)
DPID=
cleanup() {
	[ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# start_demo LOG ENV...: scripts/demo.sh in the background; waits for its
# banner and sets URL (the status page) and PREFIX (its namespaces).
start_demo() {
	local log=$1
	shift
	# A background job starts with SIGINT ignored, which bash cannot trap:
	# perl puts it back to default, as in a terminal.
	env "$@" setsid perl -e '$SIG{INT} = "DEFAULT"; exec @ARGV or die' bash scripts/demo.sh >"$log" 2>&1 &
	DPID=$!
	PREFIX=demo$DPID
	URL=
	for _ in $(seq 1 150); do
		URL=$(awk '$1 == "Status" && $2 == "page" { print $3 }' "$log" 2>/dev/null)
		[ -n "$URL" ] && return 0
		kill -0 "$DPID" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
# sessions PID: the sessions of PID and every process under it.
sessions() {
	ps -eo pid=,ppid=,sid= | awk -v root="$1" '{ par[$1] = $2; sid[$1] = $3 }
		END { for (p in par) { q = p; while ((q in par) && q != root && q > 1) q = par[q]; if (q == root) print sid[p] } }'
}
# left_procs SIDS: processes still in the sessions listed (one a line: the
# demo's and its jobs', each a session of its own), zombies aside (dead,
# their parent has yet to reap them); what is on its way out gets 2 s.
left_procs() {
	local out
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		out=$(ps -eo sid=,pid=,stat=,args= |
			awk 'NR == FNR { s[$1]; next } ($1 in s) && $3 !~ /^Z/ { print $2, $4, $5; if (++n >= 5) exit }' "$1" -)
		[ -z "$out" ] && return
		sleep 0.2
	done
	echo "$out"
}
leftovers() { # what a demo with PREFIX left: namespaces, links, run directory
	ip netns list | grep "^$1-" | cut -d' ' -f1
	ip -o link show | grep -o "idemo${1#demo}[:@]" 
	awk '/Logs:/ { print $NF }' "$2" | while read -r d; do [ -e "$d" ] && echo "$d"; done
}

start_demo "$TMP/demo.log" DEMO_SECONDS="$SECS" DEMO_TIME_SCALE="$SCALE" DEMO_OUT="$TMP/out" \
	DEMO_SCREENSHOTS="$TMP/shots" ||
	{ not_ok "the demo starts: $(tail -c 400 "$TMP/demo.log")"; exit 1; }
ok "the demo starts and prints where to look ($URL)"
ns=$(ip netns list | grep -c "^$PREFIX-")
check "the household: 9 namespaces (device, 4 more devices, the Wi-Fi, router, ISP, internet): $ns" [ "$ns" = 9 ]
base=${URL%/}
check "the status page answers from this machine at $URL" \
	bash -c "curl -sf --max-time 5 '$base/' | grep -q 'data-collections=\"[1-9]'"
check "... and /api/status and /metrics" bash -c \
	"curl -sf --max-time 5 '$base/api/status' | jqe '.devices.enabled' &&
	 curl -sf --max-time 5 '$base/metrics' | grep -q '^ispmon_collections_total [1-9]'"
prom=$(awk '$1 == "Prometheus" { print $2 }' "$TMP/demo.log")
check "Prometheus answers from this machine at $prom" curl -sf --max-time 5 -o /dev/null "${prom%/}/-/ready"

# While it runs: /metrics about every second, stamped with this clock; the
# time each phase was announced (the log is read every 0.25 s); and the
# sessions of the demo's processes (for the leftover check at the end).
mkdir -p "$TMP/m"
: >"$TMP/phases"
: >"$TMP/index"
: >"$TMP/sids"
n=0 k=0 last=0
until ! kill -0 "$DPID" 2>/dev/null || [ "$SECONDS" -gt $((SECS + 120)) ]; do
	now=$(date +%s.%N)
	c=$(grep -c 'ISP line:' "$TMP/demo.log")
	while [ "$n" -lt "$c" ]; do n=$((n + 1)) && echo "$n $now" >>"$TMP/phases"; done
	if awk -v a="$now" -v b="$last" 'BEGIN { exit !(a - b >= 1) }'; then
		last=$now
		curl -sf --max-time 2 -o "$TMP/m/$k.prom" "$base/metrics" && echo "$k $now" >>"$TMP/index" && k=$((k + 1))
		sessions "$DPID" >>"$TMP/sids"
	fi
	sleep 0.25
done
kill -0 "$DPID" 2>/dev/null && kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
DPID=
check "the demo ends by itself after DEMO_SECONDS=$SECS (exit $rc)" [ "$rc" = 0 ]
for p in "ISP line: bufferbloat" "ISP line: outage" "ISP line: normal" "ISP line: evening peak" "demo: verdict"; do
	check "it says \"$p\"" grep -q "$p" "$TMP/demo.log"
done
M=$TMP/out/metrics.prom J=$TMP/out/status.json
val() { awk -v k="$1" '$1 == k { print $2; exit }' "$M"; }
atleast() { awk -v v="${1:-0}" -v m="$2" 'BEGIN { exit !(v >= m) }'; }
dev() { val "ispmon_device_bytes_total{device=\"$1\",direction=\"$2\"}"; }
secs_in=$((SECS - 10)) # each stream ran at least this long
check "laptop: bulk download $(dev laptop download) B (>= 20 MB)" atleast "$(dev laptop download)" 20e6
check "tv: the 3 Mbit/s video, $(dev tv download) B down (>= 3 Mbit/s x ${secs_in} s x 0.8)" \
	atleast "$(dev tv download)" "$((3000000 / 8 * secs_in * 8 / 10))"
check "phone: the 1 Mbit/s call both ways, $(dev phone download) B down, $(dev phone upload) B up" \
	bash -c "awk -v d=$(dev phone download) -v u=$(dev phone upload) -v m=$((1000000 / 8 * secs_in * 8 / 10)) 'BEGIN { exit !(d >= m && u >= m) }'"
check "desktop: web transfers, $(dev desktop download) B down (>= 500 kB)" atleast "$(dev desktop download)" 5e5
check "oldpc: file sync, $(dev oldpc download) B down, $(dev oldpc upload) B up (>= 5 MB, 2 MB)" \
	bash -c "awk -v d=$(dev oldpc download) -v u=$(dev oldpc upload) 'BEGIN { exit !(d >= 5e6 && u >= 2e6) }'"
check "oldpc without TCP timestamps still has RTT samples ($(val 'ispmon_device_rtt_samples_total{device="oldpc",leg="wan"}'), SEQ/ACK: $(val 'ispmon_passive_rtt_seconds_count{leg="wan",method="tcp_seq"}'))" \
	bash -c "awk -v a=$(val 'ispmon_device_rtt_samples_total{device="oldpc",leg="wan"}') -v b=$(val 'ispmon_passive_rtt_seconds_count{leg="wan",method="tcp_seq"}') 'BEGIN { exit !(a > 0 && b > 0) }'"
check "DNS round trips measured ($(val 'ispmon_passive_rtt_seconds_count{leg="wan",method="dns"}'))" \
	atleast "$(val 'ispmon_passive_rtt_seconds_count{leg="wan",method="dns"}')" 10
check "names from the demo's leases file: 5 devices" \
	[ "$(jq '[.devices.top[].device] | sort == ["desktop","laptop","oldpc","phone","tv"]' "$J")" = true ]
# The phases as announced (1 normal, 2 bloat, 3 outage, 4 normal, 5 peak).
pt() { awk -v n="$1" '$1 == n { print $2; exit }' "$TMP/phases"; }
P2=$(pt 2) P3=$(pt 3) P4=$(pt 4) P5=$(pt 5) P6=$(pt 6)
check "the phases came in order: bloat, outage, normal, peak ($(awk 'NR == 1 { t0 = $2 } NR > 1 { printf "%s%.1f", (NR > 2 ? ", " : ""), $2 - t0 }' "$TMP/phases") s)" \
	bash -c "[ -n '$P5' ] && grep -q 'ISP line: bufferbloat' <(grep 'ISP line:' '$TMP/demo.log' | sed -n 2p) &&
		grep -q 'ISP line: outage' <(grep 'ISP line:' '$TMP/demo.log' | sed -n 3p) &&
		grep -q 'ISP line: evening peak' <(grep 'ISP line:' '$TMP/demo.log' | sed -n 5p)"
dur=$(val ispmon_last_outage_duration_seconds)
cut=$(awk -v a="$P3" -v b="$P4" 'BEGIN { printf "%.2f", b - a }')
# From the last reply before the cut to the first after it: the cut, plus
# up to a ping interval (1 s) and a round trip on each side.
check "the outage recorded: $(val ispmon_outages_total) of ${dur:-?} s (the ${cut} s cut, -0.6 .. +2.3 s)" \
	bash -c "[ '$(val ispmon_outages_total)' = 1 ] && awk -v d='${dur:-0}' -v c='$cut' 'BEGIN { exit !(d >= c - 0.6 && d <= c + 2.3) }'"

# The line's phases in /metrics taken during the run.
# snaps FROM TO: the first and the last snapshot taken between two times.
snaps() { awk -v a="$1" -v b="$2" '$2 >= a && $2 <= b { if (f == "") f = $1; l = $1 } END { if (f != "" && l != f) print f, l }' "$TMP/index"; }
# rate A B: download bytes per second between two snapshots (ispmon's
# collections are 1 s apart).
rate() {
	awk 'FNR == 1 { f++ } $1 == "ispmon_passive_bytes_total{direction=\"download\"}" { b[f] = $2 }
		$1 == "ispmon_collections_total" { c[f] = $2 } END { if (c[2] > c[1]) printf "%.0f\n", (b[2] - b[1]) / (c[2] - c[1]) }' \
		"$TMP/m/$1.prom" "$TMP/m/$2.prom"
}
# wan_median A B: the WAN-leg RTT samples between two snapshots, all
# methods: the upper edges (le) of the buckets holding their median and
# their lowest, and their number.
wan_median() {
	awk 'FNR == 1 { f++ }
		index($1, "ispmon_passive_rtt_seconds_bucket{leg=\"wan\",") == 1 {
			match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
			if (f == 1 && !(le in a)) o[++n] = le
			if (f == 1) a[le] += $2; else b[le] += $2 }
		END { t = b["+Inf"] - a["+Inf"]
			for (i = 1; i <= n; i++) if (lo == "" && b[o[i]] - a[o[i]] > 0) lo = o[i]
			for (i = 1; i <= n; i++) if (t > 0 && b[o[i]] - a[o[i]] >= t / 2) { print o[i], lo, t; exit } }' \
		"$TMP/m/$1.prom" "$TMP/m/$2.prom"
}
window() { # NAME FROM TO: rate, WAN median, lowest and count between the snapshots in it
	local s
	s=$(snaps "$2" "$3")
	if [ -n "$s" ]; then
		set -- "$1" $s
		echo "$1 $(rate "$2" "$3") $(wan_median "$2" "$3")"
	else
		echo "$1 - - - -"
	fi
}
{
	# The laptop downloads for the first 7 s of the bloat and peak phases.
	window bloat "$(awk -v p="$P2" 'BEGIN { printf "%.3f", p + 2 }')" "$(awk -v p="$P2" 'BEGIN { printf "%.3f", p + 7.5 }')"
	window normal "$(awk -v p="$P4" 'BEGIN { printf "%.3f", p + 3 }')" "$(awk -v p="$P5" 'BEGIN { printf "%.3f", p - 0.3 }')"
	window peakbulk "$(awk -v p="$P5" 'BEGIN { printf "%.3f", p + 2 }')" "$(awk -v p="$P5" 'BEGIN { printf "%.3f", p + 7.5 }')"
	window peak "$(awk -v p="$P5" 'BEGIN { printf "%.3f", p + 9 }')" "$(awk -v p="$P5" -v e="${P6:-0}" 'BEGIN { z = p + 18; if (e > 0 && e < z) z = e; printf "%.3f", z - 0.3 }')"
} >"$TMP/windows"
w() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' "$TMP/windows"; }
ms() { awk -v v="$1" 'BEGIN { printf "%.1f ms", v * 1000 }'; }
mbit() { awk -v v="$1" 'BEGIN { printf "%.1f Mbit/s", v * 8 / 1e6 }'; }
# Round trips against the emulated path and queues. The lowest is the
# path's delay (queues only add to it; a bucket is 6.25% wide); the median
# is at least that and at most what full queues add (packets x 1514 B at
# their rates; normal: 100 at 50 Mbit/s, 24 ms, and 100 at 10 Mbit/s for
# the ACKs and uploads, 121 ms; peak: 61 and 242 ms; bloat: 485 ms and
# 1.2 s).
check "normal line: WAN-leg round trips from $(ms "$(w normal 4)") (the 16 ms path, +20% + 2 ms at most), median <= $(ms "$(w normal 3)") of $(w normal 5) samples (at most + 145 ms of full queues)" \
	awk -v le="$(w normal 3)" -v lo="$(w normal 4)" -v n="$(w normal 5)" \
	'BEGIN { exit !(n >= 10 && lo >= 0.016 && lo <= 0.016 * 1.2 + 0.002 && le <= 0.175) }'
check "bufferbloat: WAN-leg median <= $(ms "$(w bloat 3)") of $(w bloat 5) samples, over 64 ms: more than twice what the normal download queue can add" \
	awk -v le="$(w bloat 3)" -v n="$(w bloat 5)" 'BEGIN { exit !(n >= 10 && le > 0.064 && le <= 1.8) }'
# ispmon's own latency under load: the median round trip of its loaded
# intervals on the last pages before the bloat phase and before the outage
# (its idle baseline is no truth here: a quiet second right after a bulk
# transfer still sees the queue the transfer left).
before() { awk -v t="$1" '$2 < t { l = $1 } END { print l }' "$TMP/index"; }
mv_() { awk -v k="$2" '$1 == k { print $2; exit }' "$TMP/m/$1.prom"; }
b0=$(before "$P2") b1=$(before "$P3")
busy0=$(mv_ "$b0" ispmon_passive_rtt_loaded_seconds)
busy=$(mv_ "$b1" ispmon_passive_rtt_loaded_seconds)
check "... ispmon's round trips when busy: $(ms "$busy") at the phase's end, over 64 ms and up from $(ms "${busy0:-0}") before it by more than the normal download queue's 24 ms" \
	awk -v l="${busy:-0}" -v l0="${busy0:-0}" 'BEGIN { exit !(l > 0.064 && l - l0 > 0.024) }'
check "... the laptop's bulk download takes the 50 Mbit/s line: $(mbit "$(w bloat 2)") (0.6 .. 1.05 x)" \
	awk -v r="$(w bloat 2)" 'BEGIN { exit !(r >= 0.6 * 6.25e6 && r <= 1.05 * 6.25e6) }'
check "evening peak: the download falls to the shaped 20 Mbit/s: $(mbit "$(w peakbulk 2)") (0.6 .. 1.05 x)" \
	awk -v r="$(w peakbulk 2)" 'BEGIN { exit !(r >= 0.6 * 2.5e6 && r <= 1.05 * 2.5e6) }'
check "... and the WAN-leg round trips rise with the path: from $(ms "$(w peak 4)") (the 50 ms path, +20% + 2 ms at most), median <= $(ms "$(w peak 3)") of $(w peak 5) samples (50 ms .. + 303 ms of full queues)" \
	awk -v le="$(w peak 3)" -v lo="$(w peak 4)" -v n="$(w peak 5)" \
	'BEGIN { exit !(n >= 10 && lo >= 0.05 && lo <= 0.05 * 1.2 + 0.002 && le >= 0.05 && le <= 0.375) }'
check "a speed test ran: $(jq .speedtest.download.bytes_per_second "$J") B/s down" \
	jqe '.speedtest.download.bytes_per_second > 1e6' "$J"
# The capacity estimate (payload goodput, the median of saturated
# intervals): the 50 Mbit/s line's before the outage; at the end, with the
# peak's 20 Mbit/s intervals among them, between the two.
cap1=$(mv_ "$b1" 'ispmon_passive_capacity_bytes_per_second{direction="download"}')
check "capacity from the bulk transfers: $(mbit "${cap1:-0}") before the outage (0.6 .. 1.05 x 50 Mbit/s), $(mbit "$(jq .capacity.bytes_per_second.download "$J")") at the end (0.6 x 20 .. 1.05 x 50), grade $(jq -r .bufferbloat.grade "$J")" \
	bash -c "awk -v c='${cap1:-0}' 'BEGIN { exit !(c >= 0.6 * 6.25e6 && c <= 1.05 * 6.25e6) }' &&
		jqe '.capacity.bytes_per_second.download >= 0.6 * 2.5e6 and .capacity.bytes_per_second.download <= 1.05 * 6.25e6 and .bufferbloat.grade != null' '$J'"
check "the status page was saved with its figures" grep -q 'data-metric="ispmon_outages_total" data-value="1"' "$TMP/out/status.html"
q() { sed -n "${1}p" "$TMP/out/prometheus.jsonl"; }
qv() { q "$1" | jq -r '.data.result[0].value[1]'; }
check "Prometheus scraped ispmon: up $(qv 1), $(qv 2) scrapes (1 s apart, the cycle compressed)" \
	bash -c "[ '$(qv 1)' = 1 ] && [ '$(qv 2)' -ge $((SECS - 8)) ]"
check "Prometheus has the outage and all 5 devices" bash -c \
	"[ \"\$(sed -n 3p '$TMP/out/prometheus.jsonl' | jq -r '.data.result[0].value[1]')\" = 1 ] &&
	 [ \"\$(sed -n 4p '$TMP/out/prometheus.jsonl' | jq '.data.result | length')\" = 5 ]"
check "the recording rule ispmon:internet_up: $(qv 5) now, $(qv 6) at its lowest (the outage), $(qv 7) evaluations" \
	bash -c "[ '$(qv 5)' = 1 ] && [ '$(qv 6)' = 0 ] && [ '$(qv 7)' -ge $((SECS - 8)) ]"
# DEMO_SCREENSHOTS: four whole-page PNGs as the demo's log says; the page
# in the OK one says "Internet OK", in the down one "Internet down".
for f in ok:1280 down:1280 desktop:1280 phone:390; do
	name=${f%:*} width=${f#*:}
	png=$TMP/shots/status-$name.png
	said=$(grep -o "screenshot: $png, [0-9]* x [0-9]* px, .*" "$TMP/demo.log")
	dims=$(file -b "$png" 2>/dev/null | grep -o 'PNG image data, [0-9]* x [0-9]*' | grep -o '[0-9]* x [0-9]*')
	case $name in down) want='"Internet down"' ;; ok) want='"Internet OK"' ;; *) want='"Internet [a-zA-Z]*"' ;; esac
	check "screenshot $name: ${dims:-none}, ${said#*px, } (${width} px wide, the whole page)" \
		bash -c "[ -n '$dims' ] && [ '${dims%% *}' = $width ] && [ '${dims##* }' -ge 900 ] &&
			grep -q ', $dims px, $want' <<<'$said'"
done
check "ispmon and Prometheus logged no error" bash -c \
	"! grep -qiE 'level=(error|fatal)' '$TMP/out/ispmon.log' '$TMP/out/prometheus.log'"
left=$(leftovers "$PREFIX" "$TMP/demo.log")
check "nothing left behind (namespaces, host link, run directory)${left:+: $left}" [ -z "$left" ]
procs=$(left_procs "$TMP/sids")
check "no process of the demo left (in any of its $(sort -u "$TMP/sids" | wc -l) sessions)${procs:+: $procs}" [ -z "$procs" ]

# Until interrupted: Ctrl-C (SIGINT to its process group) cleans up too.
start_demo "$TMP/demo2.log" || { not_ok "the demo starts again: $(tail -c 300 "$TMP/demo2.log")"; exit 1; }
sleep 3
sessions "$DPID" >"$TMP/sids2"
kill -INT -- "-$DPID"
rc=0
for _ in $(seq 1 30); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.5; done
wait "$DPID" || rc=$?
DPID=
left=$(leftovers "$PREFIX" "$TMP/demo2.log")$(left_procs "$TMP/sids2")
check "Ctrl-C stops it (exit $rc) and leaves nothing behind (nor a process of its $(sort -u "$TMP/sids2" | wc -l) sessions)${left:+: $left}" \
	bash -c "[ $rc = 130 ] && [ -z '$left' ] && grep -q 'demo: stopping' '$TMP/demo2.log'"
tap_exit
