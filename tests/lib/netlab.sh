# netlab.sh - the emulated home network every ispmon test runs on. Source it
# from bash (as root); it changes nothing until netlab_up is called.
#
#   ns lan         ns lanem                ns router              ns wanem                ns wan
#   [eth0]--veth--[l0 delayline r0]--veth--[lan0 NAT wan0]--veth--[r0 delayline w0]--veth--[eth0, lo]
#
#   lan    device   192.0.2.2/24      2001:db8:1::2/64
#   lanem  l0, r0   no addresses, IPv6 disabled: a LAN-side delay line (the
#                   household's Wi-Fi); lan's eth0 and the router's lan0 stay
#                   on one L2 segment (ARP/ND and MACs pass through unchanged)
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
# Directions: "down" is towards the household, "up" away from it. WAN side:
# down is wan -> router, up is router -> wan; wanem's delay line forwards
# r0 -> w0 (up, its "ab") and w0 -> r0 (down, its "ba"); shaping a direction
# puts HTB on that direction's egress veth in wanem (r0 for down). LAN side:
# down is router -> device, up is device -> router; lanem's delay line
# forwards r0 -> l0 (down, its "ab") and l0 -> r0 (up, its "ba"). lanem is
# always there; its delay defaults to 0 (a 0 ms delay line still costs
# ~0.05-0.1 ms per crossing: the time to wake up and forward; a delay of
# 0.2 ms or more is kept within ~0.02 ms, timed from the kernel receive stamp).
# So lan -> server RTT = LAN down + up + WAN down + up, lan -> router RTT =
# LAN down + up, router -> server RTT = WAN down + up.
# Offloads are off on every veth: a userspace forwarder re-injects frames
# whose partial TX checksums would otherwise be dropped by the receiver.
#
# Typical use:
#   source tests/lib/netlab.sh
#   netlab_install_trap                  # netlab_down on EXIT/INT/TERM/HUP
#   netlab_up 10 10 || exit 1            # 10 ms down + 10 ms up one-way delay
#   netlab_up 10 10 2 2 || exit 1        # ... and 2 ms + 2 ms on the LAN side
#   netlab_start_servers || exit 1       # httpd, iperf3, dnsd in wan
#   ip netns exec "$NS_LAN" curl -s "http://$SRV_IP4:$HTTP_PORT/bytes/1000"
#   netlab_dns_median lan "$SRV_IP4" 20  # median DNS RTT in ms through NAT
#
# Functions: netlab_build_tools, netlab_up, netlab_down, netlab_install_trap,
# netlab_exec, netlab_start_servers, netlab_set_delay / netlab_get_delay /
# netlab_set_loss / netlab_link / netlab_shape / netlab_unshape /
# netlab_stats (WAN side),
# netlab_set_lan_delay / netlab_get_lan_delay / netlab_lan_link /
# netlab_lan_stats (LAN side), netlab_add_device (more household devices
# behind a bridge), netlab_delayline_pid, netlab_wait_ping,
# netlab_ping_median, netlab_dns_median. Each is described where defined.
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
NS_LANEM=$NETLAB_PREFIX-lanem

LAN_IF=eth0
ROUTER_LAN_IF=lan0
ROUTER_WAN_IF=wan0
WANEM_ROUTER_IF=r0
WANEM_WAN_IF=w0
LANEM_LAN_IF=l0
LANEM_ROUTER_IF=r0
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
DNS_PORT=53

NETLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NETLAB_TOOLS=${NETLAB_TOOLS:-$NETLAB_ROOT/tests/tools/build}
# Run directory: control file, stats, logs. Derived from the prefix so any
# shell with the same NETLAB_PREFIX finds it.
NETLAB_RUN=${TMPDIR:-/tmp}/netlab-$NETLAB_PREFIX

