#!/usr/bin/env bash
# Per-device accounting with two household devices behind a LAN bridge:
#   [d1]--+
#         [sw: bridge]--[rt: lan0  ispmon  wan0]--[srv: httpd]
#   [d2]--+
# d1 ("laptop") downloads 4 MB, d2 ("tv") uploads 2 MB. The device byte and
# packet counters must equal each device's own interface counters exactly,
# both directions, read in a quiet moment: the LAN carries only the
# devices' IPv4 (IPv6 off, static neighbours: no ARP, ND or MLD, which the
# device counters leave out). Names come from a dnsmasq leases file, and
# with --max-devices 1 the smaller device is folded into device="other"
# (exactly its traffic). Paced transfers from both at once give per-device
# throughput gauges near each device's own interface rate. Last, without
# --leases, dnsmasq's /tmp/dhcp.leases and odhcpd's /tmp/hosts/odhcpd (a
# private /tmp) are both found and read: the laptop named by its MAC, the
# tv, whose DUID has none, by its IPv6 address; and so is it by a DHCPv6
# lease in dnsmasq's own file.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
make -s -C tests/tools >/dev/null || exit 1

BIN=$PWD/ispmon
HTTPD=$PWD/tests/tools/build/httpd
P=ispmd$$
NSS="$P-srv $P-rt $P-sw $P-d1 $P-d2"
TMP=$(mktemp -d)
PID=

