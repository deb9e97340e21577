# netlab.sh - the emulated home network every ispmon test runs on. Source it
# from bash (as root); it changes nothing until netlab_up is called.
#
#   ns lan           ns router                 ns wanem                 ns wan
#   [eth0]--veth--[lan0  NAT  wan0]--veth--[r0  delayline  w0]--veth--[eth0, lo]
#
#   lan    device   192.0.2.2/24      2001:db8:1::2/64
#   router lan0     192.0.2.1/24      2001:db8:1::1/64   (forwards v4 and v6)
#          wan0     198.51.100.2/24   2001:db8:2::2/64   (IPv4 masquerade)
#   wanem  r0, w0   no addresses, IPv6 disabled: the kernel there emits nothing
#   wan    eth0     198.51.100.1/24   2001:db8:2::1/64
#          lo       203.0.113.10/32   2001:db8:3::10/128 (the servers; this
#                   kernel has no dummy driver)
#
# IPv6 is routed without NAT, as ISPs delegate prefixes: wan has a route back
# to 2001:db8:1::/64, so at the router's WAN hook IPv6 flows carry the lan
# device's own address while IPv4 flows carry ROUTER_WAN_IP4.
#
# Directions: "down" is wan -> router, "up" is router -> wan. The delay line
# forwards r0 -> w0 (up, its "ab") and w0 -> r0 (down, its "ba"); shaping a
# direction puts HTB on that direction's egress veth in wanem (r0 for down).
# Offloads are off on every veth: a userspace forwarder re-injects frames
# whose partial TX checksums would otherwise be dropped by the receiver.
#
# Typical use:
#   source tests/lib/netlab.sh
#   netlab_install_trap                  # netlab_down on EXIT/INT/TERM/HUP
#   netlab_up 10 10 || exit 1            # 10 ms down + 10 ms up one-way delay
#   netlab_start_servers || exit 1
#   ip netns exec "$NS_LAN" curl -s "http://$SRV_IP4:$HTTP_PORT/bytes/1000"
#
# Every wait here is bounded; every function returns non-zero with one
# "netlab: ..." line on stderr when it fails.

# shellcheck disable=SC2015  # "A && B || { err; return; }" is meant: any failure errs

# Set NETLAB_PREFIX before sourcing to choose the namespace names.
NETLAB_PREFIX=${NETLAB_PREFIX:-ispm$$}
NS_LAN=$NETLAB_PREFIX-lan
NS_ROUTER=$NETLAB_PREFIX-router
NS_WANEM=$NETLAB_PREFIX-wanem
NS_WAN=$NETLAB_PREFIX-wan

LAN_IF=eth0
ROUTER_LAN_IF=lan0
ROUTER_WAN_IF=wan0
WANEM_ROUTER_IF=r0
WANEM_WAN_IF=w0
WAN_IF=eth0
SRV_IF=lo

LAN_IP4=192.0.2.2
LAN_IP6=2001:db8:1::2
ROUTER_LAN_IP4=192.0.2.1
ROUTER_LAN_IP6=2001:db8:1::1
ROUTER_WAN_IP4=198.51.100.2
ROUTER_WAN_IP6=2001:db8:2::2
WAN_GW_IP4=198.51.100.1
WAN_GW_IP6=2001:db8:2::1
SRV_IP4=203.0.113.10
SRV_IP6=2001:db8:3::10

# Fixed MACs make per-device attribution by MAC testable.
LAN_MAC=02:00:00:00:01:02
ROUTER_LAN_MAC=02:00:00:00:01:01
ROUTER_WAN_MAC=02:00:00:00:02:02
WAN_MAC=02:00:00:00:02:01

HTTP_PORT=8080
IPERF_PORT=5201

NETLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NETLAB_TOOLS=${NETLAB_TOOLS:-$NETLAB_ROOT/tests/tools/build}
# Run directory: control file, stats, logs. Derived from the prefix so any
# shell with the same NETLAB_PREFIX finds it.
NETLAB_RUN=${TMPDIR:-/tmp}/netlab-$NETLAB_PREFIX

