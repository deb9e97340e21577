#!/usr/bin/env bash
# The operations stack against the real servers, in the emulated home network
# (WAN 10 ms RTT, LAN 2 ms, 20 Mbit/s each way with a 100-packet queue):
#  - ispmon in the router with ping targets, a speed-test server and plan
#    rates inside the testbed; a real Prometheus (Debian's binary) in the
#    router namespace on 127.0.0.1 scrapes it every second and evaluates the
#    shipped rules every second (their `for:` shortened to $FOR); a real
#    Alertmanager with the shipped routing (timings shortened, e-mail
#    receivers emptied, the webhook pointed at a local sink: tests/tools/httpd
#    --sink);
#  - while the lan device downloads, uploads, resolves and pings, every
#    PromQL expression of every dashboard panel and variable, and every
#    recording rule, returns data through the HTTP API; only expressions that
#    need a metric still pending from issue 5 (tests/lib/opslib.sh) may return
#    nothing, and only while ispmon does not export that metric; every rule
#    evaluates without error;
#  - the WAN link is cut: InternetDown fires in Prometheus, reaches
#    Alertmanager and arrives at the webhook as the phone push (receiver
#    phone-push, with its runbook); the link comes back: the resolved notice
#    arrives too. No InternetDown before the cut.
# Every wait is bounded; processes and temporary files are removed on exit.
# OPS_PLAN=0 starts ispmon without plan rates (shows the pending rule at
# work); OPS_KEEP=1 keeps the temporary directory (configs, logs, webhook).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
. tests/lib/netlab.sh
. tests/lib/opslib.sh

[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
for t in prometheus prometheus-alertmanager promtool amtool jq yq curl iperf3; do
	command -v "$t" >/dev/null || { echo "not ok - $t missing (scripts/deps.sh installs it)"; exit 1; }
done
[ -x ./ispmon ] || { echo "not ok - ./ispmon is not built (make)"; exit 1; }

BIN=$PWD/ispmon
FOR=${OPS_FOR:-3s}          # the alerts' `for:` in this test
RI=30s                      # $__rate_interval
RANGE=5m RANGE_S=300        # $__range, $__range_s
PROM=127.0.0.1:9090 AM=127.0.0.1:9093 SINK=127.0.0.1:9099 METRICS=127.0.0.1:8000
TMP=$(mktemp -d)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	netlab_down
	[ -n "${OPS_KEEP:-}" ] && echo "# kept $TMP" || rm -rf "$TMP"
}
netlab_install_trap
trap cleanup EXIT

r() { ip netns exec "$NS_ROUTER" "$@"; }
# bg NAME CMD...: start CMD in the router namespace, remember its PID.
bg() {
	local name=$1
	shift
	ip netns exec "$NS_ROUTER" "$@" </dev/null >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
}
# wait_http URL SECONDS
wait_http() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		r curl -sf -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.1
	done
	return 1
}
# q EXPR: instant query; prints the API's JSON.
q() { r curl -s --max-time 10 --data-urlencode "query=$1" "http://$PROM/api/v1/query"; }
# nres JSON: number of results (a scalar counts as one), -1 on error.
nres() { jq -r 'if .status != "success" then -1 elif .data.resultType == "scalar" then 1
	else .data.result | length end' 2>/dev/null <<<"$1" || echo -1; }
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

netlab_build_tools || exit 1
netlab_up 5 5 1 1 && netlab_start_servers || exit 1
netlab_shape down 20 100 && netlab_shape up 20 100 || exit 1
ok "testbed up: WAN 10 ms RTT, LAN 2 ms, 20 Mbit/s each way"

# ---------------------------------------------------------------- the stack
mkdir -p "$TMP/prom/rules" "$TMP/prom/data" "$TMP/am/data"
yq -y --arg am "$AM" --arg t "$METRICS" '
	.global.scrape_interval = "1s" | .global.scrape_timeout = "1s" | .global.evaluation_interval = "1s"
	| .alerting.alertmanagers[0].static_configs[0].targets = [$am]
	| .scrape_configs |= map(select(.job_name == "ispmon") | .static_configs[0].targets = [$t])' \
	dashboards/prometheus.yml >"$TMP/prom/prometheus.yml"
for f in "${OPS_RULES[@]}"; do
	yq -y --arg for "$FOR" '.groups |= map(del(.interval)
		| .rules |= map(if .for then .for = $for else . end))' "$f" >"$TMP/prom/rules/$(basename "$f")"
done
if out=$(promtool check config "$TMP/prom/prometheus.yml" 2>&1); then
	ok "test Prometheus config (shipped, 1 s intervals, for: $FOR, ispmon job only) is valid"