cleanup() {
	[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null
	for ns in $NSS; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

x() { local ns=$P-$1; shift; ip netns exec "$ns" "$@"; }
# IPv6 off before any interface exists: no link-local address, ND or MLD.
for ns in $NSS; do
	ip netns add "$ns" &&
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 &&
		ip netns exec "$ns" ip link set lo up || exit 1
done
x rt ip link add wan0 type veth peer name s0 netns "$P-srv"
x rt ip link add lan0 type veth peer name swr netns "$P-sw"
x sw ip link add br0 type bridge
x sw ip link add sw1 type veth peer name eth0 netns "$P-d1"
x sw ip link add sw2 type veth peer name eth0 netns "$P-d2"
for p in swr sw1 sw2; do x sw ip link set "$p" master br0 up; done
x sw ip link set br0 up
x d1 ip link set eth0 address 02:00:00:00:0d:01
x d2 ip link set eth0 address 02:00:00:00:0d:02
x srv ip addr add 198.51.100.1/24 dev s0
x rt ip addr add 198.51.100.2/24 dev wan0
x rt ip addr add 192.0.2.1/24 dev lan0
x d1 ip addr add 192.0.2.11/24 dev eth0
x d2 ip addr add 192.0.2.12/24 dev eth0
for l in "srv s0" "rt wan0" "rt lan0" "d1 eth0" "d2 eth0"; do set -- $l; x "$1" ip link set "$2" up; done
# Offloads off: then an interface counts wire frames, as ispmon does (with
# them, a veth counts a 64 kB GSO packet once, headers and all).
for l in "srv s0" "rt wan0" "rt lan0" "d1 eth0" "d2 eth0" "sw swr" "sw sw1" "sw sw2"; do
	set -- $l
	x "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1
done
# Static neighbours on the LAN: no ARP ever (the router would re-check its
# entries of forwarded flows with unicast ARP, which d1 and d2 count).
RT_MAC=$(x rt cat /sys/class/net/lan0/address)
x rt ip neigh replace 192.0.2.11 lladdr 02:00:00:00:0d:01 nud permanent dev lan0
x rt ip neigh replace 192.0.2.12 lladdr 02:00:00:00:0d:02 nud permanent dev lan0
x d1 ip neigh replace 192.0.2.1 lladdr "$RT_MAC" nud permanent dev eth0
x d2 ip neigh replace 192.0.2.1 lladdr "$RT_MAC" nud permanent dev eth0
x srv ip route add 192.0.2.0/24 via 198.51.100.2
x d1 ip route add default via 192.0.2.1
x d2 ip route add default via 192.0.2.1
x rt sysctl -qw net.ipv4.ip_forward=1
x srv "$HTTPD" --listen 198.51.100.1:8080 </dev/null >/dev/null 2>&1 &
for _ in $(seq 1 50); do x srv ss -Hltn 'sport = :8080' | grep -q . && break; sleep 0.1; done

cat >"$TMP/leases" <<LEASES
1999999999 02:00:00:00:0d:01 192.0.2.11 laptop 01:02:00:00:00:0d:01
1999999999 02:00:00:00:0d:02 192.0.2.12 tv *
LEASES
# tv has no client id: "*" in the last field is fine, the name is the 4th.

start() {
	[ -n "$PID" ] && { kill -TERM "$PID"; wait "$PID"; }
	ip netns exec "$P-rt" "$BIN" --iface wan0 --lan-iface lan0 --interval 200ms --no-ping \
		--no-speedtest --leases "$TMP/leases" "$@" >/dev/null 2>"$TMP/err" &
	PID=$!
	wait_up
}
# wait_up: until ispmon's /metrics answers in rt (30 s at most).
wait_up() {
	for _ in $(seq 1 300); do x rt curl -sf -o /dev/null http://127.0.0.1:8000/metrics && return 0; sleep 0.1; done
	return 1
}
scrape() { sleep 0.6; x rt curl -sf http://127.0.0.1:8000/metrics >"$TMP/m.prom"; }
val() { awk -v k="$1" '$1 == k { print $2 }' "${2:-$TMP/m.prom}"; }
ifc() { x "$1" cat "/sys/class/net/eth0/statistics/$2"; }
# The devices' interface counters, one line.
ctrs() {
	local d c
	for d in d1 d2; do for c in rx_bytes tx_bytes rx_packets tx_packets; do printf '%s ' "$(ifc $d $c)"; done; done
}
# quiet NAME: a scrape ($TMP/NAME.prom) and the devices' interface counters
# ($TMP/NAME.if) of one quiet moment: the counters read before the scrape
# equal those read after it, with more than an ispmon interval (200 ms) in
# between, so the page has counted everything they have.
quiet() {
	quiet_moment 0.6 ctrs "$TMP/$1.prom" x rt curl -sf http://127.0.0.1:8000/metrics &&
		echo "$QUIET" >"$TMP/$1.if"
}
# ifd A B DEV COUNTER: the counter's change between two quiet moments.
ifd() {
	local i
	case $3-$4 in
	d1-rx_bytes) i=1 ;; d1-tx_bytes) i=2 ;; d1-rx_packets) i=3 ;; d1-tx_packets) i=4 ;;
	d2-rx_bytes) i=5 ;; d2-tx_bytes) i=6 ;; d2-rx_packets) i=7 ;; d2-tx_packets) i=8 ;;
	esac
	echo $(($(cut -d' ' -f$i "$TMP/$2.if") - $(cut -d' ' -f$i "$TMP/$1.if")))
}
# md A B SAMPLE: a sample's change between two quiet moments (absent = 0).
md() {
	local a b
	a=$(val "$3" "$TMP/$1.prom")
	b=$(val "$3" "$TMP/$2.prom")
	echo $((${b:-0} - ${a:-0}))
}
# exact A B DEVICE IFDEV: bytes and packets both ways equal the interface's.
exact() {
	local a=$1 b=$2 dev=$3 ifdev=$4 dir c got want
	for dir in download upload; do
		for c in bytes packets; do
			[ $dir = download ] && want=$(ifd "$a" "$b" "$ifdev" rx_$c) || want=$(ifd "$a" "$b" "$ifdev" tx_$c)
			got=$(md "$a" "$b" "ispmon_device_${c}_total{device=\"$dev\",direction=\"$dir\"}")
			check "$dev $dir $c: $got, its interface's $([ $dir = download ] && echo rx || echo tx) $want, exactly" \
				[ "$got" = "$want" ]
		done
	done
}

