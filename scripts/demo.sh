#!/usr/bin/env bash
# make demo: ispmon watching a simulated household, no router needed.
#
# The emulated home network of the tests (tests/lib/netlab.sh) with five
# devices behind the router, each doing what households do:
#   laptop   bulk downloads and uploads now and then (CUBIC: fills queues)
#   tv       a paced video stream (TCP at 3 Mbit/s)
#   phone    a video call (UDP both ways at 1 Mbit/s) and DNS
#   desktop  web browsing: short connections of 20-300 kB, DNS
#   oldpc    a Windows-like PC (TCP timestamps off) syncing files
# and an ISP line whose rate, delay and queue change over a 2-minute cycle:
#   0 s normal (50/10 Mbit/s, 16 ms; the first speed test), 25 s
#   bufferbloat (a 2000-packet modem queue while the laptop transfers in
#   bulk), 45 s outage (8 s), 53 s back to normal, 70 s evening peak (20/5
#   Mbit/s, 50 ms; the laptop downloads for its first 12 s), 100 s normal.
# ispmon runs in the router with ping probes and speed tests against
# servers in the testbed, a real Prometheus scrapes it with the shipped
# rules, and both are reachable from this machine over a veth pair (the
# script prints the URLs). Runs until Ctrl-C, or for DEMO_SECONDS; removes
# everything on the way out.
#
#   DEMO_SECONDS=N        stop after N seconds (default: until interrupted)
#   DEMO_TIME_SCALE=F     the cycle's times (phases, outage, the laptop's
#                         transfers) times F, 0.1 .. 10 (default 1;
#                         tests/test_demo.sh runs 0.6); Prometheus' 5 s
#                         intervals too, but 1 s for any F under 1
#   DEMO_OUT=DIR          save /metrics, /, /api/status, Prometheus queries
#                         and the logs there at the end
#   DEMO_SCREENSHOTS=DIR  whole-page screenshots of the status page (headless
#                         Chromium, tests/lib/browser.js; needs node), 1280 px
#                         wide: status-ok.png late in the first normal phase,
#                         status-down.png once the page says down in the first
#                         outage; at the end status-desktop.png and, 390 px
#                         wide, status-phone.png
#   DEMO_KEEP=1           keep the run directory (logs, configs)
#
# Nothing leaves the machine: every address is a documentation one, in
# namespaces this script creates, and every traffic loop is bounded in
# bytes and time.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

[ "$(id -u)" = 0 ] || { echo "level=error msg=\"make demo needs root (network namespaces, BPF)\"" >&2; exit 1; }
for t in ispmon tests/tools/build/delayline; do
	[ -x "$t" ] || { echo "level=error msg=\"$t is not built: run make demo (or make all tools)\"" >&2; exit 1; }
done
for t in iperf3 curl prometheus yq; do
	command -v "$t" >/dev/null || { echo "level=error msg=\"$t missing: scripts/deps.sh installs it\"" >&2; exit 1; }
