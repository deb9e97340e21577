#!/usr/bin/env bash
# libFuzzer on ispmon's userspace parsers (issue 9), each for a bounded
# time (FUZZ_SECONDS, default 20) with ASan and UBSan: the command line
# (config_parse, parse_duration_ms, parse_listen), the route tables
# (netif_default_route/_gateway), the speed test's text helpers, the ping
# module's host check and reply parser, the log and label escapers, the
# DHCP leases file, HTTP request handling (ispmon's web server in the
# fuzzer's process, raw bytes over loopback, in a network namespace of its
# own; with and without basic auth), and the --web-config file. Harnesses: tests/fuzz/*.c; their checks are described there.
#
# Found crashes are kept in tests/artifacts/fuzz/ (fuzz_NAME-crash-...);
# every reproducer kept there from an earlier run is run again first, so a
# fixed bug stays fixed. The corpus grows in tests/artifacts/fuzz/corpus/.
# FUZZERS="config http" picks some; FUZZ_SECONDS=N sets the time each.
# A fuzzer that ran almost nothing proved nothing: each must get through
# a minimum of inputs in its time (min_runs below).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

SECS=${FUZZ_SECONDS:-20}
ALL="config netif speedtest ping text leases http webconfig"
LIST=${FUZZERS:-$ALL}
ART=$PWD/tests/artifacts/fuzz
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$ART/corpus"

targets=()
for f in $LIST; do targets+=("build/fuzz/fuzz_$f"); done
if ! make -s -j2 "${targets[@]}" >"$TMP/make.log" 2>&1; then
	not_ok "build the fuzzers (clang -fsanitize=fuzzer; libclang-rt-14-dev): $(grep -m3 -i error "$TMP/make.log" | tr '\n' ' ' | head -c 400)"
	exit 1
fi

# seed NAME FILE PRINTF_FORMAT [ARGS]: a starting input in NAME's corpus.
seed() {
	local d=$ART/corpus/$1 f=$2
	shift 2
	mkdir -p "$d"
	# shellcheck disable=SC2059  # the format is the seed
	printf -- "$@" >"$d/seed-$f"
}
# dict NAME: the dictionary (libFuzzer format) read from stdin.
dict() { cat >"$TMP/$1.dict"; }

# --- seeds and dictionaries ----------------------------------------------------
seed config a '--iface\000eth0\000--listen\000[::1]:9100\000--interval\000250ms\000--no-ping\000--no-speedtest'
seed config b '-i\000ppp0\000--lan-iface\000br-lan\000--max-devices\000100\000--ping-target\000fe80::1%%eth0\000--ping-interval\000500ms'
seed config c '--speed-url\000http://203.0.113.10:8080/bytes/{bytes}\000--speed-upload-url\000http://203.0.113.10:8080/upload\000--speed-max-bytes\0001.5GiB\000--speed-budget\0000\000--speed-busy-share\0000.25'
seed config d '-n\0001h\000-l\000localhost:8000\000--log-level\000debug\000--leases\000/tmp/dhcp.leases\000-hV'
dict config <<'EOF'
"--iface"
"--lan-iface"
"--max-devices"
"--listen"
"--interval"
"--log-level"
"--btf"
"--ping-target"
"--ping-interval"
"--ping-timeout"
"--no-ping"
"--speed-url"
"--speed-upload-url"
"--speed-interval"
"--no-speedtest"
"--speed-streams"
"--speed-max-time"
"--speed-grace"
"--speed-max-bytes"
"--speed-budget"
"--speed-busy-share"
"--speed-state"
"--speed-first-delay"
"--leases"
"--max-flows"
"--tcp-hooks"
"--web-config"
"--plan-download"
"--plan-upload"
"auto"
"fentry"
"tracepoint"
"kprobe"
"off"
"100M"
"Mbit"
"--help"
"--version"
"-i"
"-l"
"-n"
"ms"
"GiB"
"[::]:"
"{bytes}"
"https://"
"\x00"
"="
EOF
seed netif a 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\nppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n\00000000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n'
seed speedtest a '\000200MiB'
seed speedtest b '\001\100https://User:pw@Speed.Example.COM:8443/__down?bytes={bytes}'
seed speedtest c '\002\060\000\000\000\000\000\000\020\000http://[2001:db8::1]:8080/bytes/{bytes}?again={bytes}'
seed speedtest d '\003\100\031\003\010\031\001\000\031\001\000\031\001\000\031\001\000\031\001\000\031\001\000\031\001\000'
seed ping a '\000fe80::1%%eth0'
seed ping b '\001\000ABCDEFGH\000\000\377\377\022\064\000\001ABCDEFGH'
seed ping c '\002\001\022\064\000\001ABCDEFGH'
seed ping d '\003\000\000\020\000\000\001\000\000\000\000\377\377'
seed text a '\100msg with "quotes", \\backslash\\ and\na newline\t\r'
# A host name is chosen by the device itself: "other" is a name too.
seed leases a '1732560000 02:00:00:00:01:02 192.0.2.2 laptop 01:02:00:00:00:01:02\n1732560000 02:00:00:00:01:03 192.0.2.3 * *\n1732560000 02:00:00:00:01:04 192.0.2.4 phone-1 *\n'
seed leases b '1732560000 02:00:00:00:01:03 192.0.2.3 tv *\n1732560000 02:00:00:00:01:02 192.0.2.2 other *\n'
dict leases <<'EOF'
"other"
" * "
"1732560000 "
"02:00:00:00:01:0"
" 192.0.2."
"\x0a"
EOF
seed http a 'GET /metrics HTTP/1.1\r\nHost: ispmon\r\n\r\n'
seed http b 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello'
seed http c 'GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
seed http d 'HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n'
dict http <<'EOF'
"GET"
"HEAD"
"POST"
"OPTIONS"
"/metrics"
"HTTP/1.1"
"HTTP/1.0"
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Host: "
"Content-Length: "
"Transfer-Encoding: chunked"
"Connection: close"
"Connection: keep-alive"
"Upgrade: websocket"
"Expect: 100-continue"
"Range: bytes=0-"
"%00"
"0\x0d\x0a\x0d\x0a"
EOF
seed http e 'GET /metrics HTTP/1.1\r\nAuthorization: Basic ZnV6ejpwdw==\r\n\r\n\n'
seed http f 'GET / HTTP/1.1\r\nAuthorization: Basic ZnV6ejpwdx==\r\n\r\n\n'
seed webconfig a 'tls_server_config:\n  cert_file: /etc/ispmon/server.crt\n  key_file: "server.key"  # x\nbasic_auth_users:\n  prometheus: $2y$05$lJel4kCNt1vjZd.oSY1VpOW2NkUGurG2wYTs/TMSIGwC/BpLxsKXK\n'
seed webconfig b '---\nbasic_auth_users:\n    '"'"'a b'"'"': '"'"'$2b$04$xFXVedLF1ILBvN/IXVaFb.dCJFMDStCna5OTu1qBD6uYkoKgxsb0K'"'"'\r\n'
dict webconfig <<'EOF2'
"tls_server_config:"
"basic_auth_users:"
"cert_file: "
"key_file: "
"$2y$10$"
"$2b$04$"
"  "
"\x0a"
"#"
"'"
"\""
": "
EOF2
cat >>"$TMP/http.dict" <<'EOF2'
"Authorization: Basic "
"ZnV6ejpwdw=="
EOF2