export NETLAB_PREFIX NS_LAN NS_ROUTER NS_WANEM NS_WAN
export LAN_IF ROUTER_LAN_IF ROUTER_WAN_IF WANEM_ROUTER_IF WANEM_WAN_IF WAN_IF SRV_IF
export LAN_IP4 LAN_IP6 ROUTER_LAN_IP4 ROUTER_LAN_IP6 ROUTER_WAN_IP4 ROUTER_WAN_IP6
export WAN_GW_IP4 WAN_GW_IP6 SRV_IP4 SRV_IP6
export LAN_MAC ROUTER_LAN_MAC ROUTER_WAN_MAC WAN_MAC
export HTTP_PORT IPERF_PORT NETLAB_ROOT NETLAB_TOOLS NETLAB_RUN

netlab__err() { echo "netlab: $*" >&2; return 1; }

netlab__namespaces() { echo "$NS_LAN $NS_ROUTER $NS_WANEM $NS_WAN"; }

netlab__ns_exists() { [ -e "/run/netns/$1" ]; }

# netlab__veths: every veth end as NAMESPACE:IFNAME.
netlab__veths() {
	echo "$NS_LAN:$LAN_IF $NS_ROUTER:$ROUTER_LAN_IF $NS_ROUTER:$ROUTER_WAN_IF" \
		"$NS_WANEM:$WANEM_ROUTER_IF $NS_WANEM:$WANEM_WAN_IF $NS_WAN:$WAN_IF"
}

# netlab__ns NAME: lan|router|wanem|wan -> namespace name
netlab__ns() {
	case $1 in
	lan) echo "$NS_LAN" ;; router) echo "$NS_ROUTER" ;;
	wanem) echo "$NS_WANEM" ;; wan) echo "$NS_WAN" ;;
	*) netlab__err "unknown namespace '$1' (want lan, router, wanem or wan)" ;;
	esac
}

# netlab__try DESCRIPTION CMD...: run CMD, on failure report its output.
netlab__try() {
	local what=$1 out
	shift
	out=$("$@" 2>&1) || { netlab__err "$what failed: $* : ${out//$'\n'/ }"; return 1; }
}

# netlab__ipb NS: run the `ip` commands read from stdin inside NS.
netlab__ipb() {
	local out
	out=$(ip -n "$1" -batch - 2>&1) || { netlab__err "ip in $1 failed: ${out//$'\n'/ }"; return 1; }
}

netlab__is_num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# netlab_build_tools: build delayline and httpd if needed.
netlab_build_tools() {
	netlab__try "building test tools" make -s -C "$NETLAB_ROOT/tests/tools"
}

# netlab_exec lan|router|wanem|wan CMD...: run CMD inside that namespace.
netlab_exec() {
	local ns
	ns=$(netlab__ns "$1") || return 1
	shift
	ip netns exec "$ns" "$@"
}

