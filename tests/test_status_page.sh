#!/usr/bin/env bash
# The household status page (GET /) and /api/status, in a real browser, in
# the emulated home network (WAN 20 ms RTT, 20/10 Mbit/s with a 100-packet
# queue, LAN 2 ms):
#  - ispmon in the router pings two testbed targets, runs a speed test
#    against the testbed's server, watches the LAN interface (renamed to a
#    hostile name, l<i>"&) with a leases file that gives the lan device a
#    hostile host name; the lan device browses, resolves, downloads and
#    uploads in bulk (capacity evidence, latency under load), and the WAN
#    link is cut for OUTAGE seconds;
#  - every figure on the page (data-metric/data-value) equals /metrics of
#    the same collection, both in the HTML as served and in the DOM that
#    headless Chromium (Debian's) builds: as numbers, or for the device
#    rates /metrics writes with one decimal, written so; /api/status is
#    valid JSON (jq) with the same figures; ping loss and the outage match
#    the emulated truth; during the cut the page says "down", after it
#    "degraded" with the outage listed; every line of every chart has its
#    points (one per 10 s since start for figures taken every collection,
#    one per speed test); no console message (CSP violations, bad SVG,
#    failed loads); hostile names escaped;
#  - at 390 px (a phone, DevTools protocol: tests/lib/browser.js) the page
#    lays out 390 px wide and nothing sticks out; its meta refresh is in
#    the DOM; a page made bad on purpose (inline script, broken SVG path,
#    an element too wide) fails both the console and the layout check;
#  - whole-page screenshots at desktop and phone width, and of the page
#    during the cut: tests/artifacts/status-*.png.
# Every wait is bounded; everything is removed on exit.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
. tests/lib/netlab.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
for t in chromium node jq curl iperf3; do
	command -v "$t" >/dev/null || { echo "not ok - $t missing (scripts/deps.sh installs it)"; exit 1; }
done
[ -x ./ispmon ] || { echo "not ok - ./ispmon is not built (make)"; exit 1; }

BIN=$PWD/ispmon
ART=$PWD/tests/artifacts
OUTAGE=${STATUS_OUTAGE_S:-6}
EVIL_IF='l<i>"&'
EVIL_NAME='<script>alert(1)</script>'
URL=http://127.0.0.1:8000
TMP=$(mktemp -d)
PIDS=()
ISPMON_PID=

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	[ -n "$ISPMON_PID" ] && kill -TERM "$ISPMON_PID" 2>/dev/null
	netlab_down
	rm -rf "$TMP"
}
netlab_install_trap
trap cleanup EXIT
mkdir -p "$ART"

r() { ip netns exec "$NS_ROUTER" "$@"; }
lan() { ip netns exec "$NS_LAN" "$@"; }
get() { r curl -sf --max-time 5 "$URL$1"; }
# The collection a /metrics page, HTML page or JSON comes from.
gen_metrics() { awk '$1 == "ispmon_collections_total" { print $2 }' "$1"; }
gen_html() { grep -o '<body data-collections="[0-9]*"' "$1" | grep -o '[0-9]*'; }
val() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
# figs HTML: "metric<TAB>value" of every figure, attributes unescaped.
figs() {
	grep -o 'data-metric="[^"]*" data-value="[^"]*"' "$1" |
		sed -e 's/^data-metric="\([^"]*\)" data-value="\([^"]*\)"$/\1\t\2/' \
			-e 's/&quot;/"/g; s/&lt;/</g; s/&gt;/>/g; s/&#39;/'"'"'/g; s/&amp;/\&/g'
}
# same PAGE_VALUE METRICS_SAMPLE [ROUNDED]: the sample is the page's exact
# value (both %.17g: equal as numbers) or, ROUNDED, that value written with
# one decimal (%.1f, as /metrics writes device rates).
same() {
	awk -v a="$1" -v b="$2" -v r="${3:-}" 'BEGIN { if (a == "" || b == "" || a == "null") exit 1
		exit !(r ? sprintf("%.1f", a) == b : a + 0 == b + 0) }'
}
# mismatches FIGS METRICS: figures whose /metrics sample is missing or
# differs.
mismatches() {
	local key v got bad=0
	while IFS=$'\t' read -r key v; do
		got=$(awk -v k="$key" 'index($0, k " ") == 1 { print substr($0, length(k) + 2); exit }' "$2")
		if [ -z "$got" ]; then
			echo "$key: not in /metrics"
			bad=1
		elif ! same "$v" "$got" "$([[ $key == ispmon_device_throughput_bytes_per_second\{* ]] && echo 1)"; then
			echo "$key: page $v, /metrics $got"
			bad=1
		fi
	done <"$1"
	return $bad
}
# snap NAME: HTML, JSON and /metrics of one collection, as NAME.{html,json,prom}.
snap() {
	local i g
	for ((i = 0; i < 20; i++)); do
		get /metrics >"$TMP/$1.pre" && get / >"$TMP/$1.html" && get /api/status >"$TMP/$1.json" &&
			get /metrics >"$TMP/$1.prom" || { sleep 0.2; continue; }
		g=$(gen_html "$TMP/$1.html")
		[ "$g" = "$(jq -r .collections "$TMP/$1.json")" ] || continue
		[ "$g" = "$(gen_metrics "$TMP/$1.prom")" ] && return 0
		[ "$g" = "$(gen_metrics "$TMP/$1.pre")" ] && { mv "$TMP/$1.pre" "$TMP/$1.prom"; return 0; }
	done
	return 1
}
CHROME=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
	--disable-background-networking --disable-component-update --disable-sync
	--disable-default-apps --disable-extensions --hide-scrollbars --enable-logging=stderr --v=0)
