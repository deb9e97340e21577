#!/usr/bin/env bash
# The kernel's view of the router's own TCP sockets (bpf/sock.bpf.c) in the
# emulated home network, WAN RTT 40 ms: ispmon in the router namespace,
# router-local transfers (curl from the router to the wan httpd, IPv4 and
# IPv6). Asserts: auto picks the tracepoint rung (tp_btf; fentry is refused
# here) and exports it; srtt and rcv_rtt medians within 5% of the truth (the
# router's ping median); bytes acked/received equal to what curl sent and
# received (payload + HTTP headers, +-2 per connection for SYN/FIN);
# connections opened/closed and their durations against curl's; the mean
# cwnd of the samples within 10% of the same connections' cwnd as ss -ti
# shows it (polled every 20 ms, sampled by the hooks' rule: once per srtt
# while data is being acked); after a WAN outage during an upload,
# retransmits equal to the namespace's own RetransSegs; transfers in other
# namespaces (the lan device through the router, the wan server's side, the
# root namespace) not counted; and the raw_tp rung on a kernel without BTF
# (hidden, CO-RE through --btf): RTT, bytes and retransmits again.
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

ROOT_HTTPD= SS_PID=
ROOT_PORT=18100 # root namespace: this suite's own port
e2e_cleanup() {
	[ -n "$ROOT_HTTPD" ] && kill -TERM "$ROOT_HTTPD" 2>/dev/null
	[ -n "$SS_PID" ] && kill -TERM "$SS_PID" 2>/dev/null
}

netlab_build_tools || exit 1
netlab_up 20 20 || exit 1
netlab_start_servers || exit 1
netlab_wait_ping router "$SRV_IP6" 5 || exit 1

# start_ispmon LOGNAME [PREFIX...] -- ARGS...: ispmon in the router, wait for /metrics.
start_ispmon() {
	local name=$1
	shift
	local pre=()
	while [ "$1" != -- ]; do pre+=("$1"); shift; done
	shift
	ispmon_run "$TMP/$name.err" "${pre[@]}" -- --interval 200ms --no-ping --no-speedtest --max-devices 0 "$@"
}
stop_ispmon() {
	kill -TERM "$ISPMON_PID"
	wait "$ISPMON_PID"
	local rc=$?
	ISPMON_PID=
	return $rc
}
# scrape: a fresh page (one collection after the last traffic).
scrape() { sleep 0.5; r curl -sf --max-time 2 -o "$TMP/m.prom" http://127.0.0.1:8000/metrics; }
net() { val "$1{scope=\"network\"}"; }
pct() { val "ispmon_tcp_rtt_percentile_seconds{estimator=\"$1\",scope=\"network\",percentile=\"50\"}"; }
conns() { val "ispmon_tcp_connections_total{event=\"$1\",scope=\"network\"}"; }
retrans_segs() { # the router namespace's own count
	ip netns exec "$NS_ROUTER" awk '$1 == "Tcp:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 }
		else { print $c["RetransSegs"]; exit } }' /proc/net/snmp
}

# The truth for cwnd: the router's connections to the server as ss -ti
# shows them (the kernel's tcp_info, through sock_diag), polled every 20 ms
# (bounded: 40 s), one line per socket and poll, stamped.
ss_poll_start() {
	# Not through r(): $! must be the loop itself (ip netns exec execs it).
	ip netns exec "$NS_ROUTER" bash -c 'end=$((SECONDS + 40)); while ((SECONDS < end)); do
		ss -HtinO state established "( dport = :$0 )" | sed "s/^/$EPOCHREALTIME /"; sleep 0.02; done' \
		"$HTTP_PORT" >"$TMP/ss.log" 2>&1 &
	SS_PID=$!
}
# ss_cwnd: "MEAN COUNT" of the polled cwnd, sampled by the hooks' rule: per
# socket, at most once per srtt, and only when bytes_acked grew meanwhile.
ss_cwnd() {
	awk '{ k = $4; c = s = ""; a = 0
		for (i = 5; i <= NF; i++)
			if ($i ~ /^cwnd:/) c = substr($i, 6)
			else if ($i ~ /^bytes_acked:/) a = substr($i, 13) + 0
			else if ($i ~ /^rtt:/) { split(substr($i, 5), v, "/"); s = v[1] / 1000 }
		if (c == "" || s == "" || $1 < due[k]) next
		if (a > acked[k]) { n++; sum += c; acked[k] = a }
		due[k] = $1 + s }
		END { if (n) printf "%.1f %d\n", sum / n, n }' "$TMP/ss.log"
}