# netlab_install_trap: tear the lab down however the script ends.
netlab_install_trap() {
	trap netlab_down EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

# netlab_up [DOWN_MS [UP_MS]]: build the whole topology and start the delay
# line with those one-way delays (default 0). Cleans up after itself on failure.
# NETLAB_QUEUE: frames the delay line holds per direction (default 16384,
# enough for 1 Gbit/s x 200 ms); beyond it frames are dropped and counted.
netlab_up() {
	local down=${1:-0} up=${2:-0}
	netlab__is_num "$down" && netlab__is_num "$up" ||
		{ netlab__err "netlab_up: delays must be milliseconds, got '$down' '$up'"; return 1; }
	[ "$(id -u)" = 0 ] || { netlab__err "netlab_up needs root"; return 1; }
	[[ $NETLAB_PREFIX =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
		{ netlab__err "NETLAB_PREFIX '$NETLAB_PREFIX': want up to 40 of [A-Za-z0-9_.-]"; return 1; }
	[ -x "$NETLAB_TOOLS/delayline" ] && [ -x "$NETLAB_TOOLS/httpd" ] ||
		{ netlab__err "tools missing in $NETLAB_TOOLS: run netlab_build_tools"; return 1; }
	local ns
	for ns in $(netlab__namespaces); do
		! netlab__ns_exists "$ns" ||
			{ netlab__err "namespace $ns exists already: netlab_down first or set NETLAB_PREFIX"; return 1; }
	done
	if ! netlab__build "$down" "$up"; then
		netlab_down
		return 1
	fi
}

netlab__build() {
	local down=$1 up=$2 ns
	rm -rf "$NETLAB_RUN" && mkdir -p "$NETLAB_RUN" || { netlab__err "cannot create $NETLAB_RUN"; return 1; }
	for ns in $(netlab__namespaces); do
		netlab__try "creating namespace" ip netns add "$ns" || return 1
	done

	# Sysctls that shape interfaces must be set before they exist ("default").
	# No DAD (addresses usable at once), no RA/RS chatter on the links.
	local quiet6="net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.dad_transmits=0
		net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.router_solicitations=0
		net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.all.accept_ra=0"
	for ns in "$NS_LAN" "$NS_ROUTER" "$NS_WAN"; do
		# shellcheck disable=SC2086
		netlab__try "sysctl in $ns" ip netns exec "$ns" sysctl -q -w $quiet6 || return 1
	done
	netlab__try "sysctl in $NS_WANEM" ip netns exec "$NS_WANEM" sysctl -q -w \
		net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1 || return 1
	# Ping sockets allowed, so active ICMP probes work without raw sockets.
	netlab__try "sysctl in $NS_ROUTER" ip netns exec "$NS_ROUTER" sysctl -q -w \
		net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		net.ipv6.conf.default.forwarding=1 "net.ipv4.ping_group_range=0 2147483647" || return 1

	# Veths are created directly in their namespaces: nothing in the root one.
	netlab__try "creating lan veth" ip link add "$LAN_IF" netns "$NS_LAN" address "$LAN_MAC" \
		type veth peer name "$ROUTER_LAN_IF" netns "$NS_ROUTER" address "$ROUTER_LAN_MAC" || return 1
	netlab__try "creating wan veth" ip link add "$ROUTER_WAN_IF" netns "$NS_ROUTER" address "$ROUTER_WAN_MAC" \
		type veth peer name "$WANEM_ROUTER_IF" netns "$NS_WANEM" address 02:00:00:00:0e:01 || return 1
	netlab__try "creating server veth" ip link add "$WANEM_WAN_IF" netns "$NS_WANEM" address 02:00:00:00:0e:02 \
		type veth peer name "$WAN_IF" netns "$NS_WAN" address "$WAN_MAC" || return 1

	local pair
	for pair in $(netlab__veths); do
		netlab__try "offloads off" ip netns exec "${pair%%:*}" \
			ethtool -K "${pair#*:}" tx off rx off tso off gso off gro off || return 1
	done

	netlab__ipb "$NS_LAN" <<-EOF || return 1
		link set lo up
		addr add $LAN_IP4/24 dev $LAN_IF
		addr add $LAN_IP6/64 dev $LAN_IF nodad
		link set $LAN_IF up
		route add default via $ROUTER_LAN_IP4
		route add ::/0 via $ROUTER_LAN_IP6
	EOF
	netlab__ipb "$NS_ROUTER" <<-EOF || return 1
		link set lo up
		addr add $ROUTER_LAN_IP4/24 dev $ROUTER_LAN_IF
		addr add $ROUTER_LAN_IP6/64 dev $ROUTER_LAN_IF nodad
		addr add $ROUTER_WAN_IP4/24 dev $ROUTER_WAN_IF
		addr add $ROUTER_WAN_IP6/64 dev $ROUTER_WAN_IF nodad
		link set $ROUTER_LAN_IF up
		link set $ROUTER_WAN_IF up
		route add default via $WAN_GW_IP4
		route add ::/0 via $WAN_GW_IP6
	EOF
	netlab__ipb "$NS_WANEM" <<-EOF || return 1
		link set lo up
		link set $WANEM_ROUTER_IF up
		link set $WANEM_WAN_IF up
	EOF
	# Traffic wan originates leaves from the server addresses: a UDP server on
	# a wildcard socket (iperf3 -u, DNS) would otherwise answer from the link
	# address, which matches no NAT mapping on the router.
	netlab__ipb "$NS_WAN" <<-EOF || return 1
		link set lo up
		addr add $WAN_GW_IP4/24 dev $WAN_IF
		addr add $WAN_GW_IP6/64 dev $WAN_IF nodad
		addr add $SRV_IP4/32 dev $SRV_IF
		addr add $SRV_IP6/128 dev $SRV_IF nodad
		link set $WAN_IF up
		route replace 198.51.100.0/24 dev $WAN_IF proto kernel scope link src $SRV_IP4
		route replace 2001:db8:2::/64 dev $WAN_IF proto kernel src $SRV_IP6
		route add 2001:db8:1::/64 via $ROUTER_WAN_IP6 src $SRV_IP6
	EOF

	netlab__try "nftables masquerade" ip netns exec "$NS_ROUTER" nft -f - <<-EOF || return 1
		table ip netlab {
			chain postrouting {
				type nat hook postrouting priority srcnat; policy accept;
				oifname "$ROUTER_WAN_IF" masquerade
			}
		}
	EOF

	netlab__start_delayline "$down" "$up" || return 1
	netlab__wait_oper_up || return 1
	netlab_wait_ping lan "$ROUTER_LAN_IP4" 5 || return 1
	netlab_wait_ping router "$WAN_GW_IP4" 5 || return 1
	netlab_wait_ping router "$WAN_GW_IP6" 5 || return 1
}

# netlab__wait_oper_up: wait until the kernel has activated every veth.
# Carrier changes go through linkwatch, which may defer them up to 1 s; until
# then IPv6 on that link ignores neighbour solicitations (first ping6 ~1 s).
netlab__wait_oper_up() {
	local i pair pending
	for ((i = 0; i < 60; i++)); do
		pending=
		for pair in $(netlab__veths); do
			[[ $(ip -n "${pair%%:*}" -o link show dev "${pair#*:}" 2>/dev/null) == *"state UP"* ]] ||
				pending+=" ${pair#*:}"
		done
		[ -z "$pending" ] && return 0
		sleep 0.05
	done
	netlab__err "links not up after 3 s:$pending"
}

netlab__start_delayline() {
	local down=$1 up=$2 i
	echo "$up $down up" >"$NETLAB_RUN/delay.ctl"
	# Disowned: a bare `wait` in a test does not block on it and its exit
	# prints nothing, yet this shell still reaps it (no zombie left to init).
	ip netns exec "$NS_WANEM" "$NETLAB_TOOLS/delayline" \
		--a "$WANEM_ROUTER_IF" --b "$WANEM_WAN_IF" \
		--ctl "$NETLAB_RUN/delay.ctl" --stats "$NETLAB_RUN/delayline.stats" \
		--queue "${NETLAB_QUEUE:-16384}" \
		</dev/null >"$NETLAB_RUN/delayline.log" 2>&1 &
	echo $! >"$NETLAB_RUN/delayline.pid"
	disown $!
	for ((i = 0; i < 300; i++)); do
		grep -q forwarding "$NETLAB_RUN/delayline.log" 2>/dev/null && return 0
		kill -0 "$(netlab_delayline_pid)" 2>/dev/null || break
		sleep 0.01
	done
	netlab__err "delayline did not start: $(tr '\n' ' ' <"$NETLAB_RUN/delayline.log" 2>/dev/null)"
}

# netlab_delayline_pid: print the delay line's PID.
netlab_delayline_pid() { cat "$NETLAB_RUN/delayline.pid" 2>/dev/null; }

# netlab__ctl UP_MS DOWN_MS STATE: hand the delay line a new control line and
# wait (bounded) until it reports the line as applied.
netlab__ctl() {
	local line="$1 $2 $3" pid i
	pid=$(netlab_delayline_pid)
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { netlab__err "delayline is not running"; return 1; }
	echo "$line" >"$NETLAB_RUN/delay.ctl.tmp" && mv -f "$NETLAB_RUN/delay.ctl.tmp" "$NETLAB_RUN/delay.ctl" ||
		{ netlab__err "cannot write $NETLAB_RUN/delay.ctl"; return 1; }
	kill -USR1 "$pid"
	for ((i = 0; i < 200; i++)); do
		[ "$(cat "$NETLAB_RUN/delay.ctl.applied" 2>/dev/null)" = "$line" ] && return 0
		sleep 0.01
	done
	netlab__err "delayline did not apply '$line' within 2 s"
}

# netlab__ctl_field N: field N of the current control line (1 up, 2 down, 3 state).
netlab__ctl_field() {
	local fields
	read -r -a fields <"$NETLAB_RUN/delay.ctl" 2>/dev/null || return 1
	echo "${fields[$(($1 - 1))]:-up}"
}

# netlab_set_delay DOWN_MS UP_MS: change the one-way delays at run time.
# Frames already in flight keep the delay they had when they entered.
netlab_set_delay() {
	netlab__is_num "${1:-}" && netlab__is_num "${2:-}" ||
		{ netlab__err "usage: netlab_set_delay DOWN_MS UP_MS"; return 1; }
	netlab__ctl "$2" "$1" "$(netlab__ctl_field 3)"
}

# netlab_get_delay: print "DOWN_MS UP_MS STATE" as configured.
netlab_get_delay() {
	echo "$(netlab__ctl_field 2) $(netlab__ctl_field 1) $(netlab__ctl_field 3)"
}

# netlab_link down|up: outage on/off. While down the delay line drops every
# frame both ways, including frames already queued.
netlab_link() {
	local state
	case ${1:-} in
	down | DOWN) state=down ;; up | UP) state=up ;;
	*) netlab__err "usage: netlab_link down|up"; return 1 ;;
	esac
	netlab__ctl "$(netlab__ctl_field 1)" "$(netlab__ctl_field 2)" "$state"
}

