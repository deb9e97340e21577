#!/usr/bin/env bash
# Active ping probes in the emulated home network. ispmon runs in the router
# and pings, every 200 ms with a 1 s timeout: the server by IPv4 and IPv6
# address and by a name (/etc/hosts), a blackholed address (no answer:
# "timeout"), two addresses wan answers with ICMP destination unreachable
# ("unreachable"), a name no resolver knows ("resolve") and a name that
# appears in /etc/hosts only later (looked up again). Checks: median and
# histogram RTT within 1 ms of the truth (ping(8) from the router, median),
# counters consistent, probe_success and failure reasons, loss counted
# during a 3 s WAN outage (one per ping sent while down, +-2), recovery;
# then the same with ping sockets disallowed (raw sockets), next to another
# program's pings. ispmon must never die nor log an error.
# Name lookups stay in the router namespace: its resolv.conf points at
# 127.0.0.1, where nothing listens (ip netns exec mounts /etc/netns/NS/*).
cd "$(dirname "$0")/.." || exit 1
. tests/lib/e2e.sh

ETC_NS=/etc/netns/$NS_ROUTER
e2e_cleanup() { rm -rf "$ETC_NS"; }

ONEWAY=15         # ms each way on the WAN: a 30 ms round trip
INTERVAL_MS=200
TIMEOUT_MS=1000
BLACKHOLE4=203.0.113.99   # wan drops it silently
UNREACH4=203.0.113.98     # wan answers with ICMP host unreachable
UNREACH6=2001:db8:3::98   # ... and ICMPv6 no route
NAMED=srv.ispmon.test     # in the router's /etc/hosts from the start
LATE=late.ispmon.test     # added to it while ispmon runs
NX=nonexistent.invalid    # never resolves

netlab_build_tools || exit 1
netlab_up $ONEWAY $ONEWAY || exit 1

# wan: the unreachable addresses are its own, rejected by nftables with an
# ICMP error, without ICMP rate limits so that every probe gets its error
# (a route of type unreachable would do, but forwarded errors have a rate
# limit of their own, global to the host). The blackholed one is dropped.
netlab_exec wan sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0 || exit 1
ip -n "$NS_WAN" route add blackhole $BLACKHOLE4/32 || exit 1
ip -n "$NS_WAN" addr add $UNREACH4/32 dev lo || exit 1
ip -n "$NS_WAN" addr add $UNREACH6/128 dev lo nodad || exit 1
netlab_exec wan nft -f - <<EOF || exit 1
table inet ispmon_ping_test {
	chain input {
		type filter hook input priority 0; policy accept;
		ip daddr $UNREACH4 reject with icmp type host-unreachable
		ip6 daddr $UNREACH6 reject with icmpv6 type no-route
	}
}
EOF

mkdir -p "$ETC_NS" || exit 1
printf '127.0.0.1 localhost\n::1 localhost\n%s %s\n' "$SRV_IP4" "$NAMED" >"$ETC_NS/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$ETC_NS/resolv.conf"

sent() { val "ispmon_ping_sent_total{target=\"$1\"}"; }
recvd() { val "ispmon_ping_received_total{target=\"$1\"}"; }
success() { val "ispmon_probe_success{probe=\"ping\",target=\"$1\"}"; }
fails() { val "ispmon_probe_failures_total{probe=\"ping\",target=\"$1\",reason=\"$2\"}"; }
num() { [[ ${1:-} =~ ^[0-9]+$ ]]; }

# wait_for SECONDS CMD...: scrape until CMD succeeds (bounded).
wait_for() {
	local end=$((SECONDS + $1))
	shift
	while ((SECONDS < end)); do
		scrape && "$@" && return 0
		sleep 0.2
	done
	return 1
}
received_at_least() { local v; v=$(recvd "$1"); num "$v" && [ "$v" -ge "$2" ]; }
success_is() { [ "$(success "$1")" = "$2" ]; }

start_ispmon() { # start_ispmon NAME TARGET...
	local name=$1 t args=()
	shift
	for t in "$@"; do args+=(--ping-target "$t"); done
	ip netns exec "$NS_ROUTER" "$BIN" --listen 127.0.0.1:8000 --interval 200ms \
		--ping-interval ${INTERVAL_MS}ms --ping-timeout ${TIMEOUT_MS}ms --no-speedtest "${args[@]}" \
		>/dev/null 2>"$TMP/$name.err" &
	ISPMON_PID=$!
	wait_for 10 true
}