head -c 3000000 /dev/urandom >"$TMP/payload"
SENT=0 RECV=0 NCONN=0 DUR=0
# xfer up|down HOST SIZE [CURL ARGS...]: one transfer from the router, app
# limited (no standing queue); adds what it sent and received to the totals.
xfer() {
	local dir=$1 host=$2 size=$3 out
	shift 3
	if [ "$dir" = up ]; then
		head -c "$size" "$TMP/payload" >"$TMP/body"
		out=$(r curl -sS --max-time 30 --limit-rate 1M -o /dev/null --data-binary @"$TMP/body" "$@" \
			-w '%{size_request} %{size_upload} %{size_header} %{size_download} %{time_total}' \
			"http://$host:$HTTP_PORT/upload")
	else
		out=$(r curl -sS --max-time 30 --limit-rate 1M -o /dev/null "$@" \
			-w '%{size_request} %{size_upload} %{size_header} %{size_download} %{time_total}' \
			"http://$host:$HTTP_PORT/bytes/$size")
	fi || return 1
	read -r req up hdr down t <<<"$out"
	SENT=$((SENT + req + up)) RECV=$((RECV + hdr + down)) NCONN=$((NCONN + 1))
	DUR=$(awk -v a="$DUR" -v b="$t" 'BEGIN { print a + b }')
}

# --- the ladder on this kernel ----------------------------------------------
start_ispmon auto -- || { not_ok "ispmon starts"; exit 1; }
check "auto picks the tracepoint rung: $(grep -o 'msg="tcp hooks".*' "$TMP/auto.err")" \
	grep -q 'msg="tcp hooks" mode=tracepoint attach=tp_btf requested=auto' "$TMP/auto.err"
check "the refused fentry rung is named in that line" \
	grep -q 'msg="tcp hooks" .*unavailable=".*fentry: ' "$TMP/auto.err"