# browse OUT ARGS...: Chromium, in the router namespace (it reaches nothing
# but the testbed), with a fresh profile; console messages to OUT.console.
browse() {
	local out=$1
	shift
	rm -rf "$TMP/profile"
	r timeout 60 "${CHROME[@]}" --user-data-dir="$TMP/profile" "$@" 2>"$out.err"
	grep 'CONSOLE' "$out.err" >"$out.console"
}

# ---------------------------------------------------------------- testbed
netlab_build_tools || exit 1
netlab_up 10 10 1 1 && netlab_start_servers || exit 1
netlab_shape down 20 100 && netlab_shape up 10 100 || exit 1
# A hostile interface name (Linux allows <, >, " and & in one).
ip -n "$NS_ROUTER" link set "$ROUTER_LAN_IF" down &&
	ip -n "$NS_ROUTER" link set "$ROUTER_LAN_IF" name "$EVIL_IF" &&
	ip -n "$NS_ROUTER" link set "$EVIL_IF" up || { not_ok "rename the LAN interface"; exit 1; }
netlab_wait_ping lan "$ROUTER_LAN_IP4" 5 || exit 1
echo "1999999999 $LAN_MAC $LAN_IP4 $EVIL_NAME 01:$LAN_MAC" >"$TMP/leases"
ok "testbed: WAN 20 ms RTT, 20/10 Mbit/s, LAN 2 ms, LAN interface named $EVIL_IF"

SPEED="http://$SRV_IP4:$HTTP_PORT"
ip netns exec "$NS_ROUTER" "$BIN" --iface "$ROUTER_WAN_IF" --lan-iface "$EVIL_IF" --listen 127.0.0.1:8000 \
	--interval 2s --leases "$TMP/leases" \
	--ping-target "$SRV_IP4" --ping-target "$WAN_GW_IP4" --ping-interval 500ms --ping-timeout 1s \
	--speed-url "$SPEED/bytes/{bytes}" --speed-upload-url "$SPEED/upload" --speed-first-delay 1s \
	--speed-interval 2m --speed-max-time 3s --speed-busy-share 1 \
	--plan-download 20M --plan-upload 10M >/dev/null 2>"$TMP/ispmon.err" &
ISPMON_PID=$!
for _ in $(seq 1 50); do get /api/status >/dev/null && break; sleep 0.2; done
check "ispmon serves / and /api/status" bash -c "ip netns exec $NS_ROUTER curl -sf -o /dev/null $URL/ &&
	ip netns exec $NS_ROUTER curl -sf -o /dev/null $URL/api/status"

