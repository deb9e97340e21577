#!/usr/bin/env bash
# The speed test (user/speedtest.c, driven by tests/tools/speedtest_probe in
# the router namespace, where ispmon runs) on the emulated home network:
#  - accuracy: WAN RTT 30 ms (15 + 15), both directions shaped to 20 Mbit/s;
#    download and upload rates within 5% of iperf3's goodput from lan; IPv6;
#  - every fault ends as a failure with its reason label within its cap:
#    unresolvable name, refused and unreachable (silently dropped) address,
#    HTTP 404 and 500, redirect loop, a stalling server, a server streaming
#    forever (sized request and plain file), TLS to a plain-HTTP port, a
#    self-signed certificate, upload refused (413) and reset;
#  - frugality: the daily budget skips with reason "budget" (also across a
#    restart, through the state file), a busy line postpones, a fresh
#    capacity estimate skips; the rtt hooks; stopping the scheduler mid-test.
# Needs root. Prints "ok - ..." / "not ok - ..." per check; exits non-zero on
# any failure. Takes about 35 s.
# shellcheck disable=SC2016,SC2317  # eval'd checks, trap-called functions
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib/tap.sh
source "$HERE/lib/tap.sh"
finish() {
	tap_exit
	exit
}

[ "$(id -u)" = 0 ] || { echo "not ok - test_speedtest.sh needs root"; exit 1; }
if ! out=$(make -s -C "$HERE/tools" 2>&1); then
	echo "$out" | head -20
	not_ok "build tests/tools (speedtest_probe)"
	finish
fi
# shellcheck source=tests/lib/netlab.sh
source "$HERE/lib/netlab.sh"
PROBE=$NETLAB_TOOLS/speedtest_probe
WORK=$(mktemp -d /tmp/test_speedtest.XXXXXX)
# `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf:
# the router namespace resolves through its own loopback, where nothing
# listens, so name lookups fail at once and nothing leaves the lab.
NETNS_ETC=/etc/netns/$NS_ROUTER
cleanup() {
	netlab_down
	[ -n "${NETNS_ETC_MADE:-}" ] && rm -rf "$NETNS_ETC"
	rm -rf "$WORK"
}
netlab_install_trap
trap cleanup EXIT
ROUTER() { ip netns exec "$NS_ROUTER" "$@"; }
LAN() { ip netns exec "$NS_LAN" "$@"; }

if [ -e "$NETNS_ETC" ]; then
	not_ok "$NETNS_ETC exists already"
	finish
fi
mkdir -p "$NETNS_ETC" && NETNS_ETC_MADE=1 && echo "nameserver 127.0.0.1" >"$NETNS_ETC/resolv.conf"

SECONDS=0
if netlab_up 15 15 && netlab_start_servers && netlab_shape down 20 && netlab_shape up 20; then
	ok "netlab up: WAN 15 + 15 ms, shaped to 20 Mbit/s both ways (${SECONDS}s)"
else
	not_ok "netlab up with 15 + 15 ms and 20 Mbit/s shaping"
	finish
fi
S=http://$SRV_IP4:$HTTP_PORT
SERVER=$SRV_IP4:$HTTP_PORT

# probe NAME ARGS...: run the driver in the router namespace; metrics go to
# $WORK/NAME.prom, results and logs to $WORK/NAME.log; sets RC and WALL (s).
probe() {
	local name=$1 t0=$EPOCHREALTIME
	shift
	ROUTER timeout 60 "$PROBE" "$@" >"$WORK/$name.prom" 2>"$WORK/$name.log"
	RC=$?
	WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
}
# field NAME RUN DIRECTION KEY: a value from the driver's result line.
field() {
	awk -v run="run=$2" -v dir="direction=$3" -v k="$4" '
		$1 == "result" && $2 == run && $4 == dir {
			for (i = 2; i <= NF; i++)
				if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit }
		}' "$WORK/$1.log"
}
metric() { metric_value "$WORK/$1.prom" "$2"; }
in_range() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v != "" && v + 0 >= lo && v + 0 <= hi) }'; }
show_log() { sed 's/^/#   /' "$WORK/$1.log" | grep -v 'level=debug' | head -n "${2:-8}"; }

# iperf_kbit [-R]: iperf3 receiver goodput from lan in kbit/s (1 s omitted).
iperf_kbit() {
	LAN timeout 30 iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 5 -O 1 -f k --connect-timeout 3000 "$@" 2>&1 |
		awk '/receiver/ { for (i = 1; i < NF; i++) if ($(i + 1) == "Kbits/sec") v = $i } END { print v }'
}