export NETLAB_PREFIX NS_LAN NS_ROUTER NS_WANEM NS_WAN NS_LANEM
export LAN_IF ROUTER_LAN_IF ROUTER_WAN_IF WANEM_ROUTER_IF WANEM_WAN_IF WAN_IF SRV_IF
export LANEM_LAN_IF LANEM_ROUTER_IF
export LAN_IP4 LAN_IP6 ROUTER_LAN_IP4 ROUTER_LAN_IP6 ROUTER_WAN_IP4 ROUTER_WAN_IP6
export WAN_GW_IP4 WAN_GW_IP6 SRV_IP4 SRV_IP6
export LAN_MAC ROUTER_LAN_MAC ROUTER_WAN_MAC WAN_MAC
export HTTP_PORT IPERF_PORT DNS_PORT NETLAB_ROOT NETLAB_TOOLS NETLAB_RUN

netlab__err() { echo "netlab: $*" >&2; return 1; }

# The devices netlab_add_device added: "NAME NAMESPACE MAC IP4 IP6" lines.
netlab__devices_file() { echo "$NETLAB_RUN/devices"; }

netlab__namespaces() {
	echo "$NS_LAN $NS_LANEM $NS_ROUTER $NS_WANEM $NS_WAN"
	[ -r "$(netlab__devices_file)" ] && awk '{ print $2 }' "$(netlab__devices_file)"
}

netlab__ns_exists() { [ -e "/run/netns/$1" ]; }

# netlab__veths: every veth end as NAMESPACE:IFNAME.
netlab__veths() {
	echo "$NS_LAN:$LAN_IF $NS_LANEM:$LANEM_LAN_IF $NS_LANEM:$LANEM_ROUTER_IF" \
		"$NS_ROUTER:$ROUTER_LAN_IF $NS_ROUTER:$ROUTER_WAN_IF" \
		"$NS_WANEM:$WANEM_ROUTER_IF $NS_WANEM:$WANEM_WAN_IF $NS_WAN:$WAN_IF"
}

# netlab__ns NAME: lan|lanem|router|wanem|wan or an added device's name ->
# namespace name
netlab__ns() {
	local ns
	case $1 in
	lan) echo "$NS_LAN" ;; lanem) echo "$NS_LANEM" ;; router) echo "$NS_ROUTER" ;;
	wanem) echo "$NS_WANEM" ;; wan) echo "$NS_WAN" ;;
	*)
		ns=$(awk -v n="$1" '$1 == n { print $2 }' "$(netlab__devices_file)" 2>/dev/null)
		[ -n "$ns" ] && echo "$ns" ||
			netlab__err "unknown namespace '$1' (want lan, lanem, router, wanem, wan or a device)" ;;
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

# netlab_build_tools: build delayline, httpd, dnsd and dnsq if needed.
netlab_build_tools() {
	netlab__try "building test tools" make -s -C "$NETLAB_ROOT/tests/tools"
}

# netlab_exec lan|lanem|router|wanem|wan CMD...: run CMD inside that namespace.
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

