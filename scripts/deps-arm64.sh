#!/usr/bin/env bash
# Install what `make ARCH=arm64` needs on a Debian 12 amd64 machine: the cross
# compiler and the arm64 builds of ispmon's libraries (Debian multiarch).
#
# This changes the machine's dpkg configuration (it adds the arm64
# architecture), so it is NOT part of scripts/deps.sh; the `arm64` test suite
# calls it. Idempotent: only missing packages are installed, apt-get update
# runs only when something is missing. Needs root (or sudo). About 100 MB of
# packages the first time.
set -euo pipefail

# The native build's tools (clang, bpftool for the BPF side) come from deps.sh.
bash "$(dirname "$0")/deps.sh"

PKGS=(
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross file
	# runs the result under user-mode emulation (ispmon --version, bad flags)
	qemu-user
	libbpf-dev:arm64 libelf-dev:arm64 zlib1g-dev:arm64
	libcurl4-openssl-dev:arm64 libmicrohttpd-dev:arm64 libgnutls28-dev:arm64 libcrypt-dev:arm64
)

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

added=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "deps-arm64: adding the arm64 architecture to dpkg" >&2
	$SUDO dpkg --add-architecture arm64
	added=1
fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && [ "$added" -eq 0 ] && exit 0
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "deps-arm64: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Multi-Arch: same packages need the amd64 and arm64 copies at one version:
# apt may upgrade an installed amd64 -dev package to match, never remove one.
$SUDO apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
