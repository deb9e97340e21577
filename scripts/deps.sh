#!/usr/bin/env bash
# Install every build and test dependency of ispmon from Debian packages.
# Idempotent: only missing packages are installed, and apt-get update runs
# only when something is missing. Needs root (or sudo).
set -euo pipefail

PKGS=(
	# build
	make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
	libcurl4-openssl-dev libmicrohttpd-dev
	# --web-config: certificate checks and digests (GnuTLS, as libmicrohttpd), bcrypt
	libgnutls28-dev libcrypt-dev
	# tests: testbed, traffic, metric checks
	iproute2 nftables ethtool iperf3 curl iputils-ping procps psmisc
	prometheus openssl file
	# tests/test_kprobe_vm.sh: Debian's 6.1 kernel under qemu with a busybox initramfs
	qemu-system-x86 busybox-static cpio
	# make bench (JSON::PP reads bpftool's output)
	perl
	# operations stack: rules/alerts (promtool, amtool), dashboards and compose checks
	prometheus-alertmanager jq yq docker-compose
	# status page in a real browser (tests/test_status_page.sh)
	chromium fonts-dejavu-core
	# the page at a phone's width, the demo's screenshots (tests/lib/browser.js)
	nodejs
	# lint
	cppcheck
	# tests: sanitizers, valgrind, libFuzzer (clang -fsanitize=fuzzer)
	valgrind libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages such as prometheus ship a service; never start it from here, the
# tests start what they need themselves.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