# netlab_up [DOWN_MS UP_MS [LAN_DOWN_MS LAN_UP_MS]]: build the whole topology
# and start both delay lines with those one-way delays (default 0): WAN side
# down = wan -> router, up = router -> wan; LAN side down = router -> device,
# up = device -> router. Cleans up after itself on failure.
# NETLAB_QUEUE: frames each delay line holds per direction (default 16384,
# enough for 1 Gbit/s x 200 ms); beyond it frames are dropped and counted.
netlab_up() {
	local down=${1:-0} up=${2:-0} ldown=${3:-0} lup=${4:-0} t
	for t in "$down" "$up" "$ldown" "$lup"; do
		netlab__is_num "$t" ||
			{ netlab__err "netlab_up: delays must be milliseconds, got '$*'"; return 1; }
	done
	[ "$(id -u)" = 0 ] || { netlab__err "netlab_up needs root"; return 1; }
	[[ $NETLAB_PREFIX =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
		{ netlab__err "NETLAB_PREFIX '$NETLAB_PREFIX': want up to 40 of [A-Za-z0-9_.-]"; return 1; }
	for t in delayline httpd dnsd dnsq; do
		[ -x "$NETLAB_TOOLS/$t" ] ||
			{ netlab__err "$NETLAB_TOOLS/$t missing: run netlab_build_tools"; return 1; }
	done
	local ns
	for ns in $(netlab__namespaces); do
		! netlab__ns_exists "$ns" ||
			{ netlab__err "namespace $ns exists already: netlab_down first or set NETLAB_PREFIX"; return 1; }
	done
	if ! netlab__build "$down" "$up" "$ldown" "$lup"; then
		netlab_down
		return 1
	fi
}

netlab__build() {
	local down=$1 up=$2 ldown=$3 lup=$4 ns
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
	for ns in "$NS_LANEM" "$NS_WANEM"; do
		netlab__try "sysctl in $ns" ip netns exec "$ns" sysctl -q -w \
			net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1 || return 1
	done
	# Ping sockets allowed, so active ICMP probes work without raw sockets.
	netlab__try "sysctl in $NS_ROUTER" ip netns exec "$NS_ROUTER" sysctl -q -w \
		net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		net.ipv6.conf.default.forwarding=1 "net.ipv4.ping_group_range=0 2147483647" || return 1

	# Veths are created directly in their namespaces: nothing in the root one.
	netlab__try "creating lan veth" ip link add "$LAN_IF" netns "$NS_LAN" address "$LAN_MAC" \
		type veth peer name "$LANEM_LAN_IF" netns "$NS_LANEM" address 02:00:00:00:0d:02 || return 1
	netlab__try "creating router lan veth" ip link add "$ROUTER_LAN_IF" netns "$NS_ROUTER" address "$ROUTER_LAN_MAC" \
		type veth peer name "$LANEM_ROUTER_IF" netns "$NS_LANEM" address 02:00:00:00:0d:01 || return 1
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
	netlab__ipb "$NS_LANEM" <<-EOF || return 1
		link set lo up
		link set $LANEM_LAN_IF up
		link set $LANEM_ROUTER_IF up
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

	# Control lines are "AB_MS BA_MS STATE": wanem's a is r0 (AB = up),
	# lanem's a is r0 (AB = down).
	netlab__start_delayline wan "$NS_WANEM" "$WANEM_ROUTER_IF" "$WANEM_WAN_IF" "$up $down up" || return 1
	netlab__start_delayline lan "$NS_LANEM" "$LANEM_ROUTER_IF" "$LANEM_LAN_IF" "$ldown $lup up" || return 1
	netlab__wait_oper_up || return 1
	netlab_wait_ping lan "$ROUTER_LAN_IP4" 5 || return 1
	netlab_wait_ping lan "$ROUTER_LAN_IP6" 5 || return 1
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

# netlab__dl SIDE NAME: path of one of a delay line's run files. The WAN
# side keeps the names it always had (delayline.pid, delay.ctl, ...); the
# LAN side's carry a "lan-" prefix.
netlab__dl() {
	case $1 in
	wan) echo "$NETLAB_RUN/$2" ;; lan) echo "$NETLAB_RUN/lan-$2" ;;
	*) netlab__err "side must be wan or lan, got '$1'" ;;
	esac
}

# netlab__start_delayline SIDE NS IF_A IF_B CTL_LINE
netlab__start_delayline() {
	local side=$1 ns=$2 ifa=$3 ifb=$4 i log
	log=$(netlab__dl "$side" delayline.log) || return 1
	echo "$5" >"$(netlab__dl "$side" delay.ctl)"
	# Disowned: a bare `wait` in a test does not block on it and its exit
	# prints nothing, yet this shell still reaps it (no zombie left to init).
	ip netns exec "$ns" "$NETLAB_TOOLS/delayline" --a "$ifa" --b "$ifb" \
		--ctl "$(netlab__dl "$side" delay.ctl)" --stats "$(netlab__dl "$side" delayline.stats)" \
		--queue "${NETLAB_QUEUE:-16384}" \
		</dev/null >"$log" 2>&1 &
	echo $! >"$(netlab__dl "$side" delayline.pid)"
	disown $!
	for ((i = 0; i < 300; i++)); do
		grep -q forwarding "$log" 2>/dev/null && return 0
		kill -0 "$(netlab_delayline_pid "$side")" 2>/dev/null || break
		sleep 0.01
	done
	netlab__err "$side delayline did not start: $(tr '\n' ' ' <"$log" 2>/dev/null)"
}

