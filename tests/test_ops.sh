#!/usr/bin/env bash
# Static checks of the operations stack in dashboards/ (no servers started;
# tests/test_e2e_ops.sh runs the real ones):
#  - Prometheus: promtool check config / check rules / test rules; every
#    alert has a firing and a quiet unit test, a severity and a runbook;
#    every recording rule is used and every one used exists; every ispmon_*
#    name in rules and dashboards is in README's metric tables (or pending
#    from issue 5); every dashboard expression parses as PromQL.
#  - Alertmanager: amtool check-config; routing of each severity and of every
#    alert; inhibition names real alerts.
#  - Grafana: dashboard JSON parses; uids, panel ids, grid, data source uids
#    and types against the provisioned data sources, variables, links;
#    provisioning paths against docker-compose.yml.
#  - docker-compose.yml (`docker compose config` or `docker-compose config`
#    when present) and Dockerfile: services, privileges, mounts, pinned
#    images, stages, build context, runtime libraries against ./ispmon.
# Ports and URLs agree across prometheus.yml, alertmanager.yml, the Grafana
# data sources, loki.yml, promtail.yml and docker-compose.yml.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
. tests/lib/opslib.sh

for t in promtool amtool jq yq; do
	command -v "$t" >/dev/null || { echo "not ok - $t missing (scripts/deps.sh installs it)"; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run DESCRIPTION CMD...: ok if CMD succeeds, else not ok with its output.
run() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		not_ok "$desc: $(tr '\n' ' ' <<<"$out" | head -c 600)"
	fi
}
# same SET_A SET_B: two newline-separated lists hold the same items.
same() { [ "$(sort -u <<<"$1")" = "$(sort -u <<<"$2")" ]; }
# missing_from NEEDLES HAYSTACK: the needles (lines) not in the haystack (lines).
missing_from() { comm -23 <(sort -u <<<"$1" | sed '/^$/d') <(sort -u <<<"$2"); }
port_of() { sed -E 's#.*:([0-9]+)(/.*)?$#\1#' <<<"$1"; }

# ---------------------------------------------------------------- Prometheus
run "promtool check config dashboards/prometheus.yml (with its rule files)" \
	promtool check config dashboards/prometheus.yml
run "promtool check rules ${OPS_RULES[*]}" promtool check rules "${OPS_RULES[@]}"
run "promtool test rules ${OPS_RULE_TESTS[*]}" promtool test rules "${OPS_RULE_TESTS[@]}"

alerts=$(ops_alerts | cut -f1)
records=$(ops_records | cut -f1)
fired=$(yq -r '.tests[].alert_rule_test[]? | select((.exp_alerts // []) | length > 0) | .alertname' "${OPS_RULE_TESTS[@]}")
quiet=$(yq -r '.tests[].alert_rule_test[]? | select((.exp_alerts // []) | length == 0) | .alertname' "${OPS_RULE_TESTS[@]}")
m=$(missing_from "$alerts" "$fired")
check "every alert ($(wc -w <<<"$alerts")) has a unit test where it fires${m:+ (none for: $m)}" [ -z "$m" ]
m=$(missing_from "$alerts" "$quiet")
check "every alert has a unit test where it stays quiet${m:+ (none for: $m)}" [ -z "$m" ]
m=$(missing_from "$(printf '%s\n' InternetDown HighPacketLoss WanRttDegraded SpeedBelowPlan \
	BufferbloatBad LanLegDegraded IspmonDown FlowTableEvictions)" "$alerts")