# Light traffic all along: small web transfers and DNS (bounded in time).
END=$(($(date +%s) + 240))
(
	while [ "$(date +%s)" -lt "$END" ]; do
		lan curl -s -o /dev/null --max-time 3 "$SPEED/bytes/20000"
		lan "$NETLAB_TOOLS/dnsq" --server "$SRV_IP4:$DNS_PORT" --count 2 --interval-ms 50 \
			--timeout-ms 500 >/dev/null 2>&1
		sleep 0.7
	done
) &
PIDS+=($!)

# The first speed test (1 s after start, 3 s per direction).
for _ in $(seq 1 60); do
	get /api/status >"$TMP/s.json" && jqe '.speedtest.upload != null and (.speedtest.running | not)' \
		"$TMP/s.json" && break
	sleep 0.5
done
check "the speed test ran against the testbed server" jqe '.speedtest.download.bytes_per_second > 1e6' "$TMP/s.json"
sleep 8 # idle, with pings and small transfers: the idle RTT baseline
# Bulk both ways with CUBIC (fills the 100-packet queue: latency under load).
lan timeout 30 iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 14 -R -C cubic >/dev/null 2>&1
lan timeout 30 iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 10 -C cubic >/dev/null 2>&1
for _ in $(seq 1 20); do
	get /api/status >"$TMP/s.json" && jqe '.capacity.bytes_per_second.download != null and .bufferbloat.grade != null' \
		"$TMP/s.json" && break
	sleep 0.5
done
check "capacity estimate ($(jq -r '.capacity.bytes_per_second.download' "$TMP/s.json") B/s) and grade ($(jq -r '.bufferbloat.grade' "$TMP/s.json")) after the bulk transfers" \
	jqe '.capacity.bytes_per_second.download > 2e6 and .capacity.bytes_per_second.download < 2.6e6 and .bufferbloat.grade != null' "$TMP/s.json"

# ---------------------------------------------------------------- the outage
snap before || { not_ok "HTML, JSON and /metrics of one collection"; exit 1; }
lost_before=$(jq '[.ping.targets[].lost] | add' "$TMP/before.json")
cut=$(date +%s.%N)
netlab_link down || { not_ok "WAN link cut"; exit 1; }
for _ in $(seq 1 40); do
	get /api/status >"$TMP/down.json" && jqe '.verdict.state == "down"' "$TMP/down.json" && break
	sleep 0.25
done
t_down=$(awk -v c="$cut" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - c }')
check "during the cut the verdict is down (${t_down} s after it)" jqe '.verdict.state == "down" and .outages.internet_up == false' "$TMP/down.json"
browse "$TMP/down" --dump-dom "$URL/" >"$TMP/down.dom"
check "... and the page in the browser says so" grep -q 'data-state="down".*Internet down' "$TMP/down.dom"
browse "$TMP/shot-down" --screenshot="$ART/status-down.png" --window-size=1280,1100 "$URL/" >/dev/null
sleep "$(awk -v c="$cut" -v n="$(date +%s.%N)" -v o="$OUTAGE" 'BEGIN { s = o - (n - c); print (s > 0 ? s : 0) }')"
# The router's ARP entry for the gateway: if it failed in the cut, the
# first reply also waits for the next ARP request (retrans_time apart).
arp=$(ip -n "$NS_ROUTER" neigh show "$WAN_GW_IP4" dev "$ROUTER_WAN_IF" | awk '{ print $NF }')
netlab_link up || { not_ok "WAN link restored"; exit 1; }
cut_s=$(awk -v c="$cut" -v n="$(date +%s.%N)" 'BEGIN { printf "%.2f", n - c }')
for _ in $(seq 1 40); do
	get /api/status >"$TMP/s.json" && jqe '.outages.internet_up == true' "$TMP/s.json" && break
	sleep 0.25
done
sleep 2.5 # a collection with the link back
snap after || { not_ok "HTML, JSON and /metrics of one collection after the outage"; exit 1; }
J=$TMP/after.json H=$TMP/after.html M=$TMP/after.prom
check "one outage recorded: ispmon_outages_total 1" [ "$(val "$M" ispmon_outages_total)" = 1 ]
dur=$(val "$M" ispmon_last_outage_duration_seconds)
# From the last reply before the cut to the first after it: the cut plus
# up to a ping interval (500 ms) and an RTT on each side, and one ARP
# retransmit time more when the router's entry was being resolved again.
over=1.2
case $arp in INCOMPLETE | FAILED)
	over=$(awk -v o="$over" -v r="$(r sysctl -n "net.ipv4.neigh.$ROUTER_WAN_IF.retrans_time_ms")" \
		'BEGIN { print o + r / 1000 }') ;;