# netlab__shape_dev down|up: the wanem interface that direction leaves by.
netlab__shape_dev() {
	case $1 in
	down) echo "$WANEM_ROUTER_IF" ;; up) echo "$WANEM_WAN_IF" ;;
	*) netlab__err "direction must be down or up, got '$1'" ;;
	esac
}

# netlab_shape down|up RATE_MBIT [QUEUE_PKTS]: rate-limit one direction with
# HTB and a pfifo bottleneck queue of QUEUE_PKTS (default 1000, a typical
# bloated modem buffer; pass a small one for a well-managed line).
netlab_shape() {
	local dir=${1:-} rate=${2:-} q=${3:-1000} dev
	dev=$(netlab__shape_dev "$dir") || return 1
	netlab__is_num "$rate" && [[ $q =~ ^[1-9][0-9]*$ ]] ||
		{ netlab__err "usage: netlab_shape down|up RATE_MBIT [QUEUE_PKTS]"; return 1; }
	# quantum: one MTU frame per round; the r2q default warns at these rates.
	netlab__try "shaping $dir" tc -n "$NS_WANEM" qdisc replace dev "$dev" root handle 1: htb default 1 &&
	netlab__try "shaping $dir" tc -n "$NS_WANEM" class replace dev "$dev" parent 1: classid 1:1 \
		htb rate "${rate}mbit" ceil "${rate}mbit" quantum 1514 &&
	netlab__try "shaping $dir" tc -n "$NS_WANEM" qdisc replace dev "$dev" parent 1:1 handle 10: pfifo limit "$q"
}