else
	not_ok "test Prometheus config: $(tr '\n' ' ' <<<"$out" | head -c 400)"
	exit 1
fi
yq -y --arg url "http://$SINK/webhook" '
	.route.group_wait = "1s" | .route.group_interval = "1s"
	| .route.routes |= map(if .group_wait then .group_wait = "1s" else . end
		| if .group_interval then .group_interval = "1s" else . end)
	| .receivers |= map(del(.email_configs)
		| if .webhook_configs then .webhook_configs |= map(.url = $url) else . end)' \
	dashboards/alertmanager.yml >"$TMP/am/alertmanager.yml"
if out=$(amtool check-config "$TMP/am/alertmanager.yml" 2>&1); then
	ok "test Alertmanager config (shipped routing, 1 s timings, no e-mail, webhook to the sink) is valid"
else
	not_ok "test Alertmanager config: $(tr '\n' ' ' <<<"$out" | head -c 400)"
	exit 1
fi

bg sink "$NETLAB_TOOLS/httpd" --listen "$SINK" --sink "$TMP/webhook.jsonl"
bg alertmanager prometheus-alertmanager --config.file="$TMP/am/alertmanager.yml" \
	--storage.path="$TMP/am/data" --web.listen-address="$AM" --cluster.listen-address= --log.level=warn
bg prometheus prometheus --config.file="$TMP/prom/prometheus.yml" --storage.tsdb.path="$TMP/prom/data" \
	--web.listen-address="$PROM" --log.level=warn
plan=()
[ "${OPS_PLAN:-1}" = 1 ] && "$BIN" --help 2>&1 | grep -q -- '--plan-download' && plan=(--plan-download 20M --plan-upload 20M)
SPEED="http://$SRV_IP4:$HTTP_PORT"
bg ispmon "$BIN" --iface "$ROUTER_WAN_IF" --lan-iface "$ROUTER_LAN_IF" --listen "$METRICS" --interval 500ms \
	--ping-target "$SRV_IP4" --ping-target "$WAN_GW_IP4" --ping-interval 500ms --ping-timeout 1s \
	--speed-url "$SPEED/bytes/{bytes}" --speed-upload-url "$SPEED/upload" \
	--speed-first-delay 1s --speed-interval 1m --speed-max-time 3s --speed-max-bytes 20M "${plan[@]}"
ISPMON_PID=${PIDS[-1]}
started=$(date +%s.%N)
up=1
wait_http "http://$SINK/" 5 || { not_ok "webhook sink listens on $SINK"; up=0; }
wait_http "http://$AM/-/ready" 20 || { not_ok "Alertmanager ready on $AM: $(tail -c 300 "$TMP/alertmanager.log")"; up=0; }
wait_http "http://$PROM/-/ready" 20 || { not_ok "Prometheus ready on $PROM: $(tail -c 300 "$TMP/prometheus.log")"; up=0; }
wait_http "http://$METRICS/metrics" 10 || { not_ok "ispmon serves /metrics: $(tail -c 300 "$TMP/ispmon.log")"; up=0; }
[ "$up" = 1 ] || exit 1
ok "webhook sink, Alertmanager, Prometheus and ispmon (${plan[*]:-no plan flags}) up in the router namespace"

# Prometheus scrapes ispmon and knows the Alertmanager.
for _ in $(seq 1 100); do
	[ "$(q 'up{job="ispmon"}' | jq -r '.data.result[0].value[1] // ""')" = 1 ] && break
	sleep 0.1
done
check "Prometheus scrapes ispmon (up == 1)" [ "$(q 'up{job="ispmon"}' | jq -r '.data.result[0].value[1] // ""')" = 1 ]
for _ in $(seq 1 50); do
	r curl -s "http://$PROM/api/v1/alertmanagers" | jqe '.data.activeAlertmanagers | length > 0' && break
	sleep 0.1
done
check "Prometheus sends alerts to the Alertmanager" bash -c \
	"ip netns exec $NS_ROUTER curl -s http://$PROM/api/v1/alertmanagers | jqe '.data.activeAlertmanagers | length > 0'"

# The first speed test (1 s after start, idle line, 3 s per direction).
for _ in $(seq 1 60); do
	[ "$(q 'sum(ispmon_speedtest_runs_total{direction="upload"})' | jq -r '.data.result[0].value[1] // 0')" -gt 0 ] 2>/dev/null &&
		[ "$(q 'max(ispmon_speedtest_running)' | jq -r '.data.result[0].value[1] // 1')" = 0 ] && break
	sleep 0.5
done
check "a speed test ran in the testbed ($(elapsed "$started") s after start)" \
	[ "$(q 'count(ispmon_speedtest_bytes_per_second)' | jq -r '.data.result[0].value[1] // 0')" -ge 2 ]