# netlab_delayline_pid [wan|lan]: print that delay line's PID (default wan).
netlab_delayline_pid() { cat "$(netlab__dl "${1:-wan}" delayline.pid)" 2>/dev/null; }

# netlab__ctl SIDE AB_MS BA_MS STATE [AB_LOSS BA_LOSS]: hand a delay line a
# new control line (the loss carries over unless given) and wait (bounded)
# until it reports the line as applied.
netlab__ctl() {
	local side=$1 line="$2 $3 $4 ${5:-$(netlab__ctl_field "$1" 4)} ${6:-$(netlab__ctl_field "$1" 5)}" pid i ctl
	ctl=$(netlab__dl "$side" delay.ctl) || return 1
	pid=$(netlab_delayline_pid "$side")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { netlab__err "$side delayline is not running"; return 1; }
	echo "$line" >"$ctl.tmp" && mv -f "$ctl.tmp" "$ctl" || { netlab__err "cannot write $ctl"; return 1; }
	kill -USR1 "$pid"
	for ((i = 0; i < 200; i++)); do
		[ "$(cat "$ctl.applied" 2>/dev/null)" = "$line" ] && return 0
		sleep 0.01
	done
	netlab__err "$side delayline did not apply '$line' within 2 s"
}

# netlab__ctl_field SIDE N: field N of a delay line's current control line
# (1 AB_MS, 2 BA_MS, 3 state, 4 AB_LOSS, 5 BA_LOSS).
netlab__ctl_field() {
	local fields def=0
	read -r -a fields <"$(netlab__dl "$1" delay.ctl)" 2>/dev/null || return 1
	[ "$2" = 3 ] && def=up
	echo "${fields[$(($2 - 1))]:-$def}"
}

# netlab__state_arg down|up: validate a link state argument.
netlab__state_arg() {
	case ${1:-} in
	down | DOWN) echo down ;; up | UP) echo up ;;
	*) return 1 ;;
	esac
}

# netlab_set_delay DOWN_MS UP_MS: change the WAN one-way delays at run time.
# Frames already in flight keep the delay they had when they entered.
netlab_set_delay() {
	netlab__is_num "${1:-}" && netlab__is_num "${2:-}" ||
		{ netlab__err "usage: netlab_set_delay DOWN_MS UP_MS"; return 1; }
	netlab__ctl wan "$2" "$1" "$(netlab__ctl_field wan 3)"
}

# netlab_set_loss DOWN_PCT UP_PCT: random loss on the WAN side, in percent
# of the frames each way (0-100; 0 0 ends it), dropped as they enter the
# delay line and counted as drop_loss in netlab_stats.
netlab_set_loss() {
	netlab__is_num "${1:-}" && netlab__is_num "${2:-}" &&
		awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= 100 && b <= 100) }' ||
		{ netlab__err "usage: netlab_set_loss DOWN_PCT UP_PCT (0-100)"; return 1; }
	netlab__ctl wan "$(netlab__ctl_field wan 1)" "$(netlab__ctl_field wan 2)" "$(netlab__ctl_field wan 3)" "$2" "$1"
}

# netlab_get_delay: print the WAN side's "DOWN_MS UP_MS STATE" as configured.
netlab_get_delay() {
	echo "$(netlab__ctl_field wan 2) $(netlab__ctl_field wan 1) $(netlab__ctl_field wan 3)"
}

# netlab_link down|up: WAN outage on/off. While down the delay line drops
# every frame both ways, including frames already queued.
netlab_link() {
	local state
	state=$(netlab__state_arg "${1:-}") || { netlab__err "usage: netlab_link down|up"; return 1; }
	netlab__ctl wan "$(netlab__ctl_field wan 1)" "$(netlab__ctl_field wan 2)" "$state"
}

# netlab_set_lan_delay DOWN_MS UP_MS: change the LAN one-way delays at run
# time (down = router -> device, up = device -> router).
netlab_set_lan_delay() {
	netlab__is_num "${1:-}" && netlab__is_num "${2:-}" ||
		{ netlab__err "usage: netlab_set_lan_delay DOWN_MS UP_MS"; return 1; }
	netlab__ctl lan "$1" "$2" "$(netlab__ctl_field lan 3)"
}