# netlab_unshape [down|up]: remove shaping (both directions by default).
netlab_unshape() {
	local dir dev
	for dir in ${1:-down up}; do
		dev=$(netlab__shape_dev "$dir") || return 1
		tc -n "$NS_WANEM" qdisc del dev "$dev" root 2>/dev/null || true
	done
	return 0
}

# netlab__wait_listen NS PORT SECONDS: wait until a TCP listener is up.
netlab__wait_listen() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		[ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	netlab__err "nothing listens on port $2 in $1 after $3 s"
}

# netlab_start_servers: httpd on [::]:HTTP_PORT (both families) and an
# iperf3 server on IPERF_PORT in ns wan, once they accept connections.
netlab_start_servers() {
	netlab__ns_exists "$NS_WAN" || { netlab__err "netlab_up first"; return 1; }
	# Disowned, like the delay line (see netlab__start_delayline).
	ip netns exec "$NS_WAN" "$NETLAB_TOOLS/httpd" --listen "[::]:$HTTP_PORT" \
		</dev/null >"$NETLAB_RUN/httpd.log" 2>&1 &
	disown $!
	ip netns exec "$NS_WAN" iperf3 -s -p "$IPERF_PORT" \
		</dev/null >"$NETLAB_RUN/iperf3.log" 2>&1 &
	disown $!
	netlab__wait_listen "$NS_WAN" "$HTTP_PORT" 5 || return 1
	netlab__wait_listen "$NS_WAN" "$IPERF_PORT" 5
}

