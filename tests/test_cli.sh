#!/usr/bin/env bash
# The binary's contract at the edges: flags, help, bad input (one clear
# error line, non-zero exit, nothing left attached), clsact ownership,
# clean detach on SIGINT/SIGTERM, the HTTP endpoint and its format.
# Runs in a private network namespace with its own interface.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
. tests/lib/bpfobjs.sh

BIN=$PWD/ispmon
NS=ispmcli$$
DEV=wan0
PORT=18000
TMP=$(mktemp -d)

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }

cleanup() {
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

nsx() { ip netns exec "$NS" "$@"; }

ip netns add "$NS"
nsx ip link set lo up
# A veth pair (this kernel may lack the dummy driver); the peer stays down.
nsx ip link add "$DEV" type veth peer name "${DEV}p"
nsx ip link set "${DEV}p" up
nsx ip link set "$DEV" up
nsx ip addr add 192.0.2.1/24 dev "$DEV"
nsx ip route add default via 192.0.2.254 dev "$DEV"

# run_fail NAME WANT_RC WANT_TEXT CMD...: the command fails with WANT_RC,
# prints exactly one line on stderr containing WANT_TEXT, nothing on stdout,
# and leaves no qdisc or filter on the interface.
run_fail() {
	local name=$1 want_rc=$2 want=$3 rc lines
	shift 3
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	lines=$(wc -l <"$TMP/err")
	if [ "$rc" -eq "$want_rc" ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$TMP/err" &&
		[ ! -s "$TMP/out" ]; then
		ok "$name: exit $rc, one line: $(cut -c1-150 "$TMP/err")"
	else
		not_ok "$name: rc=$rc (want $want_rc), $lines stderr lines, want '$want': $(head -c 400 "$TMP/err")"
	fi
	check "$name: no clsact left on $DEV" no_clsact
}
no_clsact() { nsx ip link show "$DEV" >/dev/null && ! nsx tc qdisc show dev "$DEV" | grep -q clsact; }
# Our filters, by program name: tc_ingress / tc_egress.
filters() { nsx tc filter show dev "$DEV" "$1" | grep -c 'name tc_\(ingress\|egress\)' || true; }

wait_http() { # wait_http URL: bounded wait (30 s: a loaded machine verifies slowly) until the server answers
	for _ in $(seq 1 300); do
		nsx curl -sf -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.1
	done
	return 1
}

# --- flags -----------------------------------------------------------------
out=$("$BIN" --help 2>&1)
check "--help exits 0 and prints usage" [ $? -eq 0 ]
check "--help lists every flag" bash -c 'for f in --iface --lan-iface --max-devices --listen --interval --log-level --btf --tcp-hooks --ping-target --ping-interval --ping-timeout --no-ping --no-speedtest --help --version; do grep -q -- "$f" <<<"$1" || exit 1; done' _ "$out"
check "--version prints the version" bash -c '"$1" --version | grep -Eq "^ispmon [0-9]+\.[0-9]+\.[0-9]+"' _ "$BIN"

run_fail "unknown flag" 2 "unknown option '--bogus'" nsx "$BIN" --bogus
run_fail "missing value" 2 "needs a value" nsx "$BIN" --iface
run_fail "bad listen address" 2 "invalid listen address" nsx "$BIN" --listen 1.2.3.4.5:80
run_fail "bad port" 2 "invalid listen address" nsx "$BIN" --listen :99999
run_fail "three --leases" 2 "at most 2 --leases" nsx "$BIN" --leases /a --leases /b --leases /c
run_fail "bad interval" 2 "invalid interval" nsx "$BIN" --interval fast
run_fail "stray argument" 2 "unexpected argument" nsx "$BIN" "$DEV"
run_fail "unknown interface" 1 "interface not found" nsx "$BIN" --iface nosuch0 --listen 127.0.0.1:$PORT
run_fail "unknown LAN interface" 1 "LAN interface not found" nsx "$BIN" --iface "$DEV" --lan-iface nosuch1 --listen 127.0.0.1:$PORT
run_fail "LAN interface = WAN interface" 1 "cannot also be the WAN" nsx "$BIN" --iface "$DEV" --lan-iface "$DEV" --listen 127.0.0.1:$PORT
run_fail "bad --max-devices" 2 "invalid --max-devices" nsx "$BIN" --max-devices lots
run_fail "bad --ping-target" 2 "invalid --ping-target" nsx "$BIN" --ping-target "bad host"
run_fail "duplicate --ping-target" 2 "duplicate --ping-target" nsx "$BIN" --ping-target 192.0.2.9 --ping-target 192.0.2.9
run_fail "bad --ping-interval" 2 "invalid --ping-interval" nsx "$BIN" --ping-interval 10ms
run_fail "bad --ping-timeout" 2 "invalid --ping-timeout" nsx "$BIN" --ping-timeout soon
run_fail "--no-ping takes no value" 2 "unknown option" nsx "$BIN" --no-ping=yes
run_fail "bad --speed-url" 2 "speed" nsx "$BIN" --speed-url ftp://203.0.113.10/x
run_fail "--speed-upload-url alone" 2 "must follow" nsx "$BIN" --speed-upload-url http://203.0.113.10/upload
run_fail "bad --speed-budget" 2 "invalid --speed-budget" nsx "$BIN" --speed-budget lots
run_fail "bad --speed-interval" 2 "invalid --speed-interval" nsx "$BIN" --speed-interval 5s
run_fail "address not on this host" 1 "cannot listen" nsx "$BIN" --iface "$DEV" --listen 203.0.113.77:$PORT
run_fail "--btf missing file" 1 "cannot read the BTF file" nsx "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT --btf "$TMP/nope"
run_fail "--btf not a BTF file" 1 "cannot read the BTF file" nsx "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT --btf /etc/hostname
# A kernel without BTF: hide /sys/kernel/btf/vmlinux in a private mount ns.
run_fail "kernel without BTF" 1 "kernel BTF not found" \
	nsx unshare -m sh -c 'mount --bind /dev/null /sys/kernel/btf/vmlinux && exec "$0" "$@"' \
	"$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT
run_fail "bad --tcp-hooks" 2 "invalid --tcp-hooks 'sometimes'" nsx "$BIN" --tcp-hooks sometimes
# This kernel refuses fentry (EPERM) and has no kprobes: a forced rung fails
# cleanly, its programs gone with the process.
ours() { bpftool prog show 2>/dev/null | grep -c "name \(fentry\|fexit\|kprobe\)_tcp_" || true; }
run_fail "forced --tcp-hooks=fentry" 1 "cannot attach the TCP hooks.*mode=fentry tried=\"fentry: " \
	nsx "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT --no-ping --no-speedtest --tcp-hooks fentry
run_fail "forced --tcp-hooks=kprobe" 1 "cannot attach the TCP hooks.*mode=kprobe tried=\"kprobe: attach: " \
	nsx "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT --no-ping --no-speedtest --tcp-hooks kprobe
check "forced rungs: no fentry/fexit/kprobe program left loaded" [ "$(ours)" = 0 ]
run_fail "not root" 1 "permission denied" \
	nsx setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
	"$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT

# Busy port: something else holds it.
ip netns exec "$NS" iperf3 -s -1 -p $PORT -B 127.0.0.1 >/dev/null 2>&1 &
IPERF=$!
for _ in $(seq 1 50); do nsx ss -ltn | grep -q "127.0.0.1:$PORT " && break; sleep 0.1; done
run_fail "busy port" 1 "Address already in use" nsx "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT
kill $IPERF 2>/dev/null; wait $IPERF 2>/dev/null

# --- a real run: default interface, endpoint, detach on signals -------------
for sig in INT TERM; do
	# Pings stay in the namespace: its gateway, which never answers.
	ip netns exec "$NS" "$BIN" --listen 127.0.0.1:$PORT --interval 100ms \
		--ping-target 192.0.2.254 --ping-interval 100ms --ping-timeout 200ms --no-speedtest >"$TMP/run.out" 2>"$TMP/run.err" &
	pid=$!
	if wait_http "http://127.0.0.1:$PORT/metrics"; then
		ok "SIG$sig run: serving /metrics"
	else
		not_ok "SIG$sig run: serving /metrics ($(head -c 300 "$TMP/run.err"))"
	fi
	check "SIG$sig run: default-route interface $DEV picked" grep -q "msg=\"attached\" iface=$DEV " "$TMP/run.err"
	check "SIG$sig run: clsact created" bash -c "ip netns exec $NS tc qdisc show dev $DEV | grep -q clsact"
	check "SIG$sig run: one ingress and one egress filter" [ "$(filters ingress)$(filters egress)" = 11 ]
	check "SIG$sig run: TCP hooks on the tracepoint rung" grep -q 'msg="tcp hooks" mode=tracepoint attach=tp_btf requested=auto' "$TMP/run.err"
	check "SIG$sig run: every stderr line is logfmt" awk '!/^ts=[0-9T:.-]+Z level=(debug|info|warn|error) msg="/ { exit 1 }' "$TMP/run.err"
	if [ "$sig" = INT ]; then
		# The endpoint, once.
		nsx curl -s -D "$TMP/hdr" -o "$TMP/metrics" "http://127.0.0.1:$PORT/metrics"
		check "/metrics Content-Type is Prometheus text 0.0.4" grep -qi '^Content-Type: text/plain; version=0.0.4; charset=utf-8' "$TMP/hdr"
		check "/metrics has build info and interface" bash -c "grep -q '^ispmon_build_info{version=' $TMP/metrics && grep -q 'ispmon_wan_interface_info{iface=\"$DEV\"' $TMP/metrics"
		ping_failing() { # the first result comes after the 200 ms timeout
			for _ in $(seq 1 30); do
				nsx curl -s "http://127.0.0.1:$PORT/metrics" |
					grep -q '^ispmon_probe_success{probe="ping",target="192.0.2.254"} 0$' && return 0
				sleep 0.1
			done
			return 1
		}
		check "/metrics has the ping target, failing" ping_failing
		if promtool check metrics <"$TMP/metrics" >"$TMP/promtool" 2>&1; then
			ok "promtool check metrics accepts /metrics"
		else
			not_ok "promtool check metrics: $(head -c 300 "$TMP/promtool")"
		fi
		code=$(nsx curl -s -o "$TMP/index" -w '%{http_code} %{content_type}' "http://127.0.0.1:$PORT/")
		check "/ is an HTML landing page linking /metrics ($code)" bash -c "[[ '$code' == '200 text/html'* ]] && grep -q 'href=\"/metrics\"' $TMP/index"
		code=$(nsx curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nope")
		check "unknown path -> 404 ($code)" [ "$code" = 404 ]
		code=$(nsx curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/metrics")
		check "POST -> 405 ($code)" [ "$code" = 405 ]
		code=$(nsx curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$PORT/metrics")
		check "HEAD /metrics -> 200 ($code)" [ "$code" = 200 ]
		# A second instance on the same port fails and must not disturb the first.
		run_fail_keep() { nsx "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT --no-ping --no-speedtest >/dev/null 2>"$TMP/err2"; }
		run_fail_keep
		check "second instance on a busy port exits 1 without touching the first" \
			bash -c "[ $? -eq 1 ] && [ \$(ip netns exec $NS tc filter show dev $DEV ingress | grep -c 'name tc_ingress') -eq 1 ]"
	fi
	progs=$(bpf_ids $pid prog_id)
	maps=$(bpf_ids $pid map_id)
	kill -"$sig" $pid
	rc=0
	for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
	wait $pid || rc=$?
	check "SIG$sig: exits 0 ($rc)" [ "$rc" -eq 0 ]
	check "SIG$sig: logs stopped with totals" grep -q 'msg="stopped" download_bytes=' "$TMP/run.err"
	check "SIG$sig: clsact it created is gone" no_clsact
	objs_gone() { [ "$(wc -w <<<"$progs")" -ge 2 -a "$(wc -w <<<"$maps")" -ge 5 ] && bpf_gone "$progs" prog && bpf_gone "$maps" map; }
	check "SIG$sig: bpftool knows none of its $(wc -w <<<"$progs") programs and $(wc -w <<<"$maps") maps any more" objs_gone
	check "SIG$sig: bpftool net show dev $DEV: no filter" bash -c "! ip netns exec $NS bpftool net show dev $DEV | grep -q 'tc_'"
done

# --- a LAN interface too: both attached, both cleaned up ---------------------
ip netns exec "$NS" "$BIN" --iface "$DEV" --lan-iface "${DEV}p" --listen 127.0.0.1:$PORT --no-ping --no-speedtest >/dev/null 2>"$TMP/run.err" &
pid=$!
wait_http "http://127.0.0.1:$PORT/metrics"
check "LAN hook: attached on ${DEV}p as side=lan" grep -q "iface=${DEV}p .*side=lan" "$TMP/run.err"
check "LAN hook: filters on ${DEV}p" [ "$(nsx tc filter show dev "${DEV}p" ingress | grep -c 'name tc_ingress')" = 1 ]
nsx curl -s -o "$TMP/m2" "http://127.0.0.1:$PORT/metrics"
check "LAN hook: attach info names both interfaces" bash -c "grep -q 'iface=\"$DEV\",side=\"wan\"' $TMP/m2 && grep -q 'iface=\"${DEV}p\",side=\"lan\"' $TMP/m2"
kill -TERM $pid
wait $pid
check "LAN hook: no clsact left on ${DEV}p" bash -c "! ip netns exec $NS tc qdisc show dev ${DEV}p | grep -q clsact"
check "LAN hook: no clsact left on $DEV" no_clsact

# --- clsact that was already there is left alone, with its other filters ----
nsx tc qdisc add dev "$DEV" clsact
# A foreign classic-BPF filter that matches nothing (no act_* modules here).
nsx tc filter add dev "$DEV" ingress prio 7 bpf bytecode '1,6 0 0 0'
ip netns exec "$NS" "$BIN" --iface "$DEV" --listen 127.0.0.1:$PORT --no-ping --no-speedtest >/dev/null 2>"$TMP/run.err" &
pid=$!
wait_http "http://127.0.0.1:$PORT/metrics"
check "existing clsact: logged as existing" grep -q 'clsact=existing' "$TMP/run.err"
check "existing clsact: our filter added beside the foreign one" [ "$(filters ingress)$(filters egress)" = 11 ]
kill -TERM $pid
wait $pid
check "existing clsact: still there after exit" bash -c "ip netns exec $NS tc qdisc show dev $DEV | grep -q clsact"
check "existing clsact: foreign filter kept" bash -c "ip netns exec $NS tc filter show dev $DEV ingress | grep -q bytecode"
check "existing clsact: our filters removed" [ "$(filters ingress)$(filters egress)" = 00 ]
nsx tc qdisc del dev "$DEV" clsact

tap_exit