# The bridge learns every MAC first (else it floods the first frames to
# both devices).
x d1 ping -c 1 -W 1 -q 192.0.2.1 >/dev/null
x d2 ping -c 1 -W 1 -q 192.0.2.1 >/dev/null
start || { not_ok "ispmon starts"; exit 1; }
check "names from the leases file logged" grep -q "msg=\"device names\" leases=" "$TMP/err"
quiet q0 || not_ok "a quiet moment before the transfers"
check "laptop downloads 4 MB" x d1 curl -sf -o /dev/null http://198.51.100.1:8080/bytes/4000000
check "tv uploads 2 MB" bash -c "head -c 2000000 /dev/zero | ip netns exec $P-d2 curl -sf -o /dev/null --data-binary @- http://198.51.100.1:8080/upload"
quiet q1 || not_ok "a quiet moment after the transfers"
cp "$TMP/q1.prom" "$TMP/m.prom"
exact q0 q1 laptop d1
exact q0 q1 tv d2
check "the laptop's upload is only its ACKs ($(md q0 q1 'ispmon_device_bytes_total{device="laptop",direction="upload"}') B)" \
	awk -v v="$(md q0 q1 'ispmon_device_bytes_total{device="laptop",direction="upload"}')" 'BEGIN { exit !(v > 0 && v < 400000) }'
check "device info carries the MAC and address" grep -q 'ispmon_device_info{device="tv",mac="02:00:00:00:0d:02",ipv4="192.0.2.12"' "$TMP/m.prom"

# Throughput per device: both devices at once, paced at the sender by
# iperf3 (laptop downloads 12 Mbit/s, tv uploads 4 Mbit/s), collected every
# 1 s. The gauges of three scrapes in the steady part must be near each
# device's own interface rate over that part, and near the paced rate.
for port in 5201 5202; do x srv iperf3 -s -p $port -D --logfile "$TMP/iperf3-$port.log" || exit 1; done
for _ in $(seq 1 50); do [ "$(x srv ss -Hltn '( sport = :5201 or sport = :5202 )' | wc -l)" = 2 ] && break; sleep 0.1; done
start --interval 1s || exit 1
x d1 iperf3 -c 198.51.100.1 -p 5201 -R -b 12M -t 6 >/dev/null 2>&1 &
c1=$!
x d2 iperf3 -c 198.51.100.1 -p 5202 -b 4M -t 6 >/dev/null 2>&1 &
c2=$!
sleep 1.5
a1=$(ifc d1 rx_bytes) a2=$(ifc d2 tx_bytes) ta=$(date +%s.%N)
: >"$TMP/tp1"
: >"$TMP/tp2"
for _ in 1 2 3; do
	sleep 1
	x rt curl -sf http://127.0.0.1:8000/metrics >"$TMP/m.prom"
	val 'ispmon_device_throughput_bytes_per_second{device="laptop",direction="download"}' >>"$TMP/tp1"
	val 'ispmon_device_throughput_bytes_per_second{device="tv",direction="upload"}' >>"$TMP/tp2"