# ---------------------------------------------------------------- traffic
dd if=/dev/urandom of="$TMP/up.bin" bs=100k count=3 status=none
TRAFFIC_END=$(($(date +%s) + 90))
lan() { ip netns exec "$NS_LAN" "$@"; }
(
	# Small transfers, DNS and pings all along (bounded by TRAFFIC_END).
	while [ "$(date +%s)" -lt "$TRAFFIC_END" ]; do
		lan curl -s -o /dev/null --max-time 3 "$SPEED/bytes/300000"
		lan curl -s -o /dev/null --max-time 3 --data-binary @"$TMP/up.bin" "$SPEED/upload"
		lan "$NETLAB_TOOLS/dnsq" --server "$SRV_IP4:$DNS_PORT" --count 3 --interval-ms 50 --timeout-ms 500 >/dev/null 2>&1
		lan ping -n -q -c 3 -i 0.2 -W 1 "$SRV_IP4" >/dev/null 2>&1
		sleep 0.2
	done
) &
PIDS+=($!)
(
	# Bulk: a saturated line each way (capacity evidence, latency under load).
	lan timeout 20 iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 8 -R >/dev/null 2>&1
	lan timeout 20 iperf3 -c "$SRV_IP4" -p "$IPERF_PORT" -t 8 >/dev/null 2>&1
) &
PIDS+=($!)
ok "traffic from the lan device: downloads, uploads, DNS, ping, bulk both ways"

# ---------------------------------------------------------------- every expression
# Pending names ispmon does not export now.
sleep 5
exported=$(q 'count by (__name__) ({__name__=~"ispmon_.+"})' | jq -r '.data.result[].metric.__name__')
absent=$(comm -23 <(printf '%s\n' "${OPS_PENDING[@]}" | sort) <(sort <<<"$exported"))

{
	ops_panel_exprs "$RI" "$RANGE" "$RANGE_S" | awk -F'\t' '{ print "panel\t" $1 ": " $2 " [" $3 "]\t" $4 }'
	ops_other_exprs "$RI" "$RANGE" "$RANGE_S" | awk -F'\t' '$2 ~ /^variable:/ { print "variable\t" $1 ": " $2 "\t" $3 }'
	ops_records | awk -F'\t' '{ print "record\t" $1 "\t" $1 }'
} >"$TMP/exprs.tsv"
n_exprs=$(wc -l <"$TMP/exprs.tsv")
# Retry what has no data yet until the deadline (rate windows fill, the
# bulk transfers saturate the line, the baselines evaluate).
declare -A got=()   # line number in exprs.tsv -> series returned
deadline=$(($(date +%s) + 75))
t0=$(date +%s.%N)
while :; do
	missing=0 i=0
	while IFS=$'\t' read -r kind name expr; do
		i=$((i + 1))
		[ -n "${got[$i]:-}" ] && continue
		n=$(nres "$(q "$expr")")
		if [ "$n" -gt 0 ]; then got[$i]=$n; else missing=$((missing + 1)); fi
	done <"$TMP/exprs.tsv"
	[ "$missing" -eq 0 ] || [ "$(date +%s)" -ge "$deadline" ] && break
	sleep 2
done
echo "# $((n_exprs - missing)) of $n_exprs expressions returned data within $(elapsed "$t0") s"
exported=$(q 'count by (__name__) ({__name__=~"ispmon_.+"})' | jq -r '.data.result[].metric.__name__')
absent=$(comm -23 <(printf '%s\n' "${OPS_PENDING[@]}" | sort) <(sort <<<"$exported"))
[ -n "$absent" ] && echo "# pending (issue 5) and not exported by this ispmon: $(tr '\n' ' ' <<<"$absent")"
pending=0 i=0
while IFS=$'\t' read -r kind name expr; do
	i=$((i + 1))
	if [ -n "${got[$i]:-}" ]; then
		ok "$kind returns data: $name (${got[$i]} series)"
		continue
	fi
	need=$(ops_metric_names <<<"$expr" | ops_expand_names)
	waits=$(comm -12 <(sort <<<"$need") <(sort <<<"$absent") | tr '\n' ' ')
	if [ -n "$waits" ]; then
		echo "# pending: $kind $name: no data, needs ${waits% } (issue 5, not exported yet)"
		pending=$((pending + 1))
	else
		not_ok "$kind returns data: $name: $expr => $(q "$expr" | head -c 200)"
	fi
