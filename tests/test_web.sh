#!/usr/bin/env bash
# The web endpoint's security (issue 9): --web-config with TLS and basic
# auth, the per-address connection limit, and bad web configs.
#
# ispmon watches lo in a namespace of its own. A self-signed certificate
# for 127.0.0.1 is made here with openssl; the user's bcrypt hash is a
# fixed input (password "secret", cost 5).
#   - TLS + auth: https with --cacert and the right password gets /metrics
#     (with real counts); a wrong password, an unknown user or none gets 401
#     with WWW-Authenticate, on every route; plain http gets no answer; the
#     certificate is the one configured
#   - TLS only, auth only (over http): each works alone
#   - one address opening 80 idle connections keeps at most 64, and a
#     scrape from another address is served meanwhile
#   - --listen binds where it is told: an IPv4 address, an IPv6 address or
#     the default (all, both families) answers there and nowhere else
#   - bad web configs (missing file, syntax, bad hash, missing or garbage
#     certificate, key of another certificate): exit 1, one error line
#     naming the problem, nothing attached to the interface
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
command -v openssl >/dev/null || { echo "skip: needs openssl (scripts/deps.sh)"; exit 77; }

BIN=$PWD/ispmon
NS=ispmweb$$
PORT=18310
TMP=$(mktemp -d)
PID=
HASH='$2y$05$lJel4kCNt1vjZd.oSY1VpOW2NkUGurG2wYTs/TMSIGwC/BpLxsKXK' # "secret"

cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

n() { ip netns exec "$NS" "$@"; }
ip netns add "$NS" || exit 1
n ip link set lo up

make -s build/tests/httpload >"$TMP/make.log" 2>&1 ||
	{ not_ok "build httpload: $(head -c 300 "$TMP/make.log")"; exit 1; }
[ -x "$BIN" ] || { not_ok "no ispmon binary at $BIN (make first)"; exit 1; }

cert() { # cert NAME: NAME.crt and NAME.key, EC P-256, for 127.0.0.1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$TMP/$1.key" -out "$TMP/$1.crt" -days 2 -subj "/CN=ispmon test" \
		-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
}
cert server && cert other || { not_ok "openssl makes test certificates"; exit 1; }