# run NAME ARGS...: the fuzzer, in a network namespace of its own for http.
run() {
	local name=$1
	shift
	if [ "$name" = http ]; then
		unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$PWD/build/fuzz/fuzz_$name" "$@"
	else
		"$PWD/build/fuzz/fuzz_$name" "$@"
	fi
}
maxlen() { case $1 in config | http | leases) echo 2048 ;; *) echo 1024 ;; esac; }
# Most parsers run millions of inputs in 20 s; the leases harness writes a
# file per input (about a thousand a second), HTTP over loopback waits 20 ms
# on every request the server leaves unanswered (tens a second).
min_runs() { case $1 in http) echo 100 ;; leases) echo 1000 ;; *) echo 10000 ;; esac; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for name in $LIST; do
	case " $ALL " in *" $name "*) ;; *) not_ok "unknown fuzzer '$name' (have: $ALL)"; continue ;; esac
	log=$ART/fuzz_$name.log
	# Reproducers from earlier runs first: each must pass now.
	old=()
	for f in "$ART"/fuzz_"$name"-{crash,leak,timeout,oom}-*; do [ -f "$f" ] && old+=("$f"); done
	if [ "${#old[@]}" -gt 0 ]; then
		if run "$name" -runs=1 "${old[@]}" >"$log.replay" 2>&1; then
			ok "fuzz_$name: ${#old[@]} earlier reproducer(s) pass now"
		else
			not_ok "fuzz_$name: an earlier reproducer still fails: $(grep -v 'Running\|INFO' "$log.replay" | grep -m1 -E 'ERROR|fuzz_[a-z]+: |runtime error' | head -c 300) (see $log.replay)"
		fi
	fi
	mkdir -p "$ART/corpus/$name"
	touch "$TMP/start"
	dictarg=()
	[ -f "$TMP/$name.dict" ] && dictarg=(-dict="$TMP/$name.dict")
	t0=$SECONDS
	run "$name" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len="$(maxlen "$name")" \
		-print_final_stats=1 -artifact_prefix="$ART/fuzz_$name-" "${dictarg[@]}" \
		"$ART/corpus/$name" >"$log" 2>&1 </dev/null &
	pid=$!
	# Bounded: libFuzzer stops itself; this is for a hang outside inputs.
	for ((i = 0; i < (SECS + 60) * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; echo "killed after $((SECONDS - t0)) s" >>"$log"; }
	rc=0
	wait "$pid" || rc=$?
	new=$(find "$ART" -maxdepth 1 -name "fuzz_$name-*" -newer "$TMP/start" ! -name '*.log*' | head -n 3)
	runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	corp=$(find "$ART/corpus/$name" -type f | wc -l)
	if [ "$rc" -eq 0 ] && [ -z "$new" ] && [ "${runs:-0}" -ge "$(min_runs "$name")" ]; then
		ok "fuzz_$name: ${runs:-?} inputs in $((SECONDS - t0)) s (coverage ${cov:-?}, corpus $corp), nothing found"
	elif [ "$rc" -eq 0 ] && [ -z "$new" ]; then
		not_ok "fuzz_$name: only ${runs:-no} inputs in $((SECONDS - t0)) s (want at least $(min_runs "$name"); log $log)"
	else
		what=$(grep -v 'Running\|INFO' "$log" | grep -m1 -E 'fuzz_[a-z]+: |ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' | head -c 300)
		not_ok "fuzz_$name: exit $rc after $((SECONDS - t0)) s: ${what:-see log}; reproducer: ${new:-none} (log $log)"
	fi
done
tap_exit