esac
check "its duration ${dur:-none} s is the ${cut_s} s cut, from the last reply to the first again (-0.1 .. +$over s; ARP ${arp:-none} at the end)" \
	awk -v d="${dur:-0}" -v c="$cut_s" -v o="$over" 'BEGIN { exit !(d >= c - 0.1 && d <= c + o) }'
check "the page: degraded, back since the outage, listed with its duration" \
	bash -c "grep -q 'data-state=\"degraded\"' '$H' && grep -q 'Back since .* after a .* outage' '$H' &&
		grep -q 'data-metric=\"ispmon_last_outage_duration_seconds\" data-value=\"$dur\"' '$H'"
lost=$(jq '[.ping.targets[].lost] | add' "$J")
# The cut lasts OUTAGE seconds or longer when the browser's screenshot
# overran it, and the outage the pings saw an ARP retransmit more when the
# router's entry was being resolved again: the pings lost are those sent
# in the outage as measured.
want=$(awk -v c="${dur:-$cut_s}" 'BEGIN { printf "%d", 2 * c / 0.5 + 0.5 }')
check "pings lost in the outage: $((lost - lost_before)) (2 targets x ${dur:-$cut_s} s at 500 ms: ~$want, +-6)" \
	near "$((lost - lost_before))" "$want" 6
# The 5-minute window covers the whole run so far: its counts are the
# counters' (resolved = answered + lost).
recv=$(jq '[.ping.targets[].received] | add' "$J")
check "loss window: lost $(jq .ping.lost "$J") of $(jq .ping.resolved "$J") = the counters' $lost of $((recv + lost))" \
	jqe --argjson l "$lost" --argjson r "$((recv + lost))" '.ping.lost == $l and .ping.resolved == $r' "$J"

# ---------------------------------------------------------------- page vs /metrics
figs "$H" >"$TMP/figs.tsv"
n=$(wc -l <"$TMP/figs.tsv")
if out=$(mismatches "$TMP/figs.tsv" "$M"); then
	ok "all $n figures of the HTML page equal /metrics of collection $(gen_html "$H")"
else
	not_ok "page figures vs /metrics: $(head -c 600 <<<"$out")"
fi
need='ispmon_passive_throughput_bytes_per_second{direction="download"}
ispmon_passive_throughput_bytes_per_second{direction="upload"}
ispmon_passive_capacity_bytes_per_second{direction="download"}
ispmon_plan_bytes_per_second{direction="upload"}
ispmon_speedtest_bytes_per_second{direction="download",server="'$SRV_IP4:$HTTP_PORT'"}
ispmon_speedtest_loaded_rtt_seconds{direction="upload"}
ispmon_speedtest_timestamp_seconds
ispmon_passive_rtt_median_seconds{leg="wan"}
ispmon_passive_rtt_median_seconds{leg="lan"}
ispmon_bufferbloat_seconds
ispmon_passive_rtt_idle_seconds
ispmon_ping_rtt_median_seconds{target="'$SRV_IP4'"}
ispmon_probe_success{probe="ping",target="'$WAN_GW_IP4'"}
ispmon_ping_sent_total{target="'$SRV_IP4'"}
ispmon_internet_up
ispmon_outages_total
ispmon_outage_seconds_total
ispmon_device_bytes_total{device="'$LAN_MAC'",direction="download"}
ispmon_device_throughput_bytes_per_second{device="'$LAN_MAC'",direction="upload"}
ispmon_collections_total'
missing=$(comm -23 <(sort <<<"$need") <(cut -f1 "$TMP/figs.tsv" | sort -u))
check "the page shows every kind of figure${missing:+ (missing: $(tr '\n' ' ' <<<"$missing"))}" [ -z "$missing" ]
check "bufferbloat grade on the page is /metrics' grade_info" \
	grep -q "data-metric=\"ispmon_bufferbloat_grade_info{grade=&quot;$(jq -r .bufferbloat.grade "$J")&quot;}\"" "$H"