done
SECS=${DEMO_SECONDS:-0}
[[ $SECS =~ ^[0-9]+$ ]] || { echo "level=error msg=\"DEMO_SECONDS must be whole seconds, got '$SECS'\"" >&2; exit 2; }
SCALE=${DEMO_TIME_SCALE:-1}
[[ $SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v f="$SCALE" 'BEGIN { exit !(f >= 0.1 && f <= 10) }' ||
	{ echo "level=error msg=\"DEMO_TIME_SCALE must be a number from 0.1 to 10, got '$SCALE'\"" >&2; exit 2; }
SHOTS_DIR=${DEMO_SCREENSHOTS:-}
if [ -n "$SHOTS_DIR" ]; then
	for t in chromium node jq; do
		command -v "$t" >/dev/null ||
			{ echo "level=error msg=\"$t missing: DEMO_SCREENSHOTS needs it (scripts/deps.sh installs it)\"" >&2; exit 1; }
	done
	mkdir -p "$SHOTS_DIR" && SHOTS_DIR=$(cd "$SHOTS_DIR" && pwd) || exit 1
fi

export NETLAB_PREFIX=demo$$
. tests/lib/netlab.sh

BIN=$PWD/ispmon
RUN=$(mktemp -d /tmp/ispmon-demo.XXXXXX)
HOST_IF=idemo$$
PIDS=()
SPEED=http://$SRV_IP4:$HTTP_PORT
# ms N: N seconds of the cycle in milliseconds, scaled; secs N: in whole
# seconds, at least 1.
ms() { awk -v v="$1" -v f="$SCALE" 'BEGIN { printf "%d\n", v * f * 1000 + 0.5 }'; }
secs() { awk -v v="$1" -v f="$SCALE" 'BEGIN { x = int(v * f + 0.5); print x < 1 ? 1 : x }'; }
# Phase starts: bloat, outage, normal, peak, normal; the cycle.
read -r P_BLOAT P_OUTAGE P_BACK P_PEAK P_END CYCLE < <(for t in 25 45 53 70 100 120; do ms "$t"; done | xargs)
OUTAGE_S=$(awk -v a="$P_OUTAGE" -v b="$P_BACK" 'BEGIN { printf "%g", (b - a) / 1000 }')
# Prometheus every 5 s; compressed, every second, so that a short outage
# is still scraped.
PROM_EVERY=$(awk -v f="$SCALE" 'BEGIN { print (f < 1 ? 1 : int(5 * f + 0.5)) "s" }')

cleanup() {
	local p
	trap - EXIT INT TERM HUP
	echo "demo: stopping, removing the testbed"
	# Each job is a session and process group of its own: stop all of it.
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
	netlab_down
	ip link del "$HOST_IF" 2>/dev/null
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${DEMO_KEEP:-0}" = 1 ]; then echo "demo: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

say() { printf '[%4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
now_ms() { date +%s%3N; }
# bg NAME CMD...: a background job, logged to $RUN/NAME.log, in a session
# of its own: Ctrl-C reaches this script, which stops the jobs in order.
bg() {
	local name=$1
	shift
	setsid "$@" </dev/null >>"$RUN/$name.log" 2>&1 &
	PIDS+=($!)
}
alive() { [ "$(date +%s)" -lt "$END" ]; }
# The phase of the ISP line a millisecond of the cycle is in.
phase_at() {
	local t=$1
	if ((t < P_BLOAT)); then echo normal; elif ((t < P_OUTAGE)); then echo bloat
	elif ((t < P_BACK)); then echo outage; elif ((t < P_PEAK)); then echo normal
	elif ((t < P_END)); then echo peak; else echo normal; fi
}
line() { # DOWN_MBIT UP_MBIT DELAY_MS QUEUE_DOWN QUEUE_UP
	netlab_shape down "$1" "$4" && netlab_shape up "$2" "$5" && netlab_set_delay "$3" "$3"
}
apply_phase() {
	case $1 in
	normal)
		netlab_link up && line 50 10 8 100 100 &&
			say "ISP line: normal, 50/10 Mbit/s, 16 ms round trip, a short queue" ;;
	bloat)
		line 50 10 8 2000 1000 &&
			say "ISP line: bufferbloat, a 2000-packet modem queue; the laptop transfers in bulk" ;;
	outage)
		netlab_link down && say "ISP line: outage, nothing gets through for $OUTAGE_S s" ;;
	peak)
		line 20 5 25 100 100 &&
			say "ISP line: evening peak, 20/5 Mbit/s, 50 ms round trip; the laptop downloads for $(secs 12) s" ;;
	esac
}

# ---------------------------------------------------------------- the household
netlab_build_tools || exit 1
netlab_up 8 8 1 1 && netlab_start_servers || exit 1
line 50 10 8 100 100 || exit 1
for port in 5202 5203; do # one iperf3 server per concurrent stream
	bg "iperf3-$port" ip netns exec "$NS_WAN" iperf3 -s -p "$port"
done
declare -A MAC=([laptop]=$LAN_MAC)
for d in tv phone desktop oldpc; do
	read -r _ MAC[$d] _ _ < <(netlab_add_device "$d") || exit 1