# netlab_wait_ping lan|router|wan ADDR [SECONDS]: wait until ADDR answers.
netlab_wait_ping() {
	local ns end
	ns=$(netlab__ns "$1") || return 1
	end=$((SECONDS + ${3:-5}))
	while ((SECONDS < end)); do
		ip netns exec "$ns" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	netlab__err "$2 does not answer pings from $1 within ${3:-5} s"
}

# netlab_ping_median lan|router|wan ADDR [COUNT [INTERVAL]]: print the median
# RTT in ms (3 decimals). The median, since the first ping includes ARP/ND.
netlab_ping_median() {
	local ns count=${3:-20} ivl=${4:-0.05} out
	ns=$(netlab__ns "$1") || return 1
	out=$(ip netns exec "$ns" ping -n -c "$count" -i "$ivl" -W 2 \
		-w "$(awk -v c="$count" -v i="$ivl" 'BEGIN { print int(c * i) + 5 }')" "$2" 2>&1) || true
	echo "$out" | awk -v want="$count" '
		/ time=/ { sub(/.* time=/, ""); v[n++] = $1 + 0 }
		END {
			if (n * 2 < want) { exit 1 }
			for (i = 1; i < n; i++)  # insertion sort: n is small
				for (j = i; j > 0 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
			printf "%.3f\n", (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
		}' || { netlab__err "too few ping replies from $2 in $1"; return 1; }
}

# netlab_stats: print the delay line's counters, one line per direction,
# "up ..." then "down ...", as KEY=VALUE fields: fwd_frames fwd_bytes
# dropped_frames (sum of: drop_queue_full drop_link_down drop_oversize
# drop_tx = egress qdisc full, drop_kernel = receive buffer overflow)
# drop_tx_bytes delay_ms.
netlab_stats() {
	local pid i f=$NETLAB_RUN/delayline.stats
	pid=$(netlab_delayline_pid)
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { netlab__err "delayline is not running"; return 1; }
	rm -f "$f"
	kill -USR2 "$pid"
	for ((i = 0; i < 200; i++)); do
		[ -s "$f" ] && { sed 's/^ab /up /; s/^ba /down /' "$f"; return 0; }
		sleep 0.01
	done
	netlab__err "delayline wrote no stats within 2 s"
}

# netlab_down: kill every process in the lab's namespaces, delete them and
# the run directory (kept if NETLAB_KEEP_RUN=1). Idempotent; always returns 0.
netlab_down() {
	local ns pids i all
	# SIGTERM first: the delay line writes its final stats then.
	for ns in $(netlab__namespaces); do
		netlab__ns_exists "$ns" || continue
		pids=$(ip netns pids "$ns" 2>/dev/null)
		# shellcheck disable=SC2086  # one PID per word
		[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
	done
	for ((i = 0; i < 60; i++)); do
		all=
		for ns in $(netlab__namespaces); do
			netlab__ns_exists "$ns" && all+=$(ip netns pids "$ns" 2>/dev/null)
		done
		[ -z "$all" ] && break
		sleep 0.05
	done
	for ns in $(netlab__namespaces); do
		netlab__ns_exists "$ns" || continue
		pids=$(ip netns pids "$ns" 2>/dev/null)
		# shellcheck disable=SC2086
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
		for ((i = 0; i < 40; i++)); do
			[ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
			sleep 0.05
		done
		ip netns del "$ns" 2>/dev/null || echo "netlab: cannot delete namespace $ns" >&2
	done
	[ "${NETLAB_KEEP_RUN:-0}" = 1 ] || rm -rf "$NETLAB_RUN"
	return 0
}