check "RTT medians near the emulated truth: WAN $(jq .rtt.wan.median_seconds "$J") s (20 ms+), LAN $(jq .rtt.lan.median_seconds "$J") s (2 ms+)" \
	jqe '.rtt.wan.median_seconds > 0.0195 and .rtt.wan.median_seconds < 0.2 and .rtt.lan.median_seconds > 0.0019 and .rtt.lan.median_seconds < 0.02' "$J"

# ---------------------------------------------------------------- /api/status
check "/api/status is application/json and valid JSON" bash -c \
	"ip netns exec $NS_ROUTER curl -sf -o /dev/null -w '%{content_type}' $URL/api/status | grep -qx application/json && [ -s '$J' ] && jq -e . '$J' >/dev/null"
jm() { same "$(jq -r "$1" "$J")" "$(val "$M" "$2")"; } # JQ_EXPR METRIC: the JSON figure is the sample
bad=
while read -r e m; do
	jm "$e" "$m" || bad+=" $e"
done <<EOF
.throughput_bytes_per_second.download ispmon_passive_throughput_bytes_per_second{direction="download"}
.capacity.bytes_per_second.download ispmon_passive_capacity_bytes_per_second{direction="download"}
.capacity.plan_bytes_per_second.download ispmon_plan_bytes_per_second{direction="download"}
.speedtest.upload.bytes_per_second ispmon_speedtest_bytes_per_second{direction="upload",server="$SRV_IP4:$HTTP_PORT"}
.speedtest.timestamp_seconds ispmon_speedtest_timestamp_seconds
.rtt.wan.median_seconds ispmon_passive_rtt_median_seconds{leg="wan"}
.bufferbloat.seconds ispmon_bufferbloat_seconds
.ping.targets[0].received ispmon_ping_received_total{target="$SRV_IP4"}
.outages.total ispmon_outages_total
.outages.seconds_total ispmon_outage_seconds_total
.outages.episodes[0].start_seconds ispmon_last_outage_start_seconds
.devices.top[0].bytes_total.upload ispmon_device_bytes_total{device="$LAN_MAC",direction="upload"}
.collections ispmon_collections_total
EOF
check "/api/status figures equal /metrics of the same collection${bad:+ (differ:$bad)}" [ -z "$bad" ]
check "HTML and JSON agree: verdict $(jq -r .verdict.state "$J"), $(jq .outages.last_24h "$J") outage(s) in 24 h, $(jq .ping.lost "$J") pings lost" \
	bash -c "grep -q 'data-state=\"$(jq -r .verdict.state "$J")\"' '$H' &&
		grep -q 'data-figure=\"outages_24h\" data-value=\"$(jq .outages.last_24h "$J")\"' '$H' &&
		grep -q 'data-figure=\"ping_lost_5m\" data-value=\"$(jq .ping.lost "$J")\"' '$H'"

# ---------------------------------------------------------------- escaping
check "the hostile interface name is escaped in HTML and intact in JSON" bash -c \
	"grep -q 'l&lt;i&gt;&quot;&amp;' '$H' && ! grep -qF '$EVIL_IF' '$H' && jqe '.interfaces.lan[0] == \"l<i>\\\"&\"' '$J'"
check "the hostile leases name never reaches the page (the device is its MAC)" bash -c \
	"! grep -qiF '<script' '$H' && ! grep -qF 'alert(1)' '$H' && jqe '.devices.top[0].device == \"$LAN_MAC\"' '$J'"

# ---------------------------------------------------------------- the browser
# The DOM Chromium builds: its figures against /metrics fetched right after
# (retried until both are of one collection).
for _ in $(seq 1 8); do
	browse "$TMP/dom" --dump-dom "$URL/" >"$TMP/dom.html"
	get /metrics >"$TMP/dom.prom"
	[ -n "$(gen_html "$TMP/dom.html")" ] && [ "$(gen_html "$TMP/dom.html")" = "$(gen_metrics "$TMP/dom.prom")" ] && break
