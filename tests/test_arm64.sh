#!/usr/bin/env bash
# `make ARCH=arm64` cross-builds ispmon for arm64 (Raspberry Pi-class
# routers) with Debian's cross toolchain and multiarch arm64 libraries:
# build-arm64/ispmon is an AArch64 executable linked against the arm64
# libbpf, libcurl and libmicrohttpd, its BPF objects were compiled against the
# arm64 vmlinux.h, the native build (./ispmon, build/) is left alone, and the
# binary runs under user-mode emulation (qemu-aarch64): --version, and a bad
# flag gives one error line and exit status 2.
# The first run installs ~100 MB of packages (scripts/deps-arm64.sh: it adds
# the arm64 architecture to dpkg, which is why this is a suite of its own).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/tap.sh

case $(uname -m) in
aarch64 | arm64) echo "skip: the host is arm64, make ARCH=arm64 is the native build"; exit 77 ;;
x86_64) ;;
*) echo "skip: cross-building from $(uname -m) is not set up"; exit 77 ;;
esac
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
	echo "skip: installing the cross toolchain needs root or sudo"
	exit 77
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if out=$(bash scripts/deps-arm64.sh 2>&1); then
	ok "cross toolchain and arm64 libraries installed (scripts/deps-arm64.sh)"
else
	not_ok "scripts/deps-arm64.sh: $(tail -n 5 <<<"$out" | tr '\n' ' ')"
	exit 1
fi

native_sum() { { sha256sum ispmon 2>/dev/null; find build -type f -newer Makefile -printf '%P %T@\n' 2>/dev/null | sort; } | sha256sum; }
before=$(native_sum)
make -s ARCH=arm64 cross-clean >/dev/null 2>&1
start=$SECONDS
if make ARCH=arm64 -j"$(nproc)" >"$TMP/make.log" 2>&1; then
	ok "make ARCH=arm64 builds build-arm64/ispmon ($((SECONDS - start)) s)"
else
	not_ok "make ARCH=arm64: $(tail -n 15 "$TMP/make.log" | tr '\n' ' ' | head -c 1500)"
	exit 1
fi
cp "$TMP/make.log" tests/artifacts/arm64-make.log 2>/dev/null
B=build-arm64/ispmon
desc=$(file -b "$B")
check "file: $desc" grep -q 'ELF 64-bit LSB.*ARM aarch64' <<<"$desc"
check "readelf: machine AArch64" bash -c "readelf -h '$B' | grep -q 'Machine:.*AArch64'"
needed=$(readelf -d "$B" | sed -nE 's/.*NEEDED.*\[(.*)\]/\1/p' | tr '\n' ' ')
check "links libbpf, libcurl and libmicrohttpd ($needed)" bash -c \
	"grep -q libbpf.so <<<'$needed' && grep -q libcurl.so <<<'$needed' && grep -q libmicrohttpd.so <<<'$needed'"
check "interpreter is /lib/ld-linux-aarch64.so.1" bash -c "readelf -l '$B' | grep -q 'ld-linux-aarch64.so.1'"
check "BPF compiled for arm64: -D__TARGET_ARCH_arm64 against vmlinux/arm64" \
	grep -q -- '-D__TARGET_ARCH_arm64 .*-I vmlinux/arm64' "$TMP/make.log"
check "user code compiled by aarch64-linux-gnu-gcc with the arm64 skeleton" \
	grep -q 'aarch64-linux-gnu-gcc .*-I build-arm64 .*-c user/' "$TMP/make.log"
check "the arm64 BPF object is eBPF" bash -c "file -b build-arm64/flow.bpf.o | grep -q 'eBPF'"
check "the native build (./ispmon, build/) is untouched" [ "$(native_sum)" = "$before" ]
check "make ARCH=arm64 again has nothing to do" bash -c \
	"make -q ARCH=arm64 2>/dev/null || [ -z \"\$(make -s ARCH=arm64 2>&1)\" ]"

if command -v qemu-aarch64 >/dev/null; then
	v=$(timeout 30 qemu-aarch64 "$B" --version 2>&1)
	check "runs under qemu-aarch64: --version says '$v'" grep -qE '^ispmon [0-9]' <<<"$v"
	timeout 30 qemu-aarch64 "$B" --no-such-flag >"$TMP/out" 2>"$TMP/err"
	rc=$?
	check "under qemu-aarch64 a bad flag exits 2 ($rc) with one level=error line" \
		bash -c "[ $rc = 2 ] && [ \$(wc -l <'$TMP/err') = 1 ] && grep -q 'level=error' '$TMP/err'"
else
	not_ok "qemu-aarch64 missing (scripts/deps-arm64.sh installs qemu-user)"
fi
tap_exit