# netlab_get_lan_delay: print the LAN side's "DOWN_MS UP_MS STATE".
netlab_get_lan_delay() {
	echo "$(netlab__ctl_field lan 1) $(netlab__ctl_field lan 2) $(netlab__ctl_field lan 3)"
}

# netlab_lan_link down|up: the device drops off the LAN (out of Wi-Fi range)
# and comes back; like netlab_link, on the LAN side.
netlab_lan_link() {
	local state
	state=$(netlab__state_arg "${1:-}") || { netlab__err "usage: netlab_lan_link down|up"; return 1; }
	netlab__ctl lan "$(netlab__ctl_field lan 1)" "$(netlab__ctl_field lan 2)" "$state"
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
# bloated modem buffer; pass a small one for a well-managed line). Call it
# again to change the rate or the queue at run time.
netlab_shape() {
	local dir=${1:-} rate=${2:-} q=${3:-1000} dev
	dev=$(netlab__shape_dev "$dir") || return 1
	netlab__is_num "$rate" && [[ $q =~ ^[1-9][0-9]*$ ]] ||
		{ netlab__err "usage: netlab_shape down|up RATE_MBIT [QUEUE_PKTS]"; return 1; }
	# quantum: one MTU frame per round; the r2q default warns at these rates.
	# HTB cannot be "replaced" by itself: when it is there, only its class
	# and queue change (a line reshaped at run time).
	{ tc -n "$NS_WANEM" qdisc show dev "$dev" root | grep -q '^qdisc htb 1: ' ||
		netlab__try "shaping $dir" tc -n "$NS_WANEM" qdisc replace dev "$dev" root handle 1: htb default 1; } &&
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

# netlab__wait_listen NS PORT SECONDS [t|u]: wait until a TCP (default) or
# UDP listener is up.
netlab__wait_listen() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		[ -n "$(ip netns exec "$1" ss -Hl"${4:-t}"n "sport = :$2" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	netlab__err "nothing listens on ${4:-t}cp port $2 in $1 after $3 s"
}

# netlab__dns_server ADDR: ADDR as a dnsq --server argument with DNS_PORT.
netlab__dns_server() {
	case $1 in *:*) echo "[$1]:$DNS_PORT" ;; *) echo "$1:$DNS_PORT" ;; esac
}

# netlab_start_servers: in ns wan, httpd on [::]:HTTP_PORT, an iperf3 server
# on IPERF_PORT and dnsd on [::]:DNS_PORT (UDP; all three serve IPv4 and
# IPv6), once they accept connections and dnsd answers on both families.
# Logs: $NETLAB_RUN/{httpd,iperf3,dnsd}.log; dnsd logs one line per query:
# "dnsd: SRC query to DST id=N type=T name=NAME answered".
netlab_start_servers() {
	netlab__ns_exists "$NS_WAN" || { netlab__err "netlab_up first"; return 1; }
	# Disowned, like the delay line (see netlab__start_delayline).
	ip netns exec "$NS_WAN" "$NETLAB_TOOLS/httpd" --listen "[::]:$HTTP_PORT" \
		</dev/null >"$NETLAB_RUN/httpd.log" 2>&1 &
	disown $!
	ip netns exec "$NS_WAN" iperf3 -s -p "$IPERF_PORT" \
		</dev/null >"$NETLAB_RUN/iperf3.log" 2>&1 &
	disown $!
	ip netns exec "$NS_WAN" "$NETLAB_TOOLS/dnsd" --listen "[::]:$DNS_PORT" \
		</dev/null >"$NETLAB_RUN/dnsd.log" 2>&1 &
	disown $!
	netlab__wait_listen "$NS_WAN" "$HTTP_PORT" 5 || return 1
	netlab__wait_listen "$NS_WAN" "$IPERF_PORT" 5 || return 1
	netlab__wait_listen "$NS_WAN" "$DNS_PORT" 5 u || return 1
	local a
	for a in 127.0.0.1 ::1; do
		ip netns exec "$NS_WAN" "$NETLAB_TOOLS/dnsq" --server "$(netlab__dns_server "$a")" \
			--count 3 --interval-ms 0 --timeout-ms 500 >/dev/null 2>&1 ||
			{ netlab__err "dnsd does not answer on $a: $(tr '\n' ' ' <"$NETLAB_RUN/dnsd.log")"; return 1; }
	done
}

