# Sourceable: TAP-like result lines that tests/run.sh counts.
#   ok "description"          a passed check
#   not_ok "description"      a failed check
#   check "description" CMD   runs CMD; ok if it succeeds
#   near A B TOL              true if |A-B| <= TOL (floats)
#   rel_near A B FRAC         true if |A-B| <= FRAC*|B|
TAP_FAILED=0

ok() { echo "ok - $*"; }
not_ok() {
	echo "not ok - $*"
	TAP_FAILED=$((TAP_FAILED + 1))
}
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
rel_near() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= f * m) }'; }

# Value of a sample in Prometheus text: metric_value FILE 'name{labels}'
metric_value() {
	awk -v k="$2" '$1 == k { print $2; found = 1; exit } END { if (!found) print "" }' "$1"
}

# quiet_moment PAUSE CTRS_FN OUT SCRAPE_CMD...: one scrape (SCRAPE_CMD's
# output into OUT) inside a quiet moment: CTRS_FN's counters read before
# it, PAUSE seconds (more than an ispmon interval) earlier, equal those read
# after it, so the page has counted everything they have. The counters in
# QUIET; up to 20 tries, non-zero without a quiet moment or a scrape.
quiet_moment() {
	local pause=$1 ctrs=$2 out=$3 a b
	shift 3
	for _ in $(seq 1 20); do
		a=$($ctrs)
		sleep "$pause"
		"$@" >"$out" || return 1
		b=$($ctrs)
		[ "$a" = "$b" ] && { QUIET=$a; return 0; }
	done
	return 1
}

# jqe FILTER [JQ ARGS / FILES...]: jq's every result is true, and it has
# one at least. (jq -e alone exits 0 on empty input: a page or reply that
# never came would pass.)
jqe() {
	local out
	out=$(jq "$@" 2>/dev/null) && [ -n "$out" ] && ! grep -qvx true <<<"$out"
}
export -f jqe

# Exit status for the end of a test script.
tap_exit() { [ "$TAP_FAILED" -eq 0 ]; }