done
check "Chromium loads the page (collection $(gen_html "$TMP/dom.html"), /metrics $(gen_metrics "$TMP/dom.prom"))" \
	[ "$(gen_html "$TMP/dom.html")" = "$(gen_metrics "$TMP/dom.prom")" ]
figs "$TMP/dom.html" >"$TMP/dom.tsv"
if [ "$(wc -l <"$TMP/dom.tsv")" -eq "$n" ] && out=$(mismatches "$TMP/dom.tsv" "$TMP/dom.prom"); then
	ok "all $n figures in the browser's DOM equal /metrics"
else
	not_ok "DOM figures ($(wc -l <"$TMP/dom.tsv") of $n) vs /metrics: $(head -c 600 <<<"${out:-}")"
fi
# Each line of each chart on its own (data-lines="download:6 upload:6").
# Figures taken every collection have a point in every 10 s bucket since
# ispmon started (U s before the page: U/10 of them, -1.5 .. +2 for the
# buckets' phase and a line that starts a collection or two late); the
# speed-test dots are the tests that succeeded; sparse figures (capacity,
# RTT, bloat) have at least one point and no more buckets than that.
U=$(awk -v t="$(grep -o 'data-figure="time" data-value="[^"]*"' "$TMP/dom.html" | grep -o '[0-9.e+]*"$' | tr -d '"')" \
	-v s="$(val "$TMP/dom.prom" ispmon_start_time_seconds)" 'BEGIN { print t - s }')
speed_ok() { val "$TMP/dom.prom" "ispmon_speedtest_runs_total{direction=\"$1\",result=\"success\",server=\"$SRV_IP4:$HTTP_PORT\"}"; }
lines=$(grep -o 'data-chart="[^"]*" data-points="[0-9]*" data-lines="[^"]*"' "$TMP/dom.html" |
	sed 's/data-chart="\([^"]*\)" data-points="[0-9]*" data-lines="\([^"]*\)"/\1 \2/' |
	awk '{ for (i = 2; i <= NF; i++) { split($i, kv, ":"); print $1, kv[1], kv[2] } }')
bad=
while read -r chart line pts; do
	case $chart:$line in
	c-throughput:* | c-loss:loss | c-outages:ok | c-dev0:*) lo=$(awk -v u="$U" 'BEGIN { print u / 10 - 1.5 }') ;;
	c-speedtest:download) lo=$(speed_ok download) ;;
	c-speedtest:upload) lo=$(speed_ok upload) ;;
	*) lo=1 ;;
	esac
	case $chart in c-speedtest) hi=$lo ;; *) hi=$(awk -v u="$U" 'BEGIN { print u / 10 + 2 }') ;; esac
	awk -v p="$pts" -v l="${lo:-1}" -v h="$hi" 'BEGIN { exit !(p >= l && p <= h) }' || bad+=" $chart:$line=$pts (${lo:-?}..$hi)"
done <<<"$lines"
check "every line (13) of the $(cut -d' ' -f1 <<<"$lines" | sort -u | wc -l) charts has its points ($(awk '{ printf "%s%s:%s=%s", (NR > 1 ? " " : ""), $1, $2, $3 }' <<<"$lines"); up ${U%.*} s)${bad:+; off:$bad}" \
	bash -c "[ $(wc -l <<<"$lines") = 13 ] && [ -z '$bad' ]"
check "the charts are drawn: lines, dots, bars and the outage strip" bash -c \
	"grep -q '<path class=\"ln k-download\" d=\"M' '$TMP/dom.html' && grep -q '<circle class=\"dt k-upload\"' '$TMP/dom.html' &&
	 grep -q '<rect class=\"k-loss\"' '$TMP/dom.html' && grep -q '<rect class=\"st-down\"' '$TMP/dom.html'"
check "no console message in the browser (CSP, SVG, loads)$(head -c 300 "$TMP/dom.console" | tr '\n' ' ')" \
	[ ! -s "$TMP/dom.console" ]
check "the browser's title is the verdict" grep -q "<title>Internet degraded - ispmon</title>" "$TMP/dom.html"