# netlab_add_device NAME [MAC]: one more household device, in its own
# namespace ($NETLAB_PREFIX-NAME), on the lan device's segment: the first
# call makes the lan namespace's eth0 a port of a bridge br0 that takes over
# its MAC and addresses (the lan device stays what it was), and every added
# device hangs off that bridge by a veth, so it shares the LAN delay line
# (the Wi-Fi) and reaches the router's lan0 with its own MAC. Device N (1,
# 2, ...) gets eth0 = 192.0.2.(10+N)/24 and 2001:db8:1::(10+N)/64 with
# default routes via the router, MAC = MAC or 02:00:00:00:01:(10+N) (hex);
# offloads off, like every veth here. NAME: up to 8 of [a-z0-9]. Prints
# "NAMESPACE MAC IP4 IP6".
netlab_add_device() {
	local name=${1:-} mac=${2:-} f n ns ip4 ip6 pair
	[[ $name =~ ^[a-z0-9]{1,8}$ ]] || { netlab__err "usage: netlab_add_device NAME [MAC] (NAME: 1-8 of a-z0-9)"; return 1; }
	case $name in lan | lanem | router | wanem | wan) netlab__err "device name '$name' is taken"; return 1 ;; esac
	netlab__ns_exists "$NS_LAN" || { netlab__err "netlab_up first"; return 1; }
	f=$(netlab__devices_file)
	! grep -q "^$name " "$f" 2>/dev/null || { netlab__err "device $name exists"; return 1; }
	n=11
	[ -r "$f" ] && n=$(($(wc -l <"$f") + 11))
	[ "$n" -le 250 ] || { netlab__err "too many devices"; return 1; }
	ns=$NETLAB_PREFIX-$name
	mac=${mac:-$(printf '02:00:00:00:01:%02x' "$n")}
	ip4=192.0.2.$n ip6=2001:db8:1::$n
	if ! ip -n "$NS_LAN" link show br0 >/dev/null 2>&1; then
		netlab__ipb "$NS_LAN" <<-EOF || return 1
			link add br0 address $LAN_MAC type bridge stp_state 0 forward_delay 0
			addr del $LAN_IP4/24 dev $LAN_IF
			addr del $LAN_IP6/64 dev $LAN_IF
			link set $LAN_IF master br0
			addr add $LAN_IP4/24 dev br0
			addr add $LAN_IP6/64 dev br0 nodad
			link set br0 up
			route replace default via $ROUTER_LAN_IP4 dev br0
			route replace ::/0 via $ROUTER_LAN_IP6 dev br0
		EOF
	fi
	netlab__try "creating namespace" ip netns add "$ns" || return 1
	# Recorded at once: netlab_down removes it whatever fails next.
	echo "$name $ns $mac $ip4 $ip6" >>"$f"
	netlab__try "sysctl in $ns" ip netns exec "$ns" sysctl -q -w net.ipv6.conf.default.accept_dad=0 \
		net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 || return 1
	netlab__try "creating $name veth" ip link add "p-$name" netns "$NS_LAN" type veth \
		peer name eth0 netns "$ns" address "$mac" || return 1
	for pair in "$NS_LAN:p-$name" "$ns:eth0"; do
		netlab__try "offloads off" ip netns exec "${pair%%:*}" \
			ethtool -K "${pair#*:}" tx off rx off tso off gso off gro off || return 1
	done
	netlab__ipb "$NS_LAN" <<-EOF || return 1
		link set p-$name master br0
		link set p-$name up
	EOF
	netlab__ipb "$ns" <<-EOF || return 1
		link set lo up
		addr add $ip4/24 dev eth0
		addr add $ip6/64 dev eth0 nodad
		link set eth0 up
		route add default via $ROUTER_LAN_IP4
		route add ::/0 via $ROUTER_LAN_IP6
	EOF
	netlab_wait_ping "$name" "$ROUTER_LAN_IP4" 5 || return 1
	echo "$ns $mac $ip4 $ip6"
}