check "the alerts issue 8 asks for exist${m:+ (missing: $m)}" [ -z "$m" ]
bad=$(yq -r '.groups[].rules[] | select(.alert)
	| select((.labels.severity // "") | IN("critical", "warning", "info") | not) | .alert' "${OPS_RULES[@]}")
check "every alert has severity critical, warning or info${bad:+ (not: $bad)}" [ -z "$bad" ]
bad=$(yq -r '.groups[].rules[] | select(.alert)
	| select(((.annotations.summary // "") | length) < 10
	  or ((.annotations.description // "") | test("Check:") and test("Fix:") and (length > 200) | not))
	| .alert' "${OPS_RULES[@]}")
check "every alert has a summary and a runbook description (what it means, Check:, Fix:)${bad:+ (not: $bad)}" [ -z "$bad" ]

# Recording rules: used by something, and everything used exists.
used=$( { ops_panel_exprs 1m 1h 3600 | cut -f4; ops_other_exprs 1m 1h 3600 | cut -f3;
	ops_alerts | cut -f2; ops_records | cut -f2; } | ops_metric_names)
m=$(missing_from "$records" "$used")
check "every recording rule is used by a dashboard or a rule${m:+ (unused: $m)}" [ -z "$m" ]
m=$(missing_from "$(grep '^ispmon:' <<<"$used")" "$records")
check "every ispmon:* name used is a recording rule${m:+ (undefined: $m)}" [ -z "$m" ]

# Every ispmon_* metric used is documented in README (histograms with their
# _bucket/_sum/_count series) or pending from issue 5.
documented=$(grep -E '^\| `ispmon_' README.md | cut -d'|' -f2 | grep -oE 'ispmon_[a-z0-9_]+' |
	sed -E 's/^(.*)$/\1\n\1_bucket\n\1_sum\n\1_count/')
m=$(missing_from "$(grep '^ispmon_' <<<"$used")" "$documented"$'\n'"$(printf '%s\n' "${OPS_PENDING[@]}")")
check "every ispmon_* metric in dashboards and rules is in README's metric table or pending (issue 5)${m:+ (unknown: $m)}" [ -z "$m" ]
pend_doc=$(missing_from "$(printf '%s\n' "${OPS_PENDING[@]}")" "$documented")
[ -n "$pend_doc" ] && echo "# pending (issue 5), not in README yet: $(tr '\n' ' ' <<<"$pend_doc")"

# Every dashboard expression (variables replaced) parses: promtool checks
# them as recording rules.
{
	echo "groups:"
	echo "  - name: dashboard-expressions"
	echo "    rules:"
	i=0
	while IFS=$'\t' read -r _ _ _ e; do
		i=$((i + 1))
		printf '      - record: dashboard:expr_%d\n        expr: %s\n' "$i" "$(jq -Rn --arg e "$e" '$e')"
	done < <(ops_panel_exprs 1m 1h 3600; ops_other_exprs 1m 1h 3600 | awk -F'\t' '{ print $1 "\t" $2 "\t-\t" $3 }')
} >"$TMP/exprs.rules.yml"
n=$(grep -c 'record:' "$TMP/exprs.rules.yml")
run "all $n PromQL expressions of the dashboards (panels, annotations, variables) parse" \
	promtool check rules "$TMP/exprs.rules.yml"

# ---------------------------------------------------------------- Alertmanager
AM=dashboards/alertmanager.yml
run "amtool check-config $AM" amtool check-config "$AM"
route() { amtool config routes test --config.file="$AM" "$@" 2>/dev/null; }
check "critical goes to the phone (webhook) and e-mail" [ "$(route severity=critical alertname=X)" = "phone-push,email" ]
check "warning goes to e-mail" [ "$(route severity=warning alertname=X)" = "email" ]
check "info goes to e-mail" [ "$(route severity=info alertname=X)" = "email" ]
bad=
while IFS=$'\t' read -r name sev; do
	want=email
	[ "$sev" = critical ] && want=phone-push,email
	got=$(route alertname="$name" severity="$sev" instance=localhost:8000)
	[ "$got" = "$want" ] || bad+=" $name->$got"
done < <(yq -r '.groups[].rules[] | select(.alert) | [.alert, .labels.severity] | @tsv' "${OPS_RULES[@]}")
check "every alert is routed by its severity${bad:+ (wrong:$bad)}" [ -z "$bad" ]
check "the phone-push receiver is a webhook sending resolved notices too" \
	[ "$(yq -r '.receivers[] | select(.name == "phone-push") | .webhook_configs[0].send_resolved' "$AM")" = true ]
check "an e-mail receiver exists" \
	[ "$(yq -r '[.receivers[] | select(.email_configs)] | length' "$AM")" -ge 1 ]
inhib=$(yq -r '.inhibit_rules[] | (.source_matchers + .target_matchers)[]' "$AM" |
	grep -oE 'alertname=~?"[^"]+"' | sed -E 's/.*"(.*)"/\1/' | tr '|' '\n')
m=$(missing_from "$inhib" "$alerts")
check "inhibition rules name existing alerts${m:+ (unknown: $m)}" [ -z "$m" ]

# ---------------------------------------------------------------- Grafana
ds_uids=$(yq -r '.datasources[].uid' "$OPS_DATASOURCES")
ds_types=$(yq -r '.datasources[] | "\(.uid) \(.type)"' "$OPS_DATASOURCES")
check "exactly one default data source" [ "$(yq -r '[.datasources[] | select(.isDefault)] | length' "$OPS_DATASOURCES")" = 1 ]
uids=
for f in "${OPS_DASHBOARDS[@]}"; do
	b=$(basename "$f")
	if ! jq -e . "$f" >/dev/null 2>&1; then
		not_ok "$b parses as JSON"
		continue
	fi
	ok "$b parses as JSON"
	uid=$(jq -r '.uid // ""' "$f")
	uids+="$uid"$'\n'
	check "$b: uid, title, schemaVersion" jqe '(.uid | type == "string" and length > 0 and length <= 40)
		and (.title | length > 0) and (.schemaVersion >= 30)' "$f"
	check "$b: panel ids unique" jqe '[.. | objects | select(has("gridPos")) | .id] | (length == (unique | length)) and all(. != null)' "$f"
	check "$b: every panel has a title and a gridPos inside 24 columns" jqe '[.. | objects | select(has("gridPos"))]
		| all((.title | length > 0) and .gridPos.w > 0 and .gridPos.h > 0 and .gridPos.x >= 0
		      and .gridPos.x + .gridPos.w <= 24 and .gridPos.y >= 0)' "$f"
	check "$b: panels do not overlap" jqe '[.. | objects | select(has("gridPos")) | .gridPos] as $g
		| [range(0; $g | length) as $i | range($i + 1; $g | length) as $j | $g[$i] as $a | $g[$j] as $b
		   | select($a.x < $b.x + $b.w and $b.x < $a.x + $a.w and $a.y < $b.y + $b.h and $b.y < $a.y + $a.h)]
		| length == 0' "$f"
	# Every data source reference (panels, targets, variables, annotations).
	refs=$(jq -r '.. | objects | select(has("datasource")) | .datasource
		| if type == "object" then "\(.uid) \(.type)" else "string:\(.)" end' "$f" | sort -u |
		grep -v '^-- Grafana -- grafana$')
	m=$(missing_from "$refs" "$ds_types")
	check "$b: every data source reference is a provisioned uid of the right type${m:+ (bad: $(tr '\n' ' ' <<<"$m"))}" [ -z "$m" ]
	check "$b: no unresolved \${DS_...} inputs from an export" bash -c "! grep -q '\\\${DS_' '$f'"
	check "$b: every target has an expression and a refId unique in its panel" jqe '[.. | objects | select(has("targets"))]
		| all(.targets | all((.expr // "") | length > 0) and (map(.refId) | length == (unique | length)))' "$f"
	vars=$(jq -r '.templating.list[]?.name' "$f")
	usedv=$(jq -r '.. | objects | (.expr?, .query?) | strings' "$f" | grep -oE '\$\{?[a-zA-Z_][a-zA-Z0-9_]*' |
		sed -E 's/^\$\{?//' | grep -v '^__' | sort -u)
	m=$(missing_from "$usedv" "$vars")
	check "$b: every \$variable used is defined${m:+ (undefined: $m)}" [ -z "$m" ]
done
m=$(sort <<<"$uids" | uniq -d)
check "dashboard uids are unique${m:+ (twice: $m)}" [ -z "$m" ]
links=$(jq -r '.links[]?.url // empty' "${OPS_DASHBOARDS[@]}" | sed -nE 's#^/d/([^/?]+).*#\1#p')
m=$(missing_from "$links" "$uids")
check "dashboard links point at shipped dashboards${m:+ (unknown: $m)}" [ -z "$m" ]
n_loki=$(jq -r '.. | objects | select(has("targets")) | select(.datasource.type == "loki") | .title' "${OPS_DASHBOARDS[@]}" | wc -l)
echo "# $n_loki Loki (LogQL) panels are checked for data source and expression only"

# ---------------------------------------------------------------- compose
if ! yq -e . "$OPS_COMPOSE" >/dev/null 2>&1; then
	not_ok "$OPS_COMPOSE parses as YAML"
else
	ok "$OPS_COMPOSE parses as YAML"
	C=$OPS_COMPOSE
	cq() { yq -r "$@" "$C"; }
	m=$(missing_from "$(printf '%s\n' ispmon prometheus alertmanager grafana cadvisor loki promtail)" "$(cq '.services | keys[]')")
	check "compose has ispmon, Prometheus, Alertmanager, Grafana, cAdvisor, Loki, promtail${m:+ (missing: $m)}" [ -z "$m" ]
	check "ispmon runs privileged on the host network" \
		[ "$(cq '.services.ispmon | "\(.privileged) \(.network_mode)"')" = "true host" ]
	check "ispmon mounts /sys/fs/bpf and /sys/kernel/btf" bash -c \
		"yq -r '.services.ispmon.volumes[]' '$C' | grep -qx '/sys/fs/bpf:/sys/fs/bpf' &&
		 yq -r '.services.ispmon.volumes[]' '$C' | grep -qE '^/sys/kernel/btf:/sys/kernel/btf(:ro)?$'"
	ctx=dashboards/$(cq '.services.ispmon.build.context')
	dfile=$(cq '.services.ispmon.build.dockerfile')
	r=0
	[ -f "$ctx/$dfile" ] && [ "$ctx/$dfile" -ef "$OPS_DOCKERFILE" ] || r=1
	check "ispmon's build context and Dockerfile are the repository and $OPS_DOCKERFILE" [ $r = 0 ]
	bad=$(cq '.services[] | .volumes[]? | select(type == "string") | split(":")[0] | select(startswith("."))' |
		while read -r p; do [ -e "dashboards/$p" ] || echo "$p"; done)
	check "every relative bind mount exists${bad:+ (missing: $bad)}" [ -z "$bad" ]
	bad=$(cq '.services | to_entries[] | select(.key != "ispmon") | "\(.key)=\(.value.image // "")"' |
		grep -vE '=[^:]+:[^:]*[0-9][^:]*$' || true)
	check "every image is pinned to a version${bad:+ (not: $bad)}" [ -z "$bad" ]
	check "promtail ships the containers' logs to the compose Loki" \
		[ "$(port_of "$(yq -r '.clients[0].url' dashboards/promtail.yml)")" = "$(yq -r '.server.http_listen_port' dashboards/loki.yml)" ]
	gmount=$(cq '.services.grafana.volumes[] | select(startswith("./grafana/dashboards:"))' | cut -d: -f2)
	check "Grafana's dashboard provider reads where compose mounts the dashboards ($gmount)" \
		[ "$(yq -r '.providers[0].options.path' "$OPS_PROVIDERS")" = "$gmount" ]
	check "Grafana's provisioning directory is mounted" bash -c \
		"yq -r '.services.grafana.volumes[]' '$C' | grep -q '^./grafana/provisioning:/etc/grafana/provisioning'"
	# Ports: what each service listens on is what the others call.
	pport=$(cq '.services.prometheus.command[] | select(startswith("--web.listen-address="))' | sed 's/.*://')
	aport=$(cq '.services.alertmanager.command[] | select(startswith("--web.listen-address="))' | sed 's/.*://')
	cport=$(cq '.services.cadvisor.command[] | select(startswith("--port="))' | sed 's/.*=//')
	dsport() { port_of "$(yq -r ".datasources[] | select(.type == \"$1\") | .url" "$OPS_DATASOURCES")"; }
	target_port() { port_of "$(yq -r ".scrape_configs[] | select(.job_name == \"$1\") | .static_configs[0].targets[0]" dashboards/prometheus.yml)"; }
	r=0
	[ "$(dsport prometheus)" = "$pport" ] && [ "$(target_port prometheus)" = "$pport" ] || r=1
	check "ports agree: Prometheus $pport (Grafana, self-scrape)" [ $r = 0 ]
	r=0
	[ "$(port_of "$(yq -r '.alerting.alertmanagers[0].static_configs[0].targets[0]' dashboards/prometheus.yml)")" = "$aport" ] &&
		[ "$(dsport alertmanager)" = "$aport" ] && [ "$(target_port alertmanager)" = "$aport" ] || r=1
	check "ports agree: Alertmanager $aport (Prometheus alerting, Grafana, scrape)" [ $r = 0 ]
	check "ports agree: Loki (Grafana)" [ "$(dsport loki)" = "$(yq -r '.server.http_listen_port' dashboards/loki.yml)" ]
	check "ports agree: cAdvisor $cport (scrape)" [ "$(target_port cadvisor)" = "$cport" ]
	check "ports agree: ispmon :8000 (scrape)" [ "$(target_port ispmon)" = 8000 ]

	# A compose implementation's own validation, where one is installed.
	if docker compose version >/dev/null 2>&1; then
		run "docker compose config accepts $C" docker compose -f "$C" config -q
	elif command -v docker-compose >/dev/null; then
		# docker-compose 1.x (Debian's) predates the top-level `name`: check
		# that one here and the rest of the file with its schema.
		check "compose project name is a plain string" [ "$(cq '.name | type')" = string ]
		cq -y 'del(.name)' >"$TMP/compose.yml"
		if out=$(docker-compose -f "$TMP/compose.yml" --project-directory dashboards config 2>&1 >"$TMP/compose.resolved"); then
			ok "docker-compose $(docker-compose version --short 2>/dev/null) config accepts $C"
		else
			not_ok "docker-compose config: $(tr '\n' ' ' <<<"$out" | head -c 600)"
		fi
	else
		echo "# skip: no docker compose / docker-compose: $C checked as YAML only"
	fi
fi

# ---------------------------------------------------------------- Dockerfile
D=$OPS_DOCKERFILE
stages=$(awk 'toupper($1) == "FROM" { print $2, $4 }' "$D")
check "Dockerfile: multi-stage, debian:bookworm build and bookworm-slim runtime" \
	bash -c "grep -qx 'debian:bookworm build' <<<'$stages' && tail -n1 <<<'$stages' | grep -q '^debian:bookworm-slim'"
bad=$(grep -oE -- '--from=[^ ]+' "$D" | cut -d= -f2 | while read -r s; do
	awk '{ print $2 }' <<<"$stages" | grep -qx "$s" || echo "$s"; done)
check "Dockerfile: COPY --from names a stage${bad:+ (unknown: $bad)}" [ -z "$bad" ]
bad=$(awk 'toupper($1) == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' "$D" |
	while read -r p; do [ -e "$p" ] || echo "$p"; done)
check "Dockerfile: COPY sources exist in the build context (the repository)${bad:+ (missing: $bad)}" [ -z "$bad" ]
ign=$D.dockerignore
bad=$(awk 'toupper($1) == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' "$D" | sed 's#/$##' |
	while read -r p; do grep -qxE "!$p/?" "$ign" || echo "$p"; done)
check "Dockerfile: the sources it copies are not excluded by $ign${bad:+ (excluded: $bad)}" [ -z "$bad" ]
# apt_pkgs STAGE: the packages the stage installs.
apt_pkgs() {
	awk -v s="$1" 'toupper($1) == "FROM" { in_s = ($4 == s) } in_s' "$D" |
		sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep 'apt-get install' |
		sed -e 's/.*apt-get install//' -e 's/&&.*//' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u
}
build_deps=$(sed -n '/^PKGS=(/,/^)/p' scripts/deps.sh | sed -n '/# build/,/# tests/p' | grep -v '#' | tr -s ' \t' '\n' | sed '/^$/d')
m=$(missing_from "$build_deps" "$(apt_pkgs build)")
check "Dockerfile: the build stage installs deps.sh's build packages${m:+ (missing: $m)}" [ -z "$m" ]
if [ -x ispmon ]; then
	# The Debian package of every library ./ispmon needs (libc6 is in the image).
	need=$(for lib in $(readelf -d ispmon | sed -nE 's/.*NEEDED.*\[(.*)\]/\1/p'); do
		p=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|AArch64/ { print $NF; exit }')
		[ -n "$p" ] || { echo "?$lib"; continue; }
		for c in "$p" "$(readlink -f "$p")" "${p#/usr}" "/usr$p"; do
			q=$(dpkg -S "$c" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$q" ] && break
		done
		echo "${q:-?$lib}"
	done | sort -u | grep -vx libc6 | tr '\n' ' ' | sed 's/ $//')
	m=$(missing_from "$(tr ' ' '\n' <<<"$need")" "$(apt_pkgs runtime)")
	check "Dockerfile: the runtime stage installs every library ./ispmon links ($need)${m:+ (missing: $m)}" [ -z "$m" ]
else
	not_ok "./ispmon is built (make), to check the runtime libraries"
fi
check "Dockerfile: the runtime has CA certificates (https speed tests)" bash -c "grep -qx ca-certificates <<<'$(apt_pkgs runtime)'"
check "loki.yml and promtail.yml parse" bash -c "yq -e . dashboards/loki.yml >/dev/null && yq -e . dashboards/promtail.yml >/dev/null"

tap_exit