done
ip netns exec "$NETLAB_PREFIX-oldpc" sysctl -qw net.ipv4.tcp_timestamps=0 || exit 1
: >"$RUN/leases"
for d in laptop tv phone desktop oldpc; do
	echo "$(($(date +%s) + 86400)) ${MAC[$d]} - $d *" >>"$RUN/leases"
done

# This machine reaches the router over a veth pair: a free /30 of
# 203.0.113.128/25 (several demos may run at once).
for ((k = 32; k < 64; k++)); do
	ROUTER_IP=203.0.113.$((4 * k + 1)) HOST_IP=203.0.113.$((4 * k + 2))
	ip -4 -o addr show | grep -q " 203\.0\.113\.$((4 * k + 2))/" || break
done
[ "$k" -lt 64 ] || { echo "level=error msg=\"no free /30 in 203.0.113.128/25 for the host link\"" >&2; exit 1; }
ip link add "$HOST_IF" type veth peer name host0 netns "$NS_ROUTER" &&
	ip addr add "$HOST_IP/30" dev "$HOST_IF" && ip link set "$HOST_IF" up &&
	ip -n "$NS_ROUTER" addr add "$ROUTER_IP/30" dev host0 && ip -n "$NS_ROUTER" link set host0 up ||
	{ echo "level=error msg=\"cannot link this machine to the router namespace\"" >&2; exit 1; }

# ---------------------------------------------------------------- ispmon, Prometheus
# --speed-busy-share 1: this household never rests, and in its first
# seconds any traffic is the highest rate seen yet (share 1): a test that
# waited for a quiet line would be put off for 5 minutes.
bg ispmon ip netns exec "$NS_ROUTER" "$BIN" --iface "$ROUTER_WAN_IF" --lan-iface "$ROUTER_LAN_IF" \
	--listen :8000 --leases "$RUN/leases" \
	--ping-target "$SRV_IP4" --ping-target "$WAN_GW_IP4" --ping-interval 1s \
	--speed-url "$SPEED/bytes/{bytes}" --speed-upload-url "$SPEED/upload" \
	--speed-first-delay 2s --speed-interval 2m --speed-max-time 3s --speed-busy-share 1 \
	--plan-download 50M --plan-upload 10M