# netlab_wait_ping lan|router|wan|DEVICE ADDR [SECONDS]: wait until ADDR answers.
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

# netlab__stats SIDE AB_NAME BA_NAME: a delay line's counters, "up" line
# first, then "down".
netlab__stats() {
	local pid i f
	f=$(netlab__dl "$1" delayline.stats) || return 1
	pid=$(netlab_delayline_pid "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { netlab__err "$1 delayline is not running"; return 1; }
	rm -f "$f"
	kill -USR2 "$pid"
	for ((i = 0; i < 200; i++)); do
		if [ -s "$f" ]; then
			awk -v ab="$2" -v ba="$3" '
				$1 == "ab" { $1 = ab } $1 == "ba" { $1 = ba }
				$1 == "up" { u = $0 } $1 == "down" { d = $0 }
				END { print u; print d }' "$f"
			return 0
		fi
		sleep 0.01
	done
	netlab__err "$1 delayline wrote no stats within 2 s"
}

# netlab_dns_median lan|router|wan ADDR [COUNT [TYPE [INTERVAL_MS]]]: query
# dnsd at ADDR (port DNS_PORT) COUNT times (default 20) for TYPE (A or AAAA,
# default A), one query every INTERVAL_MS (default 50), each with a 2 s
# timeout and a fresh source port; print the median RTT in ms (3 decimals).
# Fails if fewer than half the replies came back. The first query may
# include ARP/ND, hence the median.
netlab_dns_median() {
	local ns count=${3:-20} out
	ns=$(netlab__ns "$1") || return 1
	out=$(ip netns exec "$ns" "$NETLAB_TOOLS/dnsq" --server "$(netlab__dns_server "$2")" \
		--count "$count" --interval-ms "${5:-50}" --timeout-ms 2000 --type "${4:-A}" 2>&1)
	# shellcheck disable=SC2181  # $out is needed either way
	if [ $? != 0 ]; then
		netlab__err "too few DNS replies from $2 in $1: $(echo "$out" | tail -n 1)"
		return 1
	fi
	echo "$out" | sed -n 's/^sent=.* median_ms=\([0-9.]*\)$/\1/p'
}

# netlab_stats: print the WAN delay line's counters, one line per direction,
# "up ..." then "down ...", as KEY=VALUE fields: fwd_frames fwd_bytes
# dropped_frames (sum of: drop_queue_full drop_link_down drop_oversize
# drop_tx = egress qdisc full, drop_kernel = receive buffer overflow,
# drop_loss = netlab_set_loss)
# drop_tx_bytes delay_ms rx_ts_fallback (frames timed when read instead of
# by the kernel's receive timestamp: a little late; expected near 0).
netlab_stats() { netlab__stats wan up down; }

# netlab_lan_stats: the same for the LAN delay line ("up" = device -> router,
# "down" = router -> device).
netlab_lan_stats() { netlab__stats lan down up; }

# netlab_down: kill every process in the lab's namespaces, delete them and
# the run directory (kept if NETLAB_KEEP_RUN=1). Idempotent; always returns 0.
netlab_down() {
	local ns pids i all
	# SIGTERM first: the delay line writes its final stats then.
	local spaces
	spaces=$(netlab__namespaces)
	for ns in $spaces; do
		netlab__ns_exists "$ns" || continue
		pids=$(ip netns pids "$ns" 2>/dev/null)
		# shellcheck disable=SC2086  # one PID per word
		[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
	done
	for ((i = 0; i < 60; i++)); do
		all=
		for ns in $spaces; do
			netlab__ns_exists "$ns" && all+=$(ip netns pids "$ns" 2>/dev/null)
		done
		[ -z "$all" ] && break
		sleep 0.05
	done
	for ns in $spaces; do
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
