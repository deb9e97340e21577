#!/usr/bin/env bash
# make demo, shortened: scripts/demo.sh with DEMO_SECONDS (default 60) must
# build the household (5 devices), reach ispmon and Prometheus from this
# machine at the URLs it prints, show every device's kind of traffic in
# ispmon (bulk, video, a two-way call, web, DNS, a device without TCP
# timestamps measured by SEQ/ACK), run a speed test, record the 8 s outage,
# have Prometheus scrape all along, and leave nothing behind; a second run
# stopped with SIGINT cleans up as well.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
for t in prometheus yq jq iperf3; do
	command -v "$t" >/dev/null || { echo "not ok - $t missing (scripts/deps.sh installs it)"; exit 1; }
done
make -s -C tests/tools >/dev/null && [ -x ./ispmon ] || { echo "not ok - ./ispmon or the tools are not built"; exit 1; }

SECS=${DEMO_TEST_SECONDS:-60}
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
		URL=$(awk '$1 == "Status" && $2 == "page" { print $3 }' "$log")
		[ -n "$URL" ] && return 0
		kill -0 "$DPID" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
jqe() { jq -e "$@" >/dev/null; }
leftovers() { # what a demo with PREFIX left: namespaces, links, run directory
	ip netns list | grep "^$1-" | cut -d' ' -f1
	ip -o link show | grep -o "idemo${1#demo}[:@]" 
	awk '/Logs:/ { print $NF }' "$2" | while read -r d; do [ -e "$d" ] && echo "$d"; done
}

start_demo "$TMP/demo.log" DEMO_SECONDS="$SECS" DEMO_OUT="$TMP/out" ||
	{ not_ok "the demo starts: $(tail -c 400 "$TMP/demo.log")"; exit 1; }
ok "the demo starts and prints where to look ($URL)"
ns=$(ip netns list | grep -c "^$PREFIX-")
check "the household: 9 namespaces (device, 4 more devices, the Wi-Fi, router, ISP, internet): $ns" [ "$ns" = 9 ]
base=${URL%/}
sleep 5
check "the status page answers from this machine at $URL" \
	bash -c "curl -sf --max-time 5 '$base/' | grep -q 'data-collections=\"[1-9]'"
check "... and /api/status and /metrics" bash -c \
	"curl -sf --max-time 5 '$base/api/status' | jq -e '.devices.enabled' >/dev/null &&
	 curl -sf --max-time 5 '$base/metrics' | grep -q '^ispmon_collections_total [1-9]'"
prom=$(awk '$1 == "Prometheus" { print $2 }' "$TMP/demo.log")
check "Prometheus answers from this machine at $prom" curl -sf --max-time 5 -o /dev/null "${prom%/}/-/ready"

rc=0
for _ in $(seq 1 $((SECS + 60))); do kill -0 "$DPID" 2>/dev/null || break; sleep 1; done
wait "$DPID" || rc=$?
DPID=
check "the demo ends by itself after DEMO_SECONDS=$SECS (exit $rc)" [ "$rc" = 0 ]
for p in "ISP line: bufferbloat" "ISP line: outage" "ISP line: normal" "demo: verdict"; do
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
dur=$(val ispmon_last_outage_duration_seconds)
check "the outage recorded: $(val ispmon_outages_total) of ${dur:-?} s (8 s cut, +-1.5)" \
	bash -c "[ '$(val ispmon_outages_total)' = 1 ] && awk -v d='${dur:-0}' 'BEGIN { exit !(d > 6.5 && d < 9.5) }'"
check "a speed test ran: $(jq .speedtest.download.bytes_per_second "$J") B/s down" \
	jqe '.speedtest.download.bytes_per_second > 1e6' "$J"
check "capacity and grade from the bulk transfers: $(jq .capacity.bytes_per_second.download "$J") B/s, $(jq -r .bufferbloat.grade "$J")" \
	jqe '.capacity.bytes_per_second.download > 5e6 and .bufferbloat.grade != null' "$J"
check "the status page was saved with its figures" grep -q 'data-metric="ispmon_outages_total" data-value="1"' "$TMP/out/status.html"
q() { sed -n "${1}p" "$TMP/out/prometheus.jsonl"; }
check "Prometheus scraped ispmon: up $(q 1 | jq -r '.data.result[0].value[1]'), $(q 2 | jq -r '.data.result[0].value[1]') scrapes (5 s apart)" \
	bash -c "[ \"\$(sed -n 1p '$TMP/out/prometheus.jsonl' | jq -r '.data.result[0].value[1]')\" = 1 ] &&
		[ \"\$(sed -n 2p '$TMP/out/prometheus.jsonl' | jq -r '.data.result[0].value[1]')\" -ge $((SECS / 5 - 2)) ]"
check "Prometheus has the outage and all 5 devices" bash -c \
	"[ \"\$(sed -n 3p '$TMP/out/prometheus.jsonl' | jq -r '.data.result[0].value[1]')\" = 1 ] &&
	 [ \"\$(sed -n 4p '$TMP/out/prometheus.jsonl' | jq '.data.result | length')\" = 5 ]"
check "ispmon and Prometheus logged no error" bash -c \
	"! grep -qiE 'level=(error|fatal)' '$TMP/out/ispmon.log' '$TMP/out/prometheus.log'"
left=$(leftovers "$PREFIX" "$TMP/demo.log")
check "nothing left behind (namespaces, host link, run directory)${left:+: $left}" [ -z "$left" ]

# Until interrupted: Ctrl-C (SIGINT to its process group) cleans up too.
start_demo "$TMP/demo2.log" || { not_ok "the demo starts again: $(tail -c 300 "$TMP/demo2.log")"; exit 1; }
sleep 3
kill -INT -- "-$DPID"
rc=0
for _ in $(seq 1 30); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.5; done
wait "$DPID" || rc=$?
DPID=
left=$(leftovers "$PREFIX" "$TMP/demo2.log")
check "Ctrl-C stops it (exit $rc) and leaves nothing behind${left:+: $left}" \
	bash -c "[ $rc = 130 ] && [ -z '$left' ] && grep -q 'demo: stopping' '$TMP/demo2.log'"
tap_exit
