#!/usr/bin/env bash
# Runs every test suite and prints "N passed, N failed" as the last line.
# Each suite prints "ok - ..." / "not ok - ..." per check; a suite that
# exits non-zero without a "not ok" line counts as one failure, exit 77
# means skipped. TESTS="cli e2e" runs a subset (names below).
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A SUITES=(
	[unit-user]="build/tests/test_user"
	[unit-bpf]="build/tests/test_flow"
	[unit-rtt]="build/tests/test_rtt"
	[fuzz-tc]="build/tests/fuzz_tc"
	[unit-speedtest]="build/tests/test_speedtest"
	[speedtest]="bash tests/test_speedtest.sh"
	[e2e-speedtest]="bash tests/test_e2e_speedtest.sh"
	[reattach]="bash tests/test_reattach.sh"
	[devices]="bash tests/test_devices.sh"
	[e2e-capacity]="bash tests/test_e2e_capacity.sh"
	[cli]="bash tests/test_cli.sh"
	[netlab]="bash tests/test_netlab.sh"
	[e2e]="bash tests/test_e2e_counters.sh"
	[e2e-rtt]="bash tests/test_e2e_rtt.sh"
	[e2e-ping]="bash tests/test_e2e_ping.sh"
	[e2e-tcp]="bash tests/test_e2e_tcp.sh"
	[vm-kprobe]="bash tests/test_kprobe_vm.sh"
	[lint]="bash tests/test_lint.sh"
	[ops]="bash tests/test_ops.sh"
	[e2e-ops]="bash tests/test_e2e_ops.sh"
	[arm64]="bash tests/test_arm64.sh"
	[churn]="build/tests/test_churn"
	[stress]="bash tests/test_stress.sh"
	[sanitize]="bash tests/test_sanitize.sh"
	[fuzz-user]="bash tests/test_fuzz_user.sh"
	[unit-security]="build/tests/test_security"
	[web]="bash tests/test_web.sh"
	[unit-status]="build/tests/test_status"
	[status]="bash tests/test_status_page.sh"
	[demo]="bash tests/test_demo.sh"
)
ORDER=(unit-user unit-status unit-bpf unit-rtt unit-speedtest unit-security fuzz-tc churn lint cli web netlab e2e e2e-rtt e2e-ping e2e-tcp speedtest e2e-speedtest reattach devices e2e-capacity status demo ops e2e-ops arm64 vm-kprobe stress sanitize fuzz-user)
SUITE_TIMEOUT=${SUITE_TIMEOUT:-900}

selected=(${TESTS:-${ORDER[@]}})
mkdir -p tests/artifacts
passed=0 failed=0 skipped=0

for name in "${selected[@]}"; do
	cmd=${SUITES[$name]:-}
	if [ -z "$cmd" ]; then
		echo "run.sh: unknown suite '$name' (have: ${ORDER[*]})" >&2
		failed=$((failed + 1))
		continue
	fi
	log=tests/artifacts/$name.log
	echo "=== $name: $cmd"
	start=$SECONDS
	timeout --kill-after=30 "$SUITE_TIMEOUT" $cmd 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	p=$(grep -c '^ok - ' "$log")
	f=$(grep -c '^not ok - ' "$log")
	if [ "$rc" -eq 77 ]; then
		echo "=== $name: skipped ($(tail -n1 "$log"))"
		skipped=$((skipped + 1))
		continue
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name exited with status $rc"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	echo "=== $name: $p passed, $f failed, $((SECONDS - start)) s"
done

# Skipped suites are named above and counted here; the last line is the
# contract CI reads.
echo "$skipped suites skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