stop_ispmon() { # stop_ispmon NAME
	local rc=0
	if kill -0 "$ISPMON_PID" 2>/dev/null; then
		ok "$1: ispmon still running"
	else
		not_ok "$1: ispmon died: $(tail -n 3 "$TMP/$1.err")"
	fi
	kill -TERM "$ISPMON_PID"
	wait "$ISPMON_PID" || rc=$?
	ISPMON_PID=
	check "$1: ispmon exits 0 on SIGTERM ($rc)" [ "$rc" -eq 0 ]
	check "$1: every stderr line is logfmt" \
		awk '!/^ts=[0-9T:.-]+Z level=(debug|info|warn|error) msg="/ { exit 1 }' "$TMP/$1.err"
	check "$1: no error logged" bash -c "! grep -q 'level=error' '$TMP/$1.err'"
	check "$1: warnings only about failing targets" bash -c \
		"! grep 'level=warn' '$TMP/$1.err' | grep -Ev 'msg=\"(ping target failing|cannot resolve ping target)\"' | grep -q ."
	cp "$TMP/$1.err" "tests/artifacts/ping-$1.log" 2>/dev/null
}

# ms VALUE_SECONDS: seconds -> ms with 3 decimals ("" stays "").
ms() { [ -n "${1:-}" ] && awk -v v="$1" 'BEGIN { printf "%.3f", v * 1000 }'; }