done <"$TMP/exprs.tsv"
echo "# $pending expressions wait for pending metrics"
rules=$(r curl -s "http://$PROM/api/v1/rules")
bad=$(jq -r '.data.groups[].rules[] | select(.health != "ok") | "\(.name): \(.lastError)"' <<<"$rules")
n_rules=$(jq '[.data.groups[].rules[]] | length' <<<"$rules")
[ "${n_rules:-0}" -gt 0 ] || bad+=" (no rules loaded)"
check "all ${n_rules:-0} rules evaluate without error${bad:+ ($bad)}" [ -z "$bad" ]
# Annotation queries: valid, data or not (alerts and speed-test marks).
while IFS=$'\t' read -r uid name expr; do
	case $name in annotation:*) ;; *) continue ;; esac
	n=$(nres "$(q "$expr")")
	check "$uid: $name query runs (${n} series now)" [ "$n" -ge 0 ]
done < <(ops_other_exprs "$RI" "$RANGE" "$RANGE_S")

# ---------------------------------------------------------------- alert end to end
sink_lines() { # ALERTNAME STATUS: webhook messages with that alert in that status
	[ -s "$TMP/webhook.jsonl" ] || return 0
	jq -c --arg a "$1" --arg s "$2" 'select(any(.alerts[]; .labels.alertname == $a and .status == $s))' \
		"$TMP/webhook.jsonl" 2>/dev/null
}
check "no InternetDown before the cut (none under load)" [ -z "$(sink_lines InternetDown firing)" ]
check "ispmon:internet_up is 1 before the cut" [ "$(q 'ispmon:internet_up' | jq -r '.data.result[0].value[1] // ""')" = 1 ]
kill -TERM "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null   # traffic done
cut=$(date +%s.%N)
netlab_link down || { not_ok "WAN link cut"; exit 1; }
ok "WAN link cut"
t_prom= t_am= t_hook=
for _ in $(seq 1 300); do
	if [ -z "$t_prom" ] && r curl -s "http://$PROM/api/v1/alerts" |
		jqe '.data.alerts | any(.labels.alertname == "InternetDown" and .state == "firing")'; then
		t_prom=$(elapsed "$cut")
	fi
	if [ -z "$t_am" ] && r curl -s "http://$AM/api/v2/alerts?filter=alertname%3D%22InternetDown%22" |
		jqe 'any(.status.state == "active")'; then
		t_am=$(elapsed "$cut")
	fi
	if [ -z "$t_hook" ] && [ -n "$(sink_lines InternetDown firing)" ]; then
		t_hook=$(elapsed "$cut")
	fi
	[ -n "$t_prom" ] && [ -n "$t_am" ] && [ -n "$t_hook" ] && break
	sleep 0.2
done
check "InternetDown fires in Prometheus (${t_prom:-not within 60} s after the cut, for: $FOR)" [ -n "$t_prom" ]
check "InternetDown reaches Alertmanager (${t_am:-not within 60} s)" [ -n "$t_am" ]
check "the webhook receives InternetDown (${t_hook:-not within 60} s)" [ -n "$t_hook" ]
msg=$(sink_lines InternetDown firing | head -n1)
if [ -n "$msg" ]; then
	cp "$TMP/webhook.jsonl" tests/artifacts/e2e-ops-webhook.jsonl 2>/dev/null
	jqs() { jqe "$1" <<<"$msg"; }
	check "... as the phone push: receiver phone-push, severity critical" \
		jqs '.receiver == "phone-push" and (.alerts[0].labels.severity == "critical")'
	check "... with its summary and runbook (description with Check:/Fix:)" \
		jqs '.alerts[0].annotations.summary != null and (.alerts[0].annotations.description | test("Check:") and test("Fix:"))'
	starts=$(jq -r '.alerts[0].startsAt' <<<"$msg")
	check "... started after the cut ($starts)" \
		awk -v s="$(date -d "$starts" +%s.%N 2>/dev/null || echo 0)" -v c="$cut" 'BEGIN { exit !(s >= c - 1) }'
fi
up_at=$(date +%s.%N)
netlab_link up || { not_ok "WAN link restored"; exit 1; }
t_res=
for _ in $(seq 1 300); do
	[ -n "$(sink_lines InternetDown resolved)" ] && { t_res=$(elapsed "$up_at"); break; }
	sleep 0.2
done
check "the webhook receives InternetDown resolved (${t_res:-not within 60} s after the link is back)" [ -n "$t_res" ]
cp "$TMP/webhook.jsonl" tests/artifacts/e2e-ops-webhook.jsonl 2>/dev/null

check "ispmon still runs" kill -0 "$ISPMON_PID"
check "ispmon logged no error" bash -c "! grep -q 'level=error' '$TMP/ispmon.log'"
bad=$(grep -iE 'level=(error|fatal)' "$TMP/prometheus.log" "$TMP/alertmanager.log" | head -3)
check "Prometheus and Alertmanager logged no error${bad:+: $bad}" [ -z "$bad" ]
tap_exit