r curl -sf -o "$TMP/m.prom" http://127.0.0.1:8000/metrics
for p in tp_tcp_probe tp_tcp_retrans tp_sock_state; do
	check "ispmon_bpf_attach_info has $p as tp_btf" \
		[ "$(val "ispmon_bpf_attach_info{program=\"$p\",mode=\"tp_btf\",iface=\"\",side=\"router\"}")" = 1 ]
done

# --- RTT, bytes, connections ------------------------------------------------
truth=$(netlab_ping_median router "$SRV_IP4" 20 0.05) || exit 1
echo "# truth: router -> server ping median $truth ms (configured 40)"
scrape
sent0=$(net ispmon_tcp_bytes_acked_total) recv0=$(net ispmon_tcp_bytes_received_total)
open0=$(conns active_open) closed0=$(conns closed) dur0=$(val 'ispmon_tcp_connection_duration_seconds_sum{scope="network"}')
cw_sum0=$(val 'ispmon_tcp_cwnd_segments_sum{scope="network"}') cw_n0=$(val 'ispmon_tcp_cwnd_segments_count{scope="network"}')
ss_poll_start
check "IPv4 upload 2 MB from the router" xfer up "$SRV_IP4" 2000000
check "IPv4 download 2 MB to the router" xfer down "$SRV_IP4" 2000000
check "IPv6 upload 1 MB from the router" xfer up "[$SRV_IP6]" 1000000
check "IPv6 download 1 MB to the router" xfer down "[$SRV_IP6]" 1000000
kill -TERM "$SS_PID" 2>/dev/null
wait "$SS_PID" 2>/dev/null
SS_PID=
scrape
cp "$TMP/m.prom" tests/artifacts/tcp-e2e.prom 2>/dev/null
for est in srtt rcv_rtt; do
	got=$(pct $est)
	got_ms=$(awk -v g="${got:-0}" 'BEGIN { printf "%.3f", g * 1000 }')
	check "$est median $got_ms ms within 5% of the truth $truth ms" rel_near "$got_ms" "$truth" 0.05
done
d_sent=$(($(net ispmon_tcp_bytes_acked_total) - sent0))
d_recv=$(($(net ispmon_tcp_bytes_received_total) - recv0))
check "bytes acked $d_sent = curl's bytes sent $SENT (+-2 per connection)" near "$d_sent" "$SENT" $((2 * NCONN))
check "bytes received $d_recv = curl's bytes received $RECV (+-2 per connection)" near "$d_recv" "$RECV" $((2 * NCONN))
check "connections: $NCONN active opens" [ $(($(conns active_open) - open0)) = "$NCONN" ]
check "connections: $NCONN closed, none failed" \
	bash -c "[ $(($(conns closed) - closed0)) = $NCONN ] && [ '$(conns failed)' = 0 ]"
dur=$(val 'ispmon_tcp_connection_duration_seconds_sum{scope="network"}')
d_dur=$(awk -v a="$dur" -v b="$dur0" 'BEGIN { printf "%.3f", a - b }')
check "connection lifetimes sum $d_dur s vs curl's $DUR s (+ up to one RTT each for the close)" \
	awk -v d="$d_dur" -v c="$DUR" -v n="$NCONN" 'BEGIN { exit !(d >= c - 0.05 * n && d <= c + 0.1 * n) }'
check "the scrapes' server side (accepted) counts as loopback, nothing accepted from the network" bash -c \
	"[ '$(val 'ispmon_tcp_connections_total{event="passive_open",scope="loopback"}')' -ge 1 ] &&
	 [ '$(conns passive_open)' = 0 ]"
check "no socket left tracked once the transfers closed" [ "$(val ispmon_tcp_sockets)" -le 2 ]
cw=$(val 'ispmon_tcp_cwnd_segments_count{scope="network"}')
check "cwnd sampled with srtt (${cw:-0} samples)" \
	[ "${cw:-0}" = "$(val 'ispmon_tcp_rtt_seconds_count{estimator="srtt",scope="network"}')" ]
read -r cw_mean cw_n < <(awk -v s="$(val 'ispmon_tcp_cwnd_segments_sum{scope="network"}')" -v s0="$cw_sum0" \
	-v n="$cw" -v n0="$cw_n0" 'BEGIN { printf "%.1f %d\n", (n > n0 ? (s - s0) / (n - n0) : 0), n - n0 }')
read -r ss_mean ss_n < <(ss_cwnd)
check "cwnd: mean of $cw_n samples $cw_mean segments within 10% of ss's ${ss_mean:-none} ($ss_n samples)" \
	awk -v a="$cw_mean" -v b="${ss_mean:-0}" -v n="$cw_n" -v m="${ss_n:-0}" \
		'BEGIN { d = a - b; if (d < 0) d = -d; exit !(n >= 10 && m >= 10 && d <= 0.10 * b) }'

# --- other namespaces are not counted ---------------------------------------
"$NETLAB_TOOLS/httpd" --listen "127.0.0.1:$ROOT_PORT" </dev/null >"$TMP/root-httpd.log" 2>&1 &
ROOT_HTTPD=$!
for _ in $(seq 1 50); do ss -Hltn "sport = :$ROOT_PORT" | grep -q . && break; sleep 0.05; done
scrape
cp "$TMP/m.prom" "$TMP/before.prom"
lo_recv0=$(val 'ispmon_tcp_bytes_received_total{scope="loopback"}')
check "the lan device downloads 2 MB through the router" \
	lan curl -sS --max-time 30 -o /dev/null "http://$SRV_IP4:$HTTP_PORT/bytes/2000000"
check "the root namespace moves 2 MB over its loopback" \
	curl -sS --max-time 30 -o /dev/null "http://127.0.0.1:$ROOT_PORT/bytes/2000000"
kill -TERM "$ROOT_HTTPD"
wait "$ROOT_HTTPD" 2>/dev/null
ROOT_HTTPD=
scrape
for k in ispmon_tcp_bytes_acked_total ispmon_tcp_bytes_received_total; do
	check "$k{scope=network} unchanged by other namespaces' transfers" \
		[ "$(net $k)" = "$(metric_value "$TMP/before.prom" "$k{scope=\"network\"}")" ]
done
check "no network connection opened meanwhile" \
	[ "$(conns active_open)" = "$(metric_value "$TMP/before.prom" 'ispmon_tcp_connections_total{event="active_open",scope="network"}')" ]
lo_d=$(($(val 'ispmon_tcp_bytes_received_total{scope="loopback"}') - lo_recv0))
check "loopback bytes grew by our scrapes only ($lo_d B, not the root namespace's 2 MB)" [ "$lo_d" -lt 1000000 ]

# --- retransmits after a WAN outage during an upload ------------------------
# outage_retrans PREFIX: a 2 MB upload with a 1.5 s WAN outage in it; the
# retransmits counted (both scopes) must equal the namespace's RetransSegs.
outage_retrans() {
	local rt0 lrt0 k0 k1 up got
	scrape
	rt0=$(net ispmon_tcp_retransmits_total) lrt0=$(val 'ispmon_tcp_retransmits_total{scope="loopback"}')
	k0=$(retrans_segs)
	head -c 2000000 "$TMP/payload" >"$TMP/body"
	r curl -sS --max-time 30 --limit-rate 1M -o /dev/null --data-binary @"$TMP/body" \
		"http://$SRV_IP4:$HTTP_PORT/upload" &
	up=$!
	sleep 0.6
	netlab_link down
	sleep 1.5
	netlab_link up
	check "$1the upload survives a 1.5 s WAN outage" wait $up
	scrape
	k1=$(retrans_segs)
	got=$(($(net ispmon_tcp_retransmits_total) - rt0 + $(val 'ispmon_tcp_retransmits_total{scope="loopback"}') - lrt0))
	check "${1}retransmits $got = the namespace's RetransSegs $((k1 - k0)) (> 0)" \
		bash -c "[ $got = $((k1 - k0)) ] && [ $got -gt 0 ]"
}
outage_retrans ""
check "clean exit" stop_ispmon
check "no warning or error logged" bash -c "! grep -Eq 'level=(warn|error)' '$TMP/auto.err'"

# --- raw_tp: a kernel without BTF (hidden; CO-RE from a copy via --btf) ------
cp /sys/kernel/btf/vmlinux "$TMP/vmlinux.btf"
nobtf=(unshare -m sh -c 'mount --bind /dev/null /sys/kernel/btf/vmlinux && exec "$0" "$@"')
if start_ispmon nobtf "${nobtf[@]}" -- --btf "$TMP/vmlinux.btf"; then
	check "without kernel BTF auto picks raw_tp: $(grep -o 'msg="tcp hooks".*' "$TMP/nobtf.err" | cut -c1-200)" \
		grep -q 'msg="tcp hooks" mode=tracepoint attach=raw_tp requested=auto' "$TMP/nobtf.err"
	SENT=0 RECV=0 NCONN=0
	scrape
	sent0=$(net ispmon_tcp_bytes_acked_total) recv0=$(net ispmon_tcp_bytes_received_total)
	check "raw_tp: upload 1 MB" xfer up "$SRV_IP4" 1000000
	check "raw_tp: download 1 MB" xfer down "$SRV_IP4" 1000000
	scrape
	for est in srtt rcv_rtt; do
		got=$(pct $est)
		got_ms=$(awk -v g="${got:-0}" 'BEGIN { printf "%.3f", g * 1000 }')
		check "raw_tp: $est median $got_ms ms within 5% of $truth ms" rel_near "$got_ms" "$truth" 0.05
	done
	check "raw_tp: bytes acked = curl's sent $SENT" near "$(($(net ispmon_tcp_bytes_acked_total) - sent0))" "$SENT" 4
	check "raw_tp: bytes received = curl's received $RECV" near "$(($(net ispmon_tcp_bytes_received_total) - recv0))" "$RECV" 4
	outage_retrans "raw_tp: "
	check "raw_tp: attach info" [ "$(val 'ispmon_bpf_attach_info{program="raw_tcp_probe",mode="raw_tp",iface="",side="router"}')" = 1 ]
	check "raw_tp: clean exit" stop_ispmon
else
	not_ok "ispmon starts without kernel BTF (--btf): $(head -c 300 "$TMP/nobtf.err")"
fi

if promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1; then
	ok "promtool check metrics accepts the TCP metrics"
else
	not_ok "promtool check metrics: $(head -c 300 "$TMP/promtool")"
fi
tap_exit
