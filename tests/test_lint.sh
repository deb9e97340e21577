#!/usr/bin/env bash
# Static checks: `make lint` (cppcheck) is clean, shell and JavaScript
# test scripts parse, the shipped Prometheus config is valid.
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
if out=$(make -s lint 2>&1); then
	ok "make lint is clean"
else
	printf '%s\n' "$out" | head -40
	not_ok "make lint is clean"
fi
for f in scripts/*.sh tests/*.sh tests/lib/*.sh .ci/run; do
	check "bash -n $f" bash -n "$f"
done
for f in tests/lib/*.js; do
	[ -e "$f" ] && check "node --check $f" node --check "$f"
done
if out=$(promtool check config dashboards/prometheus.yml 2>&1); then
	ok "promtool check config dashboards/prometheus.yml"
else
	not_ok "promtool check config dashboards/prometheus.yml: $(head -c 300 <<<"$out")"
fi
tap_exit