# expect_rtt NAME TARGET TRUTH_MS: median, mean and histogram within 1 ms.
expect_rtt() {
	local name=$1 t=$2 truth=$3 med sum cnt mean frac
	med=$(ms "$(val "ispmon_ping_rtt_median_seconds{target=\"$t\"}")")
	if [ -n "$med" ]; then
		check "$name: $t median $med ms within 1 ms of $truth ms" near "$med" "$truth" 1
	else
		not_ok "$name: $t has no median"
	fi
	sum=$(val "ispmon_ping_rtt_seconds_sum{target=\"$t\"}")
	cnt=$(val "ispmon_ping_rtt_seconds_count{target=\"$t\"}")
	if num "$cnt" && [ "$cnt" -gt 0 ]; then
		mean=$(awk -v s="$sum" -v c="$cnt" 'BEGIN { printf "%.3f", s / c * 1000 }')
		check "$name: $t mean $mean ms (sum/count of $cnt) within 1 ms of $truth ms" near "$mean" "$truth" 1
		check "$name: $t histogram count = received" [ "$cnt" = "$(recvd "$t")" ]
	else
		not_ok "$name: $t histogram is empty"
	fi
	# Share of samples between the edges around truth -1 ms and +1 ms.
	frac=$(awk -v k="ispmon_ping_rtt_seconds_bucket{target=\"$t\",le=\"" \
		-v lo="$(awk -v x="$truth" 'BEGIN { print (x - 1) / 1000 }')" \
		-v hi="$(awk -v x="$truth" 'BEGIN { print (x + 1) / 1000 }')" '
		index($0, k) == 1 {
			le = substr($1, length(k) + 1); sub(/"}$/, "", le)
			if (le == "+Inf") { inf = $2; next }
			le += 0
			if (le <= lo) clo = $2
			if (le >= hi && !seen) { chi = $2; seen = 1 }
		}
		END { if (!seen) chi = inf; if (inf > 0) printf "%.3f", (chi - clo) / inf; else print 0 }' "$TMP/m.prom")
	check "$name: $t histogram: $frac of the samples in the buckets around $truth +-1 ms (want >= 0.9)" \
		awk -v f="$frac" 'BEGIN { exit !(f >= 0.9) }'
}

# The truth: ping(8) from the router, median (the first one pays for ARP/ND).
truth4=$(netlab_ping_median router "$SRV_IP4" 20 0.05) || exit 1
truth6=$(netlab_ping_median router "$SRV_IP6" 20 0.05) || exit 1
echo "# truth: IPv4 $truth4 ms, IPv6 $truth6 ms (configured $((2 * ONEWAY)) ms)"
mkdir -p tests/artifacts

# --- ping sockets ------------------------------------------------------------
check "dgram: ping sockets allowed in the router" \
	bash -c "[[ \"\$(ip netns exec $NS_ROUTER sysctl -n net.ipv4.ping_group_range)\" == 0*2147483647 ]]"
if start_ispmon dgram "$SRV_IP4" "$SRV_IP6" "$BLACKHOLE4" "$UNREACH4" "$UNREACH6" "$NX" "$NAMED" "$LATE"; then
	ok "dgram: ispmon serves /metrics with 8 ping targets"
else
	not_ok "dgram: ispmon serves /metrics: $(head -c 400 "$TMP/dgram.err")"
	exit 1
fi
dgram_replies() { received_at_least "$SRV_IP4" 30 && received_at_least "$SRV_IP6" 30 && received_at_least $NAMED 30; }
check "dgram: 30 replies from $SRV_IP4, $SRV_IP6 and $NAMED" wait_for 20 dgram_replies
cp "$TMP/m.prom" tests/artifacts/ping-dgram.prom
check "dgram: logged ipv4=dgram ipv6=dgram" grep -q 'msg="ping" targets=8 .*ipv4=dgram ipv6=dgram' "$TMP/dgram.err"
check "dgram: socket info says dgram for both families" bash -c \
	"grep -q 'ispmon_ping_socket_info{family=\"ipv4\",mode=\"dgram\"} 1' $TMP/m.prom &&
	 grep -q 'ispmon_ping_socket_info{family=\"ipv6\",mode=\"dgram\"} 1' $TMP/m.prom"
if promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1; then
	ok "dgram: promtool check metrics accepts /metrics"
else
	not_ok "dgram: promtool check metrics: $(head -c 300 "$TMP/promtool")"
fi

expect_rtt dgram "$SRV_IP4" "$truth4"
expect_rtt dgram "$SRV_IP6" "$truth6"
expect_rtt dgram "$NAMED" "$truth4"
for t in "$SRV_IP4" "$SRV_IP6" "$NAMED"; do
	s=$(sent "$t") rv=$(recvd "$t")
	# At most one in flight: the next goes out 200 ms later, the answer takes 30 ms.
	check "dgram: $t sent $s, received $rv: nothing lost" bash -c "[ $rv -le $s ] && [ $((s - rv)) -le 1 ]"
	check "dgram: $t probe_success 1" [ "$(success "$t")" = 1 ]
	check "dgram: $t no failures" [ "$(fails "$t" timeout)$(fails "$t" unreachable)$(fails "$t" error)$(fails "$t" resolve)" = 0000 ]
	j=$(ms "$(val "ispmon_ping_jitter_seconds{target=\"$t\"}")")
	check "dgram: $t jitter $j ms (below 1 ms on a quiet line)" awk -v j="${j:-x}" 'BEGIN { exit !(j != "x" && j + 0 < 1) }'
done
check "dgram: $NAMED resolved to $SRV_IP4" grep -q "ispmon_ping_target_info{target=\"$NAMED\",address=\"$SRV_IP4\"} 1" "$TMP/m.prom"

s=$(sent "$BLACKHOLE4") f=$(fails "$BLACKHOLE4" timeout)
check "dgram: $BLACKHOLE4 probe_success 0" [ "$(success "$BLACKHOLE4")" = 0 ]
check "dgram: $BLACKHOLE4 received nothing" [ "$(recvd "$BLACKHOLE4")" = 0 ]
# Every probe older than the 1 s timeout has failed: at most 5 + 1 in flight.
check "dgram: $BLACKHOLE4 $f of $s probes failed with reason timeout, within the timeout" \
	bash -c "[ $f -ge 1 ] && [ $f -le $s ] && [ $((s - f)) -le $((TIMEOUT_MS / INTERVAL_MS + 1)) ]"
for t in $UNREACH4 $UNREACH6; do
	s=$(sent "$t") f=$(fails "$t" unreachable)
	check "dgram: $t probe_success 0" [ "$(success "$t")" = 0 ]
	check "dgram: $t $f of $s probes failed with reason unreachable (ICMP error, at once)" \
		bash -c "[ $f -ge 1 ] && [ $f -le $s ] && [ $((s - f)) -le 1 ] && [ $(recvd "$t") = 0 ] && [ $(fails "$t" timeout) = 0 ]"
done
for t in $NX $LATE; do
	f=$(fails "$t" resolve)
	check "dgram: $t probe_success 0, $f failures with reason resolve, nothing sent" \
		bash -c "[ '$(success "$t")' = 0 ] && [ $f -ge 10 ] && [ '$(sent "$t")' = 0 ]"
	check "dgram: $t has no address" grep -q "ispmon_ping_target_info{target=\"$t\",address=\"\"} 1" "$TMP/m.prom"
done
check "dgram: lookup failure logged as a warning" grep -q "level=warn msg=\"cannot resolve ping target\" target=$NX " "$TMP/dgram.err"

# The late name appears; it is looked up again (5 s, 10 s, 20 s after the
# first failure) while the outage below runs.
echo "$SRV_IP4 $LATE" >>"$ETC_NS/hosts"

# --- a 3 s WAN outage ----------------------------------------------------------
scrape
for t in "$SRV_IP4" "$SRV_IP6"; do
	declare "s0_${t//[.:]/_}=$(sent "$t")" "r0_${t//[.:]/_}=$(recvd "$t")" \
		"f0_${t//[.:]/_}=$(($(fails "$t" timeout) + $(fails "$t" unreachable)))"
done
netlab_link down || exit 1
t_down=$(date +%s.%N)
sleep 3
netlab_link up || exit 1
t_up=$(date +%s.%N)
expected=$(awk -v a="$t_down" -v b="$t_up" -v i=$INTERVAL_MS 'BEGIN { printf "%.1f", (b - a) * 1000 / i }')
# Everything sent while down has timed out 1 s later; the page is 200 ms old at most.
sleep 1.5
for t in "$SRV_IP4" "$SRV_IP6"; do
	check "outage: $t answers again" wait_for 5 success_is "$t" 1
done
scrape
cp "$TMP/m.prom" tests/artifacts/ping-outage.prom
for t in "$SRV_IP4" "$SRV_IP6"; do
	k=${t//[.:]/_}
	s0=s0_$k r0=r0_$k f0=f0_$k
	loss=$(( ($(sent "$t") - ${!s0}) - ($(recvd "$t") - ${!r0}) ))
	failed=$(( $(fails "$t" timeout) + $(fails "$t" unreachable) - ${!f0} ))
	check "outage: $t lost $loss pings, expected $expected (3 s down / 200 ms) +-2" near "$loss" "$expected" 2
	check "outage: $t $failed failures (timeout or unreachable), expected $expected +-2" near "$failed" "$expected" 2
done
check "outage: failing and recovering logged" bash -c \
	"grep -q 'level=warn msg=\"ping target failing\" target=$SRV_IP4 .*reason=timeout' '$TMP/dgram.err' &&
	 grep -c 'level=info msg=\"ping target answering\" target=$SRV_IP4 ' '$TMP/dgram.err' | grep -qx 2"

check "re-resolve: $LATE answers once it is in /etc/hosts" wait_for 30 success_is "$LATE" 1
check "re-resolve: $LATE resolved to $SRV_IP4" grep -q "ispmon_ping_target_info{target=\"$LATE\",address=\"$SRV_IP4\"} 1" "$TMP/m.prom"
check "re-resolve: $NX still fails" [ "$(success $NX)" = 0 ]
stop_ispmon dgram

# --- raw sockets ---------------------------------------------------------------
r sysctl -qw "net.ipv4.ping_group_range=1 0" || exit 1
if start_ispmon raw "$SRV_IP4" "$SRV_IP6" "$BLACKHOLE4" "$UNREACH4" "$UNREACH6"; then
	ok "raw: ispmon serves /metrics with ping sockets disallowed"
else
	not_ok "raw: ispmon serves /metrics: $(head -c 400 "$TMP/raw.err")"
	exit 1
fi
# Another program pinging the same server meanwhile: raw sockets see each
# other's replies and must keep to their own.
r ping -n -q -i 0.05 -c 80 "$SRV_IP4" >"$TMP/ping.out" 2>&1 &
OTHER=$!
raw_replies() { received_at_least "$SRV_IP4" 30 && received_at_least "$SRV_IP6" 30; }
check "raw: 30 replies from $SRV_IP4 and $SRV_IP6" wait_for 20 raw_replies
wait $OTHER
check "raw: the other ping got its 80 replies" grep -q '80 packets transmitted, 80 received' "$TMP/ping.out"
scrape
cp "$TMP/m.prom" tests/artifacts/ping-raw.prom
check "raw: logged ipv4=raw ipv6=raw" grep -q 'msg="ping" targets=5 .*ipv4=raw ipv6=raw' "$TMP/raw.err"
check "raw: socket info says raw for both families" bash -c \
	"grep -q 'ispmon_ping_socket_info{family=\"ipv4\",mode=\"raw\"} 1' $TMP/m.prom &&
	 grep -q 'ispmon_ping_socket_info{family=\"ipv6\",mode=\"raw\"} 1' $TMP/m.prom"
expect_rtt raw "$SRV_IP4" "$truth4"
expect_rtt raw "$SRV_IP6" "$truth6"
for t in "$SRV_IP4" "$SRV_IP6"; do
	s=$(sent "$t") rv=$(recvd "$t")
	check "raw: $t sent $s, received $rv: none lost, none foreign" bash -c "[ $rv -le $s ] && [ $((s - rv)) -le 1 ]"
	check "raw: $t probe_success 1" [ "$(success "$t")" = 1 ]
done
for t in $UNREACH4 $UNREACH6; do
	s=$(sent "$t") f=$(fails "$t" unreachable)
	check "raw: $t $f of $s probes failed with reason unreachable" \
		bash -c "[ $f -ge 1 ] && [ $((s - f)) -le 1 ] && [ '$(success "$t")' = 0 ]"
done
s=$(sent "$BLACKHOLE4") f=$(fails "$BLACKHOLE4" timeout)
check "raw: $BLACKHOLE4 $f of $s probes failed with reason timeout" \
	bash -c "[ $f -ge 1 ] && [ $((s - f)) -le $((TIMEOUT_MS / INTERVAL_MS + 1)) ] && [ '$(success "$BLACKHOLE4")' = 0 ]"
stop_ispmon raw

tap_exit
