# e2e.sh - the frame every end-to-end suite shares: TAP lines, the emulated
# home network (netlab.sh) and ispmon in its router namespace. Source it at
# the repository root; without root it ends the script as skipped (77).
#
#   . tests/lib/e2e.sh
#   e2e_cleanup() { kill "$MY_PID"; }   # optional: more to undo on exit
#   netlab_build_tools || exit 1
#   netlab_up 20 20 || exit 1
#   ispmon_run "$TMP/ispmon.err" --interval 200ms --no-ping --no-speedtest
#   scrape; val 'ispmon_passive_bytes_total{direction="download"}'
#
# Defines BIN (./ispmon), TMP (a scratch directory, removed on exit),
# ISPMON_PID, r/lan (run in the router / lan namespace), ispmon_run,
# ispmon_wait, ispmon_stop, scrape and val. On exit (also on failure or a
# signal): ispmon stopped, e2e_cleanup if defined, namespaces torn down.

set -uo pipefail
. tests/lib/tap.sh
. tests/lib/netlab.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }

BIN=$PWD/ispmon
TMP=$(mktemp -d)
ISPMON_PID=

e2e__exit() {
	ispmon_stop
	declare -F e2e_cleanup >/dev/null && e2e_cleanup
	netlab_down
	rm -rf "$TMP"
}
netlab_install_trap
trap e2e__exit EXIT

r() { ip netns exec "$NS_ROUTER" "$@"; }
lan() { ip netns exec "$NS_LAN" "$@"; }

# ispmon_wait: until /metrics answers in the router. Loading and verifying
# the programs takes a second or two, several on a loaded machine: up to
# 30 s, but no longer than ispmon lives.
ispmon_wait() {
	local i
	for ((i = 0; i < 300; i++)); do
		r curl -sf -o /dev/null --max-time 1 http://127.0.0.1:8000/metrics && return 0
		[ -n "$ISPMON_PID" ] && ! kill -0 "$ISPMON_PID" 2>/dev/null && return 1
		sleep 0.1
	done
	return 1
}

# ispmon_stop: stop the running ispmon (SIGTERM) and wait for it.
ispmon_stop() {
	[ -n "$ISPMON_PID" ] || return 0
	kill -TERM "$ISPMON_PID" 2>/dev/null
	wait "$ISPMON_PID" 2>/dev/null
	ISPMON_PID=
}

# ispmon_run LOG [CMD_PREFIX... --] ARGS...: (re)start ispmon in the router
# with ARGS, its stderr appended to LOG, and wait for /metrics. A prefix
# (env, unshare, ...) ends with "--"; without one, every word is an ARG.
ispmon_run() {
	local log=$1 pre=() a
	shift
	for a in "$@"; do
		if [ "$a" = -- ]; then
			while [ "$1" != -- ]; do pre+=("$1"); shift; done
			shift
			break
		fi
	done
	ispmon_stop
	ip netns exec "$NS_ROUTER" "${pre[@]}" "$BIN" "$@" >/dev/null 2>>"$log" &
	ISPMON_PID=$!
	ispmon_wait
}

# scrape [FILE]: the current /metrics page into FILE ($TMP/m.prom).
scrape() { r curl -sf --max-time 2 -o "${1:-$TMP/m.prom}" http://127.0.0.1:8000/metrics; }

# val 'name{labels}' [FILE]: a sample's value from the last scrape, or "".
val() { metric_value "${2:-$TMP/m.prom}" "$1"; }
