# opslib.sh - what tests/test_ops.sh (static) and tests/test_e2e_ops.sh (live)
# both need to know about the operations stack in dashboards/: where its files
# are, and every PromQL expression in them. Source it from the repository's
# top directory; needs jq and yq (Debian's, the jq wrapper for YAML).

OPS_DASHBOARDS=(dashboards/grafana/dashboards/*.json)
OPS_RULES=(dashboards/rules/*.rules.yml)
OPS_RULE_TESTS=(dashboards/rules/tests/*.yml)
OPS_DATASOURCES=dashboards/grafana/provisioning/datasources/ispmon.yml
OPS_PROVIDERS=dashboards/grafana/provisioning/dashboards/ispmon.yml
OPS_COMPOSE=dashboards/docker-compose.yml
OPS_DOCKERFILE=dashboards/Dockerfile

# Metrics being added to ispmon by issue 5 (passive capacity, plan rates,
# bufferbloat grade). Dashboards and rules already use them; until ispmon
# exports them (or while it has no evidence for them yet) expressions that
# need them may return nothing. Every other expression must return data.
OPS_PENDING=(
	ispmon_passive_capacity_bytes_per_second
	ispmon_passive_capacity_saturated_intervals
	ispmon_plan_bytes_per_second
	ispmon_bufferbloat_seconds
	ispmon_bufferbloat_grade_info
)

# The jq function that replaces Grafana's variables in an expression:
# $__rate_interval and $__interval by $ri, $__range by $range, $__range_s by
# $range_s, and each template variable by its "All" value.
OPS_JQ_SUBST='
def ops_vars: [(.templating.list // [])[] | {name, value: (.allValue // ".+")}];
def ops_subst($vars):
  gsub("\\$__rate_interval"; $ri) | gsub("\\$__interval"; $ri)
  | gsub("\\$__range_s"; $range_s) | gsub("\\$__range"; $range)
  | reduce $vars[] as $v (.; gsub("\\$\\{?" + $v.name + "\\}?"; $v.value));
'

# ops_panel_exprs RATE_INTERVAL RANGE RANGE_SECONDS [DASHBOARD...]: every
# Prometheus target of every panel, one line each:
#   dashboard uid <TAB> panel title <TAB> refId <TAB> expression
# (variables replaced; newlines in expressions become spaces).
ops_panel_exprs() {
	local ri=$1 range=$2 range_s=$3
	shift 3
	[ $# -gt 0 ] || set -- "${OPS_DASHBOARDS[@]}"
	jq -r --arg ri "$ri" --arg range "$range" --arg range_s "$range_s" "$OPS_JQ_SUBST"'
		ops_vars as $vars | .uid as $uid
		| .. | objects | select(has("targets") and .type != "row") | . as $p
		| .targets[]
		| select((.datasource.type // $p.datasource.type) == "prometheus")
		| [$uid, $p.title, .refId, (.expr | gsub("\\s+"; " ") | ops_subst($vars))] | @tsv' "$@"
}

# ops_other_exprs RATE_INTERVAL RANGE RANGE_SECONDS: the dashboards' other
# PromQL: annotation queries and the selectors inside the variables'
# label_values(SELECTOR, LABEL) queries, as uid <TAB> kind:name <TAB> expr.
ops_other_exprs() {
	local ri=$1 range=$2 range_s=$3
	jq -r --arg ri "$ri" --arg range "$range" --arg range_s "$range_s" "$OPS_JQ_SUBST"'
		ops_vars as $vars | .uid as $uid
		| ((.annotations.list // [])[] | select(.datasource.type == "prometheus" and (.expr // "") != "")
		   | [$uid, "annotation:" + .name, (.expr | ops_subst($vars))]),
		  ((.templating.list // [])[] | select(.type == "query")
		   | (.query | if type == "object" then .query else . end) as $q
		   | ($q | capture("^label_values\\((?<sel>.*),\\s*[a-zA-Z_]+\\)$").sel // $q) as $sel
		   | [$uid, "variable:" + .name, ($sel | ops_subst($vars))])
		| @tsv' "${OPS_DASHBOARDS[@]}"
}

# ops_records: name <TAB> expression of every recording rule.
ops_records() {
	yq -r '.groups[].rules[] | select(.record) | [.record, (.expr | gsub("\\s+"; " "))] | @tsv' "${OPS_RULES[@]}"
}

# ops_alerts: name <TAB> expression of every alerting rule.
ops_alerts() {
	yq -r '.groups[].rules[] | select(.alert) | [.alert, (.expr | gsub("\\s+"; " "))] | @tsv' "${OPS_RULES[@]}"
}

# ops_metric_names: the metric names (ispmon_*, ispmon:*, up, scrape_*,
# ALERTS) an expression on stdin mentions, one per line.
ops_metric_names() {
	grep -oE '\b(ispmon[_:][a-zA-Z0-9_:]+|up|scrape_[a-z_]+|ALERTS)\b' | sort -u
}

# ops_expand_names: the ispmon_* names behind the names on stdin, following
# recording rules (ispmon:*) to the metrics they are computed from.
ops_expand_names() {
	local -A seen=()
	local -a queue
	local n e
	mapfile -t queue
	declare -A rec=()
	while IFS=$'\t' read -r n e; do rec[$n]=$e; done < <(ops_records)
	while [ ${#queue[@]} -gt 0 ]; do
		n=${queue[0]}
		queue=("${queue[@]:1}")
		[ -n "$n" ] && [ -z "${seen[$n]:-}" ] || continue
		seen[$n]=1
		if [ -n "${rec[$n]:-}" ]; then
			mapfile -t -O "${#queue[@]}" queue < <(ops_metric_names <<<"${rec[$n]}")
		else
			echo "$n"
		fi
	done | sort -u
}