# --- accuracy ---------------------------------------------------------------
truth_down=$(iperf_kbit -R)
truth_up=$(iperf_kbit)
check "iperf3 goodput from lan: down ${truth_down:-?} kbit/s, up ${truth_up:-?} kbit/s (HTB 20 Mbit/s)" \
	eval 'in_range "$truth_down" 17000 20000 && in_range "$truth_up" 17000 20000'

probe acc --url "$S/bytes/{bytes}" --upload-url "$S/upload" --streams 4
for dir in download upload; do
	truth=$truth_down
	[ "$dir" = upload ] && truth=$truth_up
	st=$(field acc 1 $dir status)
	bps=$(field acc 1 $dir bytes_per_second)
	kbit=$(awk -v b="${bps:-0}" 'BEGIN { printf "%.0f", b * 8 / 1000 }')
	el=$(field acc 1 $dir elapsed_s)
	check "$dir: $kbit kbit/s within 5% of iperf3's ${truth:-?} kbit/s (status $st, end $(field acc 1 $dir end), ramp $(field acc 1 $dir ramp_s) s, measured $(field acc 1 $dir measured_s) s, ${el}s)" \
		eval '[ "$st" = ok ] && rel_near "$kbit" "${truth:-0}" 0.05'
	check "$dir: stopped on a stable rate well before the 10 s cap ($el s)" \
		eval '[ "$(field acc 1 $dir end)" = stable ] && in_range "$el" 1 6'
	m=$(metric acc "ispmon_speedtest_bytes_per_second{direction=\"$dir\",server=\"$SERVER\"}")
	check "$dir: ispmon_speedtest_bytes_per_second{server=\"$SERVER\"} = $m (the result)" \
		eval '[ -n "$m" ] && rel_near "$m" "$bps" 0.001'
	rtt=$(metric acc "ispmon_speedtest_loaded_rtt_seconds{direction=\"$dir\"}")
	check "$dir: loaded RTT $rtt s >= the 30 ms line RTT (queueing under load), < 1 s" \
		in_range "$rtt" 0.029 1
done
[ "$(field acc 1 download status)" = ok ] || show_log acc
used=$(metric acc ispmon_speedtest_data_used_bytes_total)
sum=$(( $(field acc 1 download bytes_used) + $(field acc 1 upload bytes_used) ))
check "data used $used bytes = the two directions' $sum, below 2 x 200 MB" \
	eval '[ "$used" = "$sum" ] && in_range "$used" 1000000 400000000'
