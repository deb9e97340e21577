#!/usr/bin/env bash
# ispmon end to end under the sanitizers and under valgrind (issue 9).
#
# asan: build/asan/ispmon (the same sources with ASan + UBSan) runs in the
#   emulated home network's router with every module on: WAN and LAN hooks,
#   pings to testbed targets, a speed test against the testbed server, a
#   leases file, the web endpoint behind TLS and basic auth; traffic both
#   ways, DNS, pings, the LAN link down and up, many scrapes (and bad
#   requests, and wrong passwords), then SIGTERM. Any sanitizer report
#   (ASAN_OPTIONS=detect_leaks=1:halt_on_error=1) fails the test.
# reattach: tests/test_reattach.sh with build/asan/ispmon: the WAN and a LAN
#   interface deleted and recreated, with capabilities dropped; its checks
#   and no sanitizer report.
# valgrind: the normal ./ispmon, the same scenario, shorter, under memcheck
#   (--leak-check=full --errors-for-leak-kinds=definite): any memory error
#   or definite leak fails; reachable blocks (libbpf, libcurl, libc) do not.
#
# SANITIZE_PARTS="asan reattach valgrind" picks parts. Logs in tests/artifacts/sanitize/.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
NETLAB_PREFIX=ispmsz$$
. tests/lib/netlab.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }

PARTS=${SANITIZE_PARTS:-asan reattach valgrind}
PORT=18000
URL=http://127.0.0.1:$PORT
# How the scrapes reach ispmon: plain http, or https with the password
# once the asan part turns the web config on.
CURLW=()
ART=tests/artifacts/sanitize
TMP=$(mktemp -d)
PID=