done
b1=$(ifc d1 rx_bytes) b2=$(ifc d2 tx_bytes) tb=$(date +%s.%N)
wait "$c1" "$c2"
if1=$(awk -v a="$a1" -v b="$b1" -v s="$ta" -v e="$tb" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
if2=$(awk -v a="$a2" -v b="$b2" -v s="$ta" -v e="$tb" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
med() { sort -g "$1" | awk '{ v[NR] = $1 } END { print v[2] }'; }
g1=$(med "$TMP/tp1") g2=$(med "$TMP/tp2")
check "laptop throughput ${g1:-none} B/s vs its interface's $if1 B/s within 10% (scrapes: $(tr '\n' ' ' <"$TMP/tp1"))" \
	rel_near "${g1:-0}" "$if1" 0.10
check "tv throughput ${g2:-none} B/s vs its interface's $if2 B/s within 10% (scrapes: $(tr '\n' ' ' <"$TMP/tp2"))" \
	rel_near "${g2:-0}" "$if2" 0.10
# Paced goodput in L2 bytes: 1448 payload bytes per 1514-byte frame.
check "paced rates seen: laptop near 12 Mbit/s, tv near 4 Mbit/s of payload (L2, +-10%)" \
	bash -c "awk -v a='${g1:-0}' -v b='${g2:-0}' 'BEGIN { f = 1514 / 1448; exit !(a > 0.9 * 1500000 * f && a < 1.1 * 1500000 * f && b > 0.9 * 500000 * f && b < 1.1 * 500000 * f) }'"

# Capped at one label: the laptop (more traffic) keeps it, tv goes to
# other, which then counts exactly tv's traffic.
start --max-devices 1 || exit 1
quiet c0 || not_ok "a quiet moment with --max-devices 1"
x d1 curl -sf -o /dev/null http://198.51.100.1:8080/bytes/3000000
head -c 1000000 /dev/zero | x d2 curl -sf -o /dev/null --data-binary @- http://198.51.100.1:8080/upload
quiet c1 || not_ok "a quiet moment after the transfers"
cp "$TMP/c1.prom" "$TMP/m.prom"
check "--max-devices 1: laptop labelled, tv not" bash -c "grep -q 'device=\"laptop\"' $TMP/m.prom && ! grep -q 'device=\"tv\"' $TMP/m.prom"
exact c0 c1 other d2
# Exactly the tv's interface (above); that it is the 1 MB upload: at least
# its payload, and below twice it (retransmissions on a loaded machine).
check "--max-devices 1: other holds tv's 1 MB upload ($(md c0 c1 'ispmon_device_bytes_total{device="other",direction="upload"}') B: 1 .. 2 MB)" \
	awk -v v="$(md c0 c1 'ispmon_device_bytes_total{device="other",direction="upload"}')" 'BEGIN { exit !(v >= 1000000 && v < 2000000) }'

start --max-devices 0 || exit 1
scrape
check "--max-devices 0: no per-device metrics and no LAN hook" \
	bash -c "! grep -q '^ispmon_device_bytes_total' $TMP/m.prom && ! grep -q 'iface=\"lan0\"' $TMP/m.prom"
if promtool check metrics <"$TMP/m.prom" >/dev/null 2>&1; then ok "promtool accepts the page"; else not_ok "promtool check metrics"; fi

# Names from both files OpenWrt keeps, found where it keeps them: no
# --leases, and ispmon in a mount namespace whose /tmp (and dnsmasq's
# directories, where they exist) holds only /tmp/dhcp.leases (dnsmasq,
# IPv4: the laptop by MAC) and /tmp/hosts/odhcpd (IPv6). In the latter the
# laptop's DUID-LLT carries its MAC (the same name), the tv's DUID-EN none:
# its IPv6 address names it.
cat >"$TMP/odhcpd" <<'ODHCPD'
# lan0 000100012c3a1b2c020000000d01 0a0b0c0d laptop6 1999999999 10b 128 2001:db8:d::10b/128
2001:db8:d::12	tv6.lan	tv6
# lan0 00020000ab110a0b0c0d0e0f 0d020304 tv6 1999999999 12 128 2001:db8:d::12/128
ODHCPD
echo "1999999999 02:00:00:00:0d:01 192.0.2.10 laptop6 01:02:00:00:00:0d:01" >"$TMP/dhcp.leases"
x rt sysctl -qw net.ipv6.conf.lan0.disable_ipv6=0
x d2 sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
x rt ip -6 addr add 2001:db8:d::1/64 dev lan0 nodad
x d2 ip -6 addr add 2001:db8:d::12/64 dev eth0 nodad
kill -TERM "$PID"
wait "$PID"
# The binary may live under /tmp itself (a clone there): it is copied into
# the new /tmp through a descriptor opened before the mount hides it.
unshare -m sh -c 'l=$(cat "$3") && exec 3<"$2" && mount -t tmpfs tmpfs /tmp && mkdir /tmp/hosts &&
	cat >/tmp/hosts/odhcpd && printf "%s\n" "$l" >/tmp/dhcp.leases && cat <&3 >/tmp/ispmon &&
	chmod 755 /tmp/ispmon && exec 3<&- || exit 1
	for d in /var/lib/misc /var/lib/dnsmasq; do [ ! -d "$d" ] || mount -t tmpfs tmpfs "$d" || exit 1; done
	exec ip netns exec "$1" /tmp/ispmon --iface wan0 --lan-iface lan0 --interval 200ms --no-ping --no-speedtest' \
	sh "$P-rt" "$BIN" "$TMP/dhcp.leases" <"$TMP/odhcpd" >/dev/null 2>"$TMP/err" &
PID=$!
wait_up
x d1 ping -c 2 -i 0.2 -W 1 -q 192.0.2.1 >/dev/null
x d2 ping -6 -c 2 -i 0.2 -W 1 -q 2001:db8:d::1 >/dev/null
scrape
check "without --leases both found: /tmp/dhcp.leases and /tmp/hosts/odhcpd" \
	bash -c "grep -q 'msg=\"device names\" leases=/tmp/dhcp.leases' $TMP/err && grep -q 'msg=\"device names\" leases=/tmp/hosts/odhcpd' $TMP/err"
check "dnsmasq's and odhcpd's: the laptop named by its MAC ($(grep -o 'ispmon_device_info{device="[^"]*",mac="02:00:00:00:0d:01"' "$TMP/m.prom"))" \
	grep -q 'ispmon_device_info{device="laptop6",mac="02:00:00:00:0d:01"' "$TMP/m.prom"
check "odhcpd's: the tv named by its IPv6 address ($(grep -o 'ispmon_device_info{device="[^"]*",mac="02:00:00:00:0d:02"[^}]*' "$TMP/m.prom"))" \
	grep -Eq 'ispmon_device_info\{device="tv6",mac="02:00:00:00:0d:02",ipv4="[^"]*",ipv6="2001:db8:d::12"\}' "$TMP/m.prom"

# dnsmasq's own DHCPv6 leases (Debian's file, given with --leases): after
# its "duid" line, "EXPIRY IAID ADDRESS NAME DUID". The tv's DUID-EN has no
# MAC: its IPv6 address names it. The first --leases file is missing: a
# warning for it alone, and the second still names.
cat >"$TMP/dnsmasq6.leases" <<LEASES
1999999999 02:00:00:00:0d:01 192.0.2.11 laptop 01:02:00:00:00:0d:01
duid 00:01:00:01:2c:3a:1b:2c:02:00:00:00:00:01
1999999999 218893066 2001:db8:d::12 tv-dhcp6 00:02:00:00:ab:11:0a:0b:0c:0d:0e:0f
LEASES
rm -f "$TMP/leases"
start --leases "$TMP/dnsmasq6.leases" || { not_ok "ispmon starts with dnsmasq's DHCPv6 leases"; exit 1; }
x d2 ping -6 -c 2 -i 0.2 -W 1 -q 2001:db8:d::1 >/dev/null
scrape
check "a missing --leases file: a warning naming it, and none for the file that is there" \
	bash -c "grep -q 'level=warn.*cannot read the leases file.*path=$TMP/leases ' $TMP/err &&
		grep -q 'msg=\"device names\" leases=$TMP/dnsmasq6.leases' $TMP/err &&
		! grep -q 'level=warn.*path=$TMP/dnsmasq6.leases' $TMP/err"
check "dnsmasq's DHCPv6 lease: the tv named by its IPv6 address ($(grep -o 'ispmon_device_info{device="[^"]*",mac="02:00:00:00:0d:02"[^}]*' "$TMP/m.prom"))" \
	grep -Eq 'ispmon_device_info\{device="tv-dhcp6",mac="02:00:00:00:0d:02",ipv4="[^"]*",ipv6="2001:db8:d::12"\}' "$TMP/m.prom"
kill -TERM "$PID"
wait "$PID"
PID=
check "no error logged" bash -c "! grep -q 'level=error' $TMP/err"
tap_exit