ISPMON_PID=${PIDS[-1]}
mkdir -p "$RUN/prom/rules" "$RUN/prom/data"
cp dashboards/rules/*.rules.yml "$RUN/prom/rules/"
# The shipped config, scraping ispmon (and itself) every 5 s (scaled); no
# Alertmanager in the demo.
yq -y --arg every "$PROM_EVERY" '.global.scrape_interval = $every | .global.evaluation_interval = $every | del(.alerting)
	| .scrape_configs |= map(select(.job_name == "ispmon" or .job_name == "prometheus"))' \
	dashboards/prometheus.yml >"$RUN/prom/prometheus.yml" || exit 1
bg prometheus ip netns exec "$NS_ROUTER" prometheus --config.file="$RUN/prom/prometheus.yml" \
	--storage.tsdb.path="$RUN/prom/data" --web.listen-address=0.0.0.0:9090 --log.level=warn
for _ in $(seq 1 100); do
	curl -sf -o /dev/null --max-time 1 "http://$ROUTER_IP:8000/api/status" &&
		curl -sf -o /dev/null --max-time 1 "http://$ROUTER_IP:9090/-/ready" && break
	kill -0 "$ISPMON_PID" 2>/dev/null || { echo "level=error msg=\"ispmon did not start\" log=$RUN/ispmon.log" >&2; tail -3 "$RUN/ispmon.log" >&2; exit 1; }
	sleep 0.2
done

T0MS=$(now_ms)
T0=$((T0MS / 1000))
if [ "$SECS" -gt 0 ]; then END=$((T0 + SECS)); else END=$((T0 + 7 * 86400)); fi
cat <<EOF

ispmon demo: a household of five devices behind an emulated ISP line.

  Status page   http://$ROUTER_IP:8000/
  JSON          http://$ROUTER_IP:8000/api/status
  Metrics       http://$ROUTER_IP:8000/metrics
  Prometheus    http://$ROUTER_IP:9090/   (try ispmon:internet_up, ispmon:passive_rtt_seconds:p50_5m)

  Devices: laptop (bulk), tv (video), phone (video call, DNS), desktop (web,
  DNS), oldpc (TCP timestamps off). The line changes every few seconds over
  a $(awk -v c="$CYCLE" 'BEGIN { printf "%g", c / 1000 }') s cycle: normal, bufferbloat, an outage of $OUTAGE_S s, evening peak.
  $([ "$SECS" -gt 0 ] && echo "Stops after $SECS s." || echo "Ctrl-C stops it.") Logs: $RUN

EOF

# ---------------------------------------------------------------- traffic
dev() { local d=$1; shift; ip netns exec "$NETLAB_PREFIX-$d" "$@"; }
bg tv bash -c "while [ \$(date +%s) -lt $END ]; do
	ip netns exec $NETLAB_PREFIX-tv timeout 70 iperf3 -c $SRV_IP4 -p 5202 -R -b 3M -t 60 --connect-timeout 2000 >/dev/null 2>&1 || sleep 2
done"
bg phone bash -c "while [ \$(date +%s) -lt $END ]; do
	ip netns exec $NETLAB_PREFIX-phone timeout 70 iperf3 -c $SRV_IP4 -p 5203 -u --bidir -b 1M -l 1200 -t 60 --connect-timeout 2000 >/dev/null 2>&1 || sleep 2
done"
bg phone-dns bash -c "while [ \$(date +%s) -lt $END ]; do
	ip netns exec $NETLAB_PREFIX-phone $NETLAB_TOOLS/dnsq --server $SRV_IP4:$DNS_PORT --count 2 --interval-ms 100 --timeout-ms 1000 >/dev/null 2>&1
	sleep 3
done"
bg desktop bash -c "while [ \$(date +%s) -lt $END ]; do
	for i in 1 2 3; do
		ip netns exec $NETLAB_PREFIX-desktop curl -s -o /dev/null --max-time 5 $SPEED/bytes/\$((20000 + RANDOM % 280000)) &
	done
	ip netns exec $NETLAB_PREFIX-desktop $NETLAB_TOOLS/dnsq --server $SRV_IP4:$DNS_PORT --count 3 --interval-ms 30 --timeout-ms 1000 >/dev/null 2>&1
	wait
	sleep \$((1 + RANDOM % 3))
done"
head -c 2000000 /dev/urandom >"$RUN/sync.bin"
bg oldpc bash -c "while [ \$(date +%s) -lt $END ]; do
	ip netns exec $NETLAB_PREFIX-oldpc curl -s -o /dev/null --max-time 15 $SPEED/bytes/5000000
	ip netns exec $NETLAB_PREFIX-oldpc curl -s -o /dev/null --max-time 15 --data-binary @$RUN/sync.bin $SPEED/upload
	sleep 15
done"

# ---------------------------------------------------------------- screenshots
verdict() { curl -sf --max-time 2 "http://$ROUTER_IP:8000/api/status" | jq -r .verdict.state 2>/dev/null; }
# shoot NAME WIDTH [STATE]: a whole-page screenshot of the status page as
# SHOTS_DIR/status-NAME.png, once the page's verdict is STATE (waiting up to
# 10 s); says its size and the page's verdict (its title). Chromium runs
# in the router's namespace: it reaches nothing but the testbed.
shoot() {
	local f=$SHOTS_DIR/status-$1.png
	if [ -n "${3:-}" ]; then
		for _ in $(seq 1 40); do [ "$(verdict)" = "$3" ] && break; sleep 0.25; done
	fi
	if timeout 60 ip netns exec "$NS_ROUTER" node tests/lib/browser.js http://127.0.0.1:8000/ "$2" "$f" \
		>"$RUN/shot-$1.json" 2>>"$RUN/screenshots.log"; then
		say "screenshot: $f, $(jq -r '"\(.screenshot.width) x \(.screenshot.height) px, \"\(.title | sub(" - ispmon$"; ""))\""' "$RUN/shot-$1.json")"
	else
		say "screenshot: $f failed (see $RUN/screenshots.log)"
	fi
}
# The same in the background, not to hold up the line's changes.
SHOT_PIDS=()
shoot_bg() {
	shoot "$@" &
	PIDS+=($!)
	SHOT_PIDS+=($!)
}

# ---------------------------------------------------------------- the timeline
cur=normal
shot_ok=0
say "ISP line: normal, 50/10 Mbit/s, 16 ms round trip, a short queue"
while alive; do
	kill -0 "$ISPMON_PID" 2>/dev/null || { echo "level=error msg=\"ispmon stopped\" log=$RUN/ispmon.log" >&2; exit 1; }
	t=$(($(now_ms) - T0MS))
	p=$(phase_at $((t % CYCLE)))
	if [ "$p" != "$cur" ]; then
		apply_phase "$p" || say "cannot change the line to $p"
		case $p in
		bloat)
			bg laptop bash -c "
			ip netns exec $NS_LAN timeout $(($(secs 12) + 8)) iperf3 -c $SRV_IP4 -p $IPERF_PORT -R -C cubic -t $(secs 12) >/dev/null 2>&1
			ip netns exec $NS_LAN timeout $(($(secs 6) + 8)) iperf3 -c $SRV_IP4 -p $IPERF_PORT -C cubic -t $(secs 6) >/dev/null 2>&1" ;;
		peak)
			bg laptop ip netns exec "$NS_LAN" timeout $(($(secs 12) + 8)) iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" \
				-R -C cubic -t "$(secs 12)" ;;
		outage)
			# The first outage, once the page says so.
			[ -n "$SHOTS_DIR" ] && [ "$t" -lt "$CYCLE" ] && shoot_bg down 1280 down ;;
		esac
		cur=$p
	fi
	# Late in the first normal phase: the line as it should be.
	if [ -n "$SHOTS_DIR" ] && [ "$shot_ok" = 0 ] && [ "$t" -ge $((P_BLOAT * 4 / 5)) ]; then
		shoot_bg ok 1280
		shot_ok=1
	fi
	sleep 0.5
done

# ---------------------------------------------------------------- the end
api=$(curl -sf --max-time 5 "http://$ROUTER_IP:8000/api/status")
if [ -n "$SHOTS_DIR" ]; then
	for p in "${SHOT_PIDS[@]}"; do wait "$p"; done
	shoot desktop 1280
	shoot phone 390
fi
if [ -n "${DEMO_OUT:-}" ]; then
	mkdir -p "$DEMO_OUT"
	curl -sf --max-time 5 "http://$ROUTER_IP:8000/metrics" >"$DEMO_OUT/metrics.prom"
	curl -sf --max-time 5 "http://$ROUTER_IP:8000/" >"$DEMO_OUT/status.html"
	printf '%s\n' "$api" >"$DEMO_OUT/status.json"
	# One answer a line: ispmon's scrapes, the outage, the devices, and the
	# recording rule ispmon:internet_up (now, lowest, evaluations).
	for q in 'up{job="ispmon"}' 'count_over_time(up{job="ispmon"}[10m])' 'max_over_time(ispmon_outages_total[10m])' \
		'sum by (device) (max_over_time(ispmon_device_bytes_total[10m]))' 'ispmon:internet_up' \
		'min_over_time(ispmon:internet_up[10m])' 'count_over_time(ispmon:internet_up[10m])'; do
		curl -s --max-time 5 --data-urlencode "query=$q" "http://$ROUTER_IP:9090/api/v1/query"
		echo
	done >"$DEMO_OUT/prometheus.jsonl"
	cp "$RUN"/*.log "$DEMO_OUT/" 2>/dev/null
	echo "$ROUTER_IP" >"$DEMO_OUT/router_ip"
fi
if [ -n "$api" ] && command -v jq >/dev/null; then
	jq -r '"demo: verdict \(.verdict.headline); \(.outages.total // 0) outage(s); " +
		"capacity \((.capacity.bytes_per_second.download // 0) * 8 / 1e6 | floor) Mbit/s down; " +
		"\(.devices.seen) devices seen"' <<<"$api"
fi