# The page at a phone's width and a desktop's, in Chromium driven over the
# DevTools protocol (tests/lib/browser.js): how wide it lays out, what
# sticks out, its meta refresh, console messages; whole-page screenshots.
lay() { r timeout 60 node tests/lib/browser.js "$@" 2>>"$TMP/browser.err"; }
lay "$URL/" 390 "$ART/status-phone.png" >"$TMP/phone.json"
check "phone (390 px): laid out $(jq .innerWidth "$TMP/phone.json") px wide, $(jq .scrollWidth "$TMP/phone.json") px of content, nothing past the edges$(jq -r '.wide[:5] | if length > 0 then ": " + join(" ") else "" end' "$TMP/phone.json")" \
	jqe '.innerWidth == 390 and .scrollWidth <= 390 and (.wide | length) == 0' "$TMP/phone.json"
check "the meta refresh is in the DOM: every $(jq -r .refresh "$TMP/phone.json") s (--interval 2s: the 10 s floor); viewport meta too" \
	jqe '.refresh == "10" and (.viewport | test("width=device-width"))' "$TMP/phone.json"
lay "$URL/" 1280 "$ART/status-desktop.png" >"$TMP/desktop.json"
check "desktop (1280 px): nothing past the edges, $(jq .height "$TMP/desktop.json") px tall" \
	jqe '.innerWidth == 1280 and .scrollWidth <= 1280 and (.wide | length) == 0 and .height > 1000' "$TMP/desktop.json"
check "no console message at either width$(jq -rs '[.[].console[]][:2] | if length > 0 then ": " + join(" | ") else "" end' "$TMP/phone.json" "$TMP/desktop.json" | head -c 300)" \
	jqe -s '[.[].console[]] == []' "$TMP/phone.json" "$TMP/desktop.json"
check "whole-page screenshots kept: $(file -b "$ART/status-desktop.png" | cut -d, -f2), $(file -b "$ART/status-phone.png" | cut -d, -f2) in tests/artifacts/" \
	bash -c "file -b '$ART/status-desktop.png' | grep -q 'PNG image data, 1280 x $(jq '.height // "?"' "$TMP/desktop.json"),' &&
		file -b '$ART/status-phone.png' | grep -q 'PNG image data, 390 x $(jq '.height // "?"' "$TMP/phone.json"),' &&
		[ \$(stat -c %s '$ART/status-desktop.png') -gt 50000 ]"

# Both checks can fail: the served page with an inline script (the CSP
# forbids it), a malformed SVG path and an element 700 px wide.
sed 's|</body>|<div style="width:700px">wide</div><script>document.title = "ran"</script><svg viewBox="0 0 9 9"><path d="M0 0 Lx"/></svg></body>|' \
	"$H" >"$TMP/bad.html"
browse "$TMP/bad" --dump-dom "file://$TMP/bad.html" >/dev/null
check "the console check fails on a bad page: Chromium's log has CONSOLE lines for its inline script and its SVG path ($(wc -l <"$TMP/bad.console"))" \
	bash -c "grep -q 'Content Security Policy' '$TMP/bad.console' && grep -q 'attribute d' '$TMP/bad.console'"
lay "file://$TMP/bad.html" 390 >"$TMP/bad.json"
check "the layout check fails on it: at 390 px laid out $(jq .innerWidth "$TMP/bad.json") px wide, past the edge: $(jq -r '.wide[:3] | join(" ")' "$TMP/bad.json")" \
	jqe '.innerWidth > 390 and .scrollWidth > 390 and (.wide | length) > 0 and (.console | length) >= 2' "$TMP/bad.json"

check "HEAD / answers, /nope is 404" bash -c \
	"[ \"\$(ip netns exec $NS_ROUTER curl -s -I -o /dev/null -w '%{http_code}' $URL/)\" = 200 ] &&
	 [ \"\$(ip netns exec $NS_ROUTER curl -s -o /dev/null -w '%{http_code}' $URL/nope)\" = 404 ]"
kill -TERM "$ISPMON_PID"
rc=0
wait "$ISPMON_PID" || rc=$?
ISPMON_PID=
check "ispmon stops cleanly ($rc) and logged no error" bash -c "[ $rc = 0 ] && ! grep -q 'level=error' '$TMP/ispmon.err'"
tap_exit
