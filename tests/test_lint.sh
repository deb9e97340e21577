#!/usr/bin/env bash
# Static analysis stays clean: `make lint` (cppcheck) as a test.
cd "$(dirname "$0")/.."
. tests/lib/tap.sh
if out=$(make -s lint 2>&1); then
	ok "make lint is clean"
else
	printf '%s\n' "$out" | head -40
	not_ok "make lint is clean"
fi
tap_exit