mkdir -p "$ART"
cleanup() {
	[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
	netlab_down
	rm -rf "$TMP"
}
netlab_install_trap
trap cleanup EXIT

targets=(all build/asan/ispmon)
[[ $PARTS == *valgrind* ]] && ! command -v valgrind >/dev/null &&
	{ not_ok "valgrind is not installed (scripts/deps.sh)"; PARTS=${PARTS//valgrind/}; }
if ! make -s "${targets[@]}" >"$TMP/make.log" 2>&1; then
	not_ok "build ispmon and build/asan/ispmon: $(grep -m3 -i error "$TMP/make.log" | tr '\n' ' ' | head -c 400)"
	exit 1
fi
netlab_build_tools || { not_ok "netlab tools"; exit 1; }
# Shaped, so that a speed test runs past its 1 s grace period.
netlab_up 5 5 && netlab_start_servers && netlab_shape down 40 && netlab_shape up 40 ||
	{ not_ok "netlab_up"; exit 1; }

r() { ip netns exec "$NS_ROUTER" "$@"; }
lan() { ip netns exec "$NS_LAN" "$@"; }

# The LAN device has a name; another one claims one too.
cat >"$TMP/leases" <<EOF
1893456000 $LAN_MAC $LAN_IP4 laptop 01:$LAN_MAC
1893456000 02:00:00:00:01:09 192.0.2.9 phone *
EOF
ARGS=(--iface "$ROUTER_WAN_IF" --lan-iface "$ROUTER_LAN_IF" --listen "127.0.0.1:$PORT"
	--ping-target "$SRV_IP4" --ping-target "$SRV_IP6" --ping-target "$WAN_GW_IP4"
	--speed-url "http://$SRV_IP4:$HTTP_PORT/bytes/{bytes}"
	--speed-upload-url "http://$SRV_IP4:$HTTP_PORT/upload"
	--speed-interval 1m --speed-first-delay 1s --speed-max-time 3s --speed-max-bytes 50M --speed-busy-share 1
	--speed-state "$TMP/speed.state")
"$PWD/ispmon" --help 2>/dev/null | grep -q -- '--leases' && ARGS+=(--leases "$TMP/leases")

# wait_up LOG SECONDS: until /metrics answers 200 (BPF loading under a
# sanitizer or valgrind is slow), or ispmon is gone.
wait_up() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		r curl "${CURLW[@]}" -sf -o /dev/null --max-time 2 "$URL/metrics" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.2
	done
	not_ok "ispmon serves /metrics within $2 s: $(tail -c 600 "$1")"
	return 1
}

# scenario NAME SCALE: traffic of every kind, scrapes, a LAN link flap,
# then the speed test's first run; SCALE 1 full, 0 short (valgrind).
scenario() {
	local name=$1 full=$2 i code bad=0 mb=5
	[ "$full" = 1 ] || mb=1
	lan curl -sS --max-time 60 -o /dev/null "http://$SRV_IP4:$HTTP_PORT/bytes/$((mb * 1000000))" || bad=1
	head -c $((mb * 400000)) /dev/zero >"$TMP/up.bin"
	lan curl -sS --max-time 60 -o /dev/null --data-binary @"$TMP/up.bin" \
		-H 'Content-Type: application/octet-stream' "http://$SRV_IP4:$HTTP_PORT/upload" || bad=1
	lan curl -sS --max-time 60 -o /dev/null "http://[$SRV_IP6]:$HTTP_PORT/bytes/$((mb * 300000))" || bad=1
	netlab_dns_median lan "$SRV_IP4" 20 >/dev/null || bad=1
	lan ping -n -q -c 10 -i 0.05 "$SRV_IP4" >/dev/null || bad=1
	lan ping -n -q -c 10 -i 0.05 "$SRV_IP6" >/dev/null || bad=1
	check "$name: traffic through the router (downloads, upload, DNS, pings)" [ $bad = 0 ]
	bad=0
	for ((i = 0; i < (full ? 30 : 8); i++)); do
		code=$(r curl "${CURLW[@]}" -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/metrics")
		[ "$code" = 200 ] || bad=$((bad + 1))
	done
	for req in "/ 200" "/nope 404" "/metrics?x=%00 200"; do
		code=$(r curl "${CURLW[@]}" -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL${req% *}")
		[ "$code" = "${req#* }" ] || bad=$((bad + 1))
	done
	code=$(r curl "${CURLW[@]}" -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -d x "$URL/metrics")
	[ "$code" = 405 ] || bad=$((bad + 1))
	code=$(r curl "${CURLW[@]}" -s -o /dev/null -w '%{http_code}' --max-time 10 -I "$URL/metrics")
	[ "$code" = 200 ] || bad=$((bad + 1))
	if [ ${#CURLW[@]} -gt 0 ]; then
		# The same scrape with a wrong password and with none: 401.
		for i in 1 2 3; do
			code=$(r curl "${CURLW[@]}" -u prom:wrong -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/metrics")
			[ "$code" = 401 ] || bad=$((bad + 1))
			code=$(r curl --cacert "$TMP/server.crt" -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/metrics")
			[ "$code" = 401 ] || bad=$((bad + 1))
		done
	fi
	check "$name: scrapes and odd requests answered as they should ($bad wrong)" [ $bad = 0 ]
	# The LAN interface goes away for a moment (the re-attach path); its
	# IPv6 address stays (by default the kernel drops it on link down).
	r sysctl -q -w "net.ipv6.conf.$ROUTER_LAN_IF.keep_addr_on_down=1"
	r ip link set "$ROUTER_LAN_IF" down
	sleep 0.7
	r ip link set "$ROUTER_LAN_IF" up
	sleep 0.7
	# The first speed test: 1 s after start plus up to 6 s of jitter.
	for ((i = 0; i < 150; i++)); do
		r curl "${CURLW[@]}" -sf --max-time 10 "$URL/metrics" >"$TMP/$name.prom" 2>/dev/null &&
			[ "$(runs "$TMP/$name.prom")" -ge 2 ] && break
		sleep 0.2
	done
	check "$name: a speed test ran against the testbed server ($(awk -F'[{},="]+' '/^ispmon_speedtest_runs_total/ && $NF > 0 { printf "%s %s; ", $3, $5 }' "$TMP/$name.prom"))" \
		[ "$(runs "$TMP/$name.prom")" -ge 2 ]
	check "$name: per-device and ping figures on the page" \
		bash -c "grep -q '^ispmon_device_bytes_total{device=' '$TMP/$name.prom' && grep -q '^ispmon_ping_received_total{target=\"$SRV_IP4\"} [1-9]' '$TMP/$name.prom'"
	cp "$TMP/$name.prom" "$ART/$name.prom"
}

# runs FILE: speed-test runs (any result) on a page.
runs() { awk '/^ispmon_speedtest_runs_total/ { s += $2 } END { print s + 0 }' "$1"; }

# stop: SIGTERM, bounded wait; the exit status in STOP_RC.
stop() {
	local i rc=0
	kill -TERM "$PID" 2>/dev/null
	for ((i = 0; i < 600; i++)); do
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$PID" 2>/dev/null; then
		kill -KILL "$PID"
		rc=137
	fi
	wait "$PID" || rc=$?
	PID=
	STOP_RC=$rc
}

part_asan() {
	local log=$ART/asan-ispmon.log rc reports web=()
	rm -rf "$TMP/san" "$ART"/asan-report.*
	mkdir -p "$TMP/san"
	# TLS and basic auth (password "secret", bcrypt cost 5): the web
	# config's parser, GnuTLS and the password cache under the sanitizers.
	if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$TMP/server.key" -out "$TMP/server.crt" -days 2 -subj "/CN=ispmon test" \
		-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1; then
		cat >"$TMP/web.yml" <<-EOF
			tls_server_config:
			  cert_file: $TMP/server.crt
			  key_file: $TMP/server.key
			basic_auth_users:
			  prom: '\$2y\$05\$lJel4kCNt1vjZd.oSY1VpOW2NkUGurG2wYTs/TMSIGwC/BpLxsKXK'
		EOF
		web=(--web-config "$TMP/web.yml")
		URL=https://127.0.0.1:$PORT
		CURLW=(--cacert "$TMP/server.crt" -u prom:secret)
	else
		not_ok "asan: openssl makes a test certificate (scripts/deps.sh)"
	fi
	# Reports go to their own files (and the log), leaks checked at exit.
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:log_path=$TMP/san/asan:detect_stack_use_after_return=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$TMP/san/ubsan \
		ip netns exec "$NS_ROUTER" "$PWD/build/asan/ispmon" "${ARGS[@]}" "${web[@]}" --interval 200ms \
		>/dev/null 2>"$log" &
	PID=$!
	wait_up "$log" 60 || return 1
	ok "asan: build/asan/ispmon up with WAN + LAN hooks, pings, speed test$([[ " ${ARGS[*]} " == *" --leases "* ]] && echo ', leases')${web:+, TLS and basic auth}"
	scenario asan 1
	stop
	URL=http://127.0.0.1:$PORT
	CURLW=()
	rc=$STOP_RC
	reports=$(cat "$TMP"/san/* 2>/dev/null)
	if [ -n "$reports" ]; then
		printf '%s\n' "$reports" >"$ART/asan-report.txt"
		printf '%s\n' "$reports" | grep -E 'ERROR|SUMMARY|runtime error|#[0-9] ' | head -n 25 | sed 's/^/# /'
	fi
	check "asan: no AddressSanitizer, LeakSanitizer or UBSan report (see $ART/asan-report.txt)" \
		[ -z "$reports" ]
	check "asan: exits 0 on SIGTERM ($rc)" [ "$rc" = 0 ]
	check "asan: no error logged" bash -c "! grep -q 'level=error' '$log'"
}

part_valgrind() {
	local log=$ART/valgrind-ispmon.log vg=$ART/valgrind.log rc defl errs
	# Only definite leaks and errors count. Suppressed: valgrind's model
	# of the bpf() syscall, which checks the whole union bpf_attr while
	# libbpf passes (and zeroes) only the part a command uses, and a NULL
	# key for the first bpf_map_get_next_key (valid: "from the start").
	cat >"$TMP/vg.supp" <<-'EOF'
		{
		   bpf-attr-beyond-size
		   Memcheck:Param
		   bpf(attr->flags)
		   fun:syscall
		   obj:*libbpf.so*
		}
		{
		   bpf-attr-beyond-size-prog
		   Memcheck:Param
		   bpf(attr->prog_ifindex)
		   fun:syscall
		   obj:*libbpf.so*
		}
		{
		   bpf-attr-beyond-size-attach
		   Memcheck:Param
		   bpf(attr->expected_attach_type)
		   fun:syscall
		   obj:*libbpf.so*
		}
		{
		   bpf-first-key-null
		   Memcheck:Param
		   bpf(attr->key)
		   fun:syscall
		   fun:bpf_map_get_next_key
		}
	EOF
	ip netns exec "$NS_ROUTER" valgrind --tool=memcheck --leak-check=full \
		--show-leak-kinds=definite --errors-for-leak-kinds=definite --error-exitcode=99 \
		--num-callers=30 --suppressions="$TMP/vg.supp" -s --log-file="$vg" \
		"$PWD/ispmon" "${ARGS[@]}" --interval 500ms >/dev/null 2>"$log" &
	PID=$!
	wait_up "$log" 120 || return 1
	ok "valgrind: ispmon up under memcheck"
	scenario valgrind 0
	stop
	rc=$STOP_RC
	errs=$(awk '/ERROR SUMMARY:/ { v = $4 } END { print v }' "$vg")
	defl=$(awk '/definitely lost:/ { gsub(",", "", $4); v = $4 } END { print v + 0 }' "$vg")
	if [ "${errs:-x}" != 0 ]; then
		grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|Source and|[0-9,]+ bytes in [0-9,]+ blocks are definitely)' "$vg" |
			head -n 10 | sed 's/^/# /'
	fi
	check "valgrind: no memory error, no definite leak ($errs errors, $defl bytes definitely lost, $(grep -c 'used_suppression' "$vg" || true) suppression kinds used; $vg)" \
		[ "${errs:-x}" = 0 ]
	check "valgrind: exits 0 on SIGTERM ($rc; 99 = valgrind found something)" [ "$rc" = 0 ]
	check "valgrind: no error logged" bash -c "! grep -q 'level=error' '$log'"
}

part_reattach() {
	local rc=0 reports
	rm -rf "$TMP/san2"
	mkdir -p "$TMP/san2"
	ISPMON_BIN=$PWD/build/asan/ispmon \
		ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:log_path=$TMP/san2/asan \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$TMP/san2/ubsan \
		bash tests/test_reattach.sh >"$TMP/reattach.out" 2>&1 || rc=$?
	cp "$TMP/reattach.out" "$ART/asan-reattach.log"
	sed -n 's/^\(not \)\{0,1\}ok - /&reattach (asan): /p' "$TMP/reattach.out"
	reports=$(cat "$TMP"/san2/* 2>/dev/null)
	if [ -n "$reports" ]; then
		printf '%s\n' "$reports" >"$ART/asan-reattach-report.txt"
		printf '%s\n' "$reports" | grep -E 'ERROR|SUMMARY|runtime error|#[0-9] ' | head -n 25 | sed 's/^/# /'
	fi
	check "reattach (asan): no AddressSanitizer, LeakSanitizer or UBSan report" [ -z "$reports" ]
	check "reattach (asan): the suite exits 0 ($rc; $ART/asan-reattach.log)" [ "$rc" = 0 ]
}

for p in $PARTS; do
	case $p in
	asan) part_asan ;;
	reattach) part_reattach ;;
	valgrind) part_valgrind ;;
	*) not_ok "unknown part '$p' (asan, reattach, valgrind)" ;;
	esac
	[ -n "$PID" ] && stop
done
tap_exit