# launch WHAT ARGS...: ispmon on lo with ARGS, until it has set up (30 s
# at most: verification is slow on a loaded machine) or died.
launch() {
	local what=$1
	shift
	ip netns exec "$NS" "$BIN" --iface lo --interval 200ms --no-ping --no-speedtest "$@" \
		>/dev/null 2>"$TMP/err" &
	PID=$!
	for _ in $(seq 1 300); do
		grep -q 'msg="capabilities dropped"' "$TMP/err" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	not_ok "ispmon started with $what: $(head -c 300 "$TMP/err")"
	return 1
}
# start CONFIG_TEXT: ispmon with that web config (relative paths: to it).
start() {
	printf '%s' "$1" >"$TMP/web.yml"
	launch "the web config" --listen 127.0.0.1:$PORT --web-config "$TMP/web.yml"
}
stop() {
	kill -TERM "$PID"
	wait "$PID"
	local rc=$?
	PID=
	return $rc
}
# code ARGS...: the HTTP status curl got (000: no HTTP answer).
code() { n curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
U=https://127.0.0.1:$PORT

# --- TLS and basic auth ----------------------------------------------------
start "tls_server_config:
  cert_file: server.crt
  key_file: $TMP/server.key
basic_auth_users:
  prom: '$HASH'
" || exit 1
check "logged the web config: TLS on, 1 user" grep -q 'msg="web config" .* tls=on basic_auth_users=1' "$TMP/err"
n ping -q -c 5 -i 0.05 127.0.0.1 >/dev/null
sleep 0.4
body=$(n curl -sf --max-time 5 --cacert "$TMP/server.crt" -u prom:secret "$U/metrics")
pk=$(awk '$1 == "ispmon_passive_packets_total{direction=\"download\"}" { print $2 }' <<<"$body")
check "https + right password: /metrics with real counts (${pk:-none} packets after 5 pings)" \
	[ "${pk:-0}" -ge 10 ]
c=$(code --cacert "$TMP/server.crt" -u prom:wrong "$U/metrics")
check "wrong password: 401 ($c)" [ "$c" = 401 ]
c=$(code --cacert "$TMP/server.crt" -u nobody:secret "$U/metrics")
check "unknown user: 401 ($c)" [ "$c" = 401 ]
c=$(code --cacert "$TMP/server.crt" "$U/metrics")
check "no credentials: 401 ($c)" [ "$c" = 401 ]
check "401 carries WWW-Authenticate: Basic realm=\"ispmon\"" \
	bash -c "ip netns exec $NS curl -s -D - -o /dev/null --cacert $TMP/server.crt $U/metrics | grep -qi '^WWW-Authenticate: Basic realm=\"ispmon\"'"
c1=$(code --cacert "$TMP/server.crt" "$U/")
c2=$(code --cacert "$TMP/server.crt" "$U/nothing-here")
c3=$(code --cacert "$TMP/server.crt" -u prom:secret "$U/nothing-here")
check "every route needs the password: / $c1, unknown path $c2 without, $c3 with" \
	[ "$c1" = 401 -a "$c2" = 401 -a "$c3" = 404 ]
ok_n=0
for _ in $(seq 1 20); do
	[ "$(code --cacert "$TMP/server.crt" -u prom:secret "$U/metrics")" = 200 ] && ok_n=$((ok_n + 1))
done
check "20 scrapes in a row with the password all answered 200 ($ok_n)" [ "$ok_n" = 20 ]
c=$(code "http://127.0.0.1:$PORT/metrics")
check "plain http refused while TLS is on (status $c: no HTTP answer)" [ "$c" = 000 ]
c=$(code -u prom:secret "$U/metrics")
check "the server's certificate is the configured one: not trusted without --cacert ($c)" [ "$c" = 000 ]
c=$(code --cacert "$TMP/other.crt" -u prom:secret "$U/metrics")
check "  ... nor with another certificate as CA ($c)" [ "$c" = 000 ]

# --- one address cannot take every connection slot --------------------------
n "$PWD/build/tests/httpload" idle --addr 127.0.0.1:$PORT --conns 80 --duration 3 \
	--src-spread 1 --src-base 50 >"$TMP/idle.out" 2>&1 &
IDLE=$!
sleep 1.5
c=$(code --cacert "$TMP/server.crt" -u prom:secret "$U/metrics")
wait "$IDLE"
held=$(tr ' ' '\n' <"$TMP/idle.out" | awk -F= '$1 == "idle_open_at_end" { print $2 }')
shut=$(tr ' ' '\n' <"$TMP/idle.out" | awk -F= '$1 == "idle_closed_by_server" { print $2 }')
check "80 idle connections from 127.0.0.50: ${held:-?} kept, ${shut:-?} closed by the server (at most 64 kept)" \
	[ "${held:-99}" -le 64 -a "${held:-0}" -ge 1 -a "${shut:-0}" -ge 16 ]
check "  ... while a scrape from 127.0.0.1 is served ($c)" [ "$c" = 200 ]
stop
rc=$?; check "exits 0 on SIGTERM ($rc)" [ $rc = 0 ]
check "no error logged" bash -c "! grep -q 'level=error' $TMP/err"

# --- each alone ----------------------------------------------------------------
start "tls_server_config:
  cert_file: $TMP/server.crt
  key_file: $TMP/server.key
" || exit 1
c=$(code --cacert "$TMP/server.crt" "$U/metrics")
check "TLS only: https without credentials gets 200 ($c)" [ "$c" = 200 ]
stop
start "basic_auth_users:
  prom: $HASH
" || exit 1
c1=$(code -u prom:secret "http://127.0.0.1:$PORT/metrics")
c2=$(code "http://127.0.0.1:$PORT/metrics")
check "auth only, plain http: 200 with the password ($c1), 401 without ($c2)" \
	[ "$c1" = 200 -a "$c2" = 401 ]
stop

# --- the bind address --------------------------------------------------------------
# Two more addresses on the namespace's lo: one answers, the others must not.
n ip addr add 192.0.2.7/32 dev lo
n ip addr add 2001:db8::7/128 dev lo nodad
# listen_on ADDR:PORT: ispmon serving plain http there.
listen_on() { launch "--listen $1" --listen "$1"; }
# at URL...: the status each URL got, space-separated (000: nothing answered).
at() { local u; for u in "$@"; do printf '%s ' "$(code -g "$u")"; done; }
V4=http://192.0.2.7:$PORT/metrics L4=http://127.0.0.1:$PORT/metrics V6=http://[2001:db8::7]:$PORT/metrics
if listen_on "192.0.2.7:$PORT"; then
	got=$(at "$V4" "$L4" "$V6")
	check "--listen 192.0.2.7:$PORT: 192.0.2.7 / 127.0.0.1 / [2001:db8::7] answer $got(200 000 000)" \
		[ "$got" = "200 000 000 " ]
	stop
fi
if listen_on "[2001:db8::7]:$PORT"; then
	got=$(at "$V4" "$L4" "$V6")
	check "--listen [2001:db8::7]:$PORT: 192.0.2.7 / 127.0.0.1 / [2001:db8::7] answer $got(000 000 200)" \
		[ "$got" = "000 000 200 " ]
	stop
fi
if listen_on ":$PORT"; then
	got=$(at "$V4" "$L4" "$V6")
	check "--listen :$PORT (the default's form): every address answers $got(200 200 200)" \
		[ "$got" = "200 200 200 " ]
	stop
fi

# --- bad web configs -------------------------------------------------------------
head -c 600 /dev/urandom | base64 >"$TMP/garbage.crt"
# bad NAME WANT CONFIG_TEXT: exit 1, one level=error line containing WANT,
# nothing attached to lo.
bad() {
	local rc=0 lines
	if [ "$3" = "-" ]; then
		rm -f "$TMP/web.yml"
	else
		printf '%s' "$3" >"$TMP/web.yml"
	fi
	n timeout 20 "$BIN" --iface lo --listen 127.0.0.1:$PORT --no-ping --no-speedtest \
		--web-config "$TMP/web.yml" >/dev/null 2>"$TMP/bad.err" || rc=$?
	lines=$(wc -l <"$TMP/bad.err")
	check "bad web config, $1: exit 1 ($rc), one error line with '$2' ($(head -c 200 "$TMP/bad.err"))" \
		bash -c "[ $rc = 1 ] && [ $lines = 1 ] && grep -q 'level=error' $TMP/bad.err && grep -qF -- \"$2\" $TMP/bad.err"
	check "  ... nothing attached to lo" \
		bash -c "! ip netns exec $NS tc qdisc show dev lo | grep -q clsact"
}
bad "missing file" "cannot read the web config" -
bad "syntax" "web config line 2: tab in indentation" "$(printf 'basic_auth_users:\n\tprom: x\n')"
bad "unknown key" "unsupported tls_server_config key 'client_ca_file'" "tls_server_config:
  client_ca_file: ca.crt
"
bad "not a bcrypt hash" "user 'prom': not a bcrypt hash" "basic_auth_users:
  prom: secret
"
bad "missing certificate" "cannot read cert_file '$TMP/none.crt'" "tls_server_config:
  cert_file: none.crt
  key_file: server.key
"
bad "garbage certificate" "certificate '$TMP/garbage.crt' with key" "tls_server_config:
  cert_file: garbage.crt
  key_file: server.key
"
bad "key of another certificate" "certificate '$TMP/server.crt' with key '$TMP/other.key'" "tls_server_config:
  cert_file: server.crt
  key_file: other.key
"
tap_exit