check "ispmon_probe_success{target=\"$SERVER\"} 1" \
	[ "$(metric acc "ispmon_probe_success{probe=\"speedtest\",target=\"$SERVER\"}")" = 1 ]
ts=$(metric acc ispmon_speedtest_timestamp_seconds)
check "ispmon_speedtest_timestamp_seconds $ts is now" in_range "$ts" $(($(date +%s) - 60)) $(($(date +%s) + 1))
if out=$(promtool check metrics <"$WORK/acc.prom" 2>&1); then
	ok "promtool check metrics accepts the output"
else
	not_ok "promtool check metrics: ${out//$'\n'/ }"
fi

probe v6 --url "http://[$SRV_IP6]:$HTTP_PORT/bytes/{bytes}" --direction download
bps=$(field v6 1 download bytes_per_second)
kbit=$(awk -v b="${bps:-0}" 'BEGIN { printf "%.0f", b * 8 / 1000 }')
check "IPv6 download: $kbit kbit/s within 5% of ${truth_down:-?}, server label [$SRV_IP6]:$HTTP_PORT" \
	eval '[ "$(field v6 1 download server)" = "[$SRV_IP6]:$HTTP_PORT" ] && rel_near "$kbit" "${truth_down:-0}" 0.05'

# --- faults -----------------------------------------------------------------
# fault WHAT REASON MIN_S MAX_S DIRECTION ARGS...: the test fails with REASON,
# the driver returns within MIN_S..MAX_S, the failure is counted, probe
# success is 0, and no more than the byte cap (+ one buffer per stream) is used.
fault() {
	local what=$1 reason=$2 lo=$3 hi=$4 dir=$5 st rs used target cap=200000000
	shift 5
	probe fault --direction "$dir" "$@"
	st=$(field fault 1 "$dir" status)
	rs=$(field fault 1 "$dir" reason)
	used=$(field fault 1 "$dir" bytes_used)
	target=$(field fault 1 "$dir" server)
	[[ " $* " == *" --max-bytes 1M "* ]] && cap=$((1000000 + 4 * 131072 + 65536))
	if [ "$st" = failed ] && [ "$rs" = "$reason" ] && [ "$RC" = 1 ] && in_range "$WALL" "$lo" "$hi" &&
		[ "$(metric fault "ispmon_probe_failures_total{probe=\"speedtest\",reason=\"$reason\",target=\"$target\"}")" = 1 ] &&
		[ "$(metric fault "ispmon_probe_success{probe=\"speedtest\",target=\"$target\"}")" = 0 ] &&
		in_range "$used" 0 "$cap"; then
		ok "$what: failed, reason=$rs, in ${WALL}s (want $lo..$hi), $used bytes used"
	else
		not_ok "$what: status=$st reason=$rs rc=$RC in ${WALL}s, $used bytes (want failed/$reason in $lo..$hi s, <= $cap bytes)"
		show_log fault
	fi
}

fault "unresolvable name (speedtest.invalid)" dns 0 3 download --url "http://speedtest.invalid/bytes/{bytes}"
check "the name lookup never reached the lab's DNS server" eval '! grep -q invalid "$NETLAB_RUN/dnsd.log"'
fault "refused (port 8081)" connect 0 2 download --url "http://$SRV_IP4:8081/bytes/{bytes}"
fault "unreachable (203.0.113.99 drops silently), 2 s connect timeout" connect 1.9 4 download \
	--url "http://203.0.113.99:$HTTP_PORT/bytes/{bytes}" --connect-timeout 2
fault "HTTP 404" http_4xx 0 2 download --url "$S/no-such-file/{bytes}"
fault "HTTP 500" http_5xx 0 2 download --url "$S/status/500"
n0=$(grep -c 'GET /redirect-loop' "$NETLAB_RUN/httpd.log")
fault "redirect loop (at most 5 redirects)" redirect 0 2 download --url "$S/redirect-loop" --redirects 5
n=$(($(grep -c 'GET /redirect-loop' "$NETLAB_RUN/httpd.log") - n0))
check "redirect loop: $n requests per stream x 4 streams = 24 (1 + 5 redirects each)" [ "$n" = 24 ]
fault "stalling server (headers, then nothing), 2 s stall timeout" stalled 1.9 3.5 download \
	--url "$S/stall" --stall 2
# Nothing flows while the server stalls: the built-in latency probe (TCP
# handshakes after the grace period) sees the idle line's RTT.
rtt=$(field fault 1 download loaded_rtt_s)
check "built-in handshake RTT on the idle (stalled) line: $rtt s, within 2 ms of the 30 ms line RTT" \
	near "${rtt:-0}" 0.030 0.002
fault "server streaming forever, sized request ({bytes}), 1 MB cap" oversize 0 3 download \
	--url "$S/forever?bytes={bytes}" --streams 1 --max-bytes 1M
fault "server streaming forever, plain URL, 1 MB cap (reached before anything is measurable)" byte_cap 0 3 download \
	--url "$S/forever" --max-bytes 1M
fault "TLS to a plain-HTTP port" tls 0 3 download --url "https://$SRV_IP4:$HTTP_PORT/bytes/{bytes}"

# A self-signed certificate, served by openssl s_server in wan.
if openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$SRV_IP4" \
	-addext "subjectAltName=IP:$SRV_IP4" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1; then
	ip netns exec "$NS_WAN" openssl s_server -quiet -www -accept 8443 \
		-cert "$WORK/cert.pem" -key "$WORK/key.pem" </dev/null >"$WORK/s_server.log" 2>&1 &
	S_SERVER=$!
	for ((i = 0; i < 100; i++)); do
		[ -n "$(ip netns exec "$NS_WAN" ss -Hltn 'sport = :8443')" ] && break
		sleep 0.05
	done
	fault "self-signed certificate" tls 0 3 download --url "https://$SRV_IP4:8443/bytes/{bytes}"
	kill "$S_SERVER" 2>/dev/null
	wait "$S_SERVER" 2>/dev/null
else
	not_ok "openssl req: cannot make a self-signed certificate"
fi
fault "upload refused (413)" http_4xx 0 2 upload --url "$S/bytes/{bytes}" --upload-url "$S/upload-refuse"
fault "upload connection reset by the server" closed 0 3 upload --url "$S/bytes/{bytes}" --upload-url "$S/upload-close"

probe dnsboth --url "http://speedtest.invalid/bytes/{bytes}" --upload-url "http://speedtest.invalid/upload"
check "a download that cannot resolve skips the same host's upload (status $(field dnsboth 1 upload status))" \
	eval '[ "$(field dnsboth 1 upload status)" = not_run ] && [ "$(metric dnsboth "ispmon_probe_failures_total{probe=\"speedtest\",reason=\"dns\",target=\"speedtest.invalid\"}")" = 1 ]'

# --- budget, busy line, capacity, hooks, scheduler --------------------------
# 4 MB per direction needs 4 MB + 4 x 128 KiB + 64 KiB = 4.6 MB of budget:
# run 1 (two directions, ~8.3 MB) fits in 12 MB, run 2 does not.
probe budget --url "$S/bytes/{bytes}" --upload-url "$S/upload" --max-bytes 4M --budget 12M --runs 2 \
	--state "$WORK/budget.state"
used=$(metric budget ispmon_speedtest_data_used_bytes_total)
check "budget 12 MB: run 1 measured both directions ($(field budget 1 download status)/$(field budget 1 upload status), end $(field budget 1 download end))" \
	eval '[ "$(field budget 1 download status)" = ok ] && [ "$(field budget 1 upload status)" = ok ]'
check "budget 12 MB: run 2 skipped with reason budget in both directions, nothing more used ($used bytes)" \
	eval '[ "$(field budget 2 download reason)" = budget ] && [ "$(field budget 2 upload reason)" = budget ] &&
		[ "$(metric budget "ispmon_speedtest_skipped_total{reason=\"budget\"}")" = 2 ] &&
		[ "$used" = "$(( $(field budget 1 download bytes_used) + $(field budget 1 upload bytes_used) ))" ] &&
		in_range "$used" 1 12000000 && [ "$(metric budget ispmon_speedtest_budget_used_bytes)" = "$used" ]'
probe budget2 --url "$S/bytes/{bytes}" --upload-url "$S/upload" --max-bytes 4M --budget 12M \
	--state "$WORK/budget.state"
check "budget survives a restart (state file): skipped, reason budget, exit 3 (rc $RC)" \
	eval '[ "$(field budget2 1 download reason)" = budget ] && [ "$RC" = 3 ] &&
		[ "$(metric budget2 ispmon_speedtest_budget_used_bytes)" = "$used" ]'

n0=$(wc -l <"$NETLAB_RUN/httpd.log")
probe busy --url "$S/bytes/{bytes}" --upload-url "$S/upload" --busy 0.9
check "busy line (hook 0.9 > 0.3): postponed, counted, no byte sent" \
	eval '[ "$(field busy 1 download status)" = postponed ] && [ "$RC" = 3 ] &&
		[ "$(metric busy ispmon_speedtest_postponed_total)" = 1 ] &&
		[ "$(metric busy ispmon_speedtest_data_used_bytes_total)" = 0 ] &&
		[ "$(wc -l <"$NETLAB_RUN/httpd.log")" = "$n0" ]'
probe quiet --url "$S/bytes/{bytes}" --direction download --busy 0.1 --max-bytes 2M --grace 0.25 --max-time 3
check "quiet line (hook 0.1): runs (status $(field quiet 1 download status))" \
	eval '[ "$(field quiet 1 download status)" = ok ] && [ "$(metric quiet ispmon_speedtest_postponed_total)" = 0 ]'
probe fresh --url "$S/bytes/{bytes}" --capacity-fresh
check "fresh passive capacity estimate: skipped, reason capacity_fresh" \
	eval '[ "$(field fresh 1 download reason)" = capacity_fresh ] &&
		[ "$(metric fresh "ispmon_speedtest_skipped_total{reason=\"capacity_fresh\"}")" = 1 ]'
# The built-in latency probe's handshakes show in httpd's log as empty
# requests ("- - 400"); with the hooks there are none.
n0=$(grep -c ' - - 400 ' "$NETLAB_RUN/httpd.log")
probe hook --url "$S/bytes/{bytes}" --direction download --hook-rtt 42 --max-bytes 3M --grace 0.25 --max-time 3
sleep 0.2
n=$(($(grep -c ' - - 400 ' "$NETLAB_RUN/httpd.log") - n0))
check "rtt hooks: begun once, their 42 ms is the loaded RTT, no handshake probes ($n)" \
	eval 'grep -q "rtt_begins=1" "$WORK/hook.log" && [ "$n" = 0 ] &&
		[ "$(metric hook "ispmon_speedtest_loaded_rtt_seconds{direction=\"download\"}")" = 0.042000000000000003 ]'
probe sched --url "$S/bytes/{bytes}" --upload-url "$S/upload" --schedule 1.5 --interval 3600
stop_s=$(awk '$1 == "result" && $2 == "schedule" { sub("stop_s=", "", $3); print $3 }' "$WORK/sched.log")
check "scheduler: the first run starts at once; stop during its load returns in ${stop_s:-?} s (< 0.5), not counted as a failure" \
	eval 'in_range "$stop_s" 0 0.5 && grep -q "speedtest interrupted" "$WORK/sched.log" &&
		[ "$(metric sched "ispmon_speedtest_runs_total{direction=\"download\",result=\"failure\",server=\"$SERVER\"}")" = 0 ]'

check "httpd still serves" eval '[ "$(ROUTER curl -s --max-time 5 "$S/")" = ok ]'
echo "# speedtest total ${SECONDS}s"
finish
