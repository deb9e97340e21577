# ispmon — build, run and test. See README.md.
#
#   make          build ./ispmon
#   make run      install deps, build, run on this machine (root; sudo if not)
#   make test     install deps, build, run the whole test suite
#   make lint     cppcheck on the userspace and test code
#   make demo     a simulated household watched by ispmon and Prometheus (root)
#   make clean

OUT        := build
HOST_ARCH  := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
ARCH       ?= $(HOST_ARCH)
VERSION    := 0.1.0$(shell git rev-parse --short HEAD 2>/dev/null | sed 's/^/+g/')

CLANG      ?= clang
BPFTOOL    ?= bpftool
CC         ?= gcc
PKG_CONFIG ?= pkg-config

BPF_CFLAGS := -target bpf -g -O2 -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
              -I vmlinux/$(ARCH) -I headers -I bpf

WARN       := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 -D_GNU_SOURCE $(WARN) -I $(OUT) -I headers -I user \
              -DISPMON_VERSION='"$(VERSION)"'
LIBS       := libbpf libcurl libmicrohttpd gnutls libcrypt
LDLIBS     += $(shell $(PKG_CONFIG) --libs $(LIBS) 2>/dev/null || echo -lbpf -lcurl -lmicrohttpd -lgnutls -lcrypt) \
              -lelf -lz -lpthread -lm

SAN_FLAGS  := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined

BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(OUT)/%.bpf.o,$(BPF_SRCS))
SKELS      := $(patsubst bpf/%.bpf.c,$(OUT)/%.skel.h,$(BPF_SRCS))
USER_SRCS  := $(wildcard user/*.c)
USER_OBJS  := $(patsubst user/%.c,$(OUT)/user/%.o,$(USER_SRCS))
# Modules unit-tested without BPF or network: everything but main and the
# parts that need a kernel.
UNIT_MODS  := config log metrics netif report rtt devices ping speedtest capacity tcpsock \
              history outages status status_html status_json
UNIT_SRCS  := $(addprefix user/,$(addsuffix .c,$(UNIT_MODS)))

.PHONY: all run test unit lint clean deps tools bench demo
.DELETE_ON_ERROR:
.SECONDARY: $(BPF_OBJS)

all: ispmon

deps:
	@bash scripts/deps.sh

$(OUT) $(OUT)/user $(OUT)/tests:
	@mkdir -p $@

$(OUT)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h headers/*.h) vmlinux/$(ARCH)/vmlinux.h | $(OUT)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUT)/%.skel.h: $(OUT)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(OUT)/user/%.o: user/%.c $(wildcard user/*.h headers/*.h) $(SKELS) | $(OUT)/user
	$(CC) $(CFLAGS) -c $< -o $@

ispmon: $(USER_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# --- tests -----------------------------------------------------------------

$(OUT)/tests/test_flow: tests/unit/test_flow.c tests/unit/pkt.h tests/unit/result.h $(SKELS) headers/flow.h | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< -o $@ $(LDLIBS)

$(OUT)/tests/test_rtt: tests/unit/test_rtt.c tests/unit/pkt.h tests/unit/result.h $(SKELS) headers/flow.h | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< -o $@ $(LDLIBS)

# Fuzzing runs long: built without sanitizers (the BPF side is what is fuzzed).
$(OUT)/tests/fuzz_tc: tests/unit/fuzz_tc.c tests/unit/pkt.h $(SKELS) headers/flow.h | $(OUT)/tests
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)

$(OUT)/tests/test_speedtest: tests/unit/test_speedtest.c tests/unit/tap.h user/speedtest.c user/metrics.c user/log.c $(wildcard user/*.h) | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< user/speedtest.c user/metrics.c user/log.c -o $@ $(LDLIBS)

$(OUT)/tests/test_user: tests/unit/test_user.c tests/unit/tap.h $(UNIT_SRCS) $(wildcard user/*.h) $(SKELS) | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(UNIT_SRCS) -o $@ $(LDLIBS)

$(OUT)/tests/test_status: tests/unit/test_status.c tests/unit/tap.h $(UNIT_SRCS) $(wildcard user/*.h) | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(UNIT_SRCS) -o $@ $(LDLIBS)

tools:
	@$(MAKE) -s -C tests/tools

# --- benchmarks (make bench: prints a table, writes docs/benchmarks.md) -----

$(OUT)/bench_empty.bpf.o: tests/bench/empty.bpf.c | $(OUT)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUT)/bench_empty.skel.h: $(OUT)/bench_empty.bpf.o
	$(BPFTOOL) gen skeleton $< name bench_empty_bpf > $@

$(OUT)/tests/bench_tc: tests/bench/bench_tc.c $(SKELS) $(OUT)/bench_empty.skel.h headers/flow.h | $(OUT)/tests
	$(CC) $(CFLAGS) -O2 $< -o $@ $(LDLIBS)

bench: deps
	@$(MAKE) -s all tools $(OUT)/tests/bench_tc
	@bash tests/bench/bench.sh

unit: $(OUT)/tests/test_flow $(OUT)/tests/test_rtt $(OUT)/tests/test_user $(OUT)/tests/test_speedtest $(OUT)/tests/fuzz_tc \
      $(OUT)/tests/test_status

test: deps
	@$(MAKE) -s all unit tools
	@bash tests/run.sh

run: deps
	@$(MAKE) -s all
	@if [ "$$(id -u)" -eq 0 ]; then exec ./ispmon $(ARGS); \
	elif command -v sudo >/dev/null; then exec sudo ./ispmon $(ARGS); \
	else echo "make run: ispmon needs root (CAP_BPF, CAP_NET_ADMIN) and sudo is missing" >&2; exit 1; fi

# A simulated household in network namespaces, ispmon and Prometheus
# watching it (scripts/demo.sh; DEMO_SECONDS=N stops after N s).
demo: deps
	@$(MAKE) -s all tools
	@bash scripts/demo.sh

# Without -I $(OUT): the generated skeletons embed the BPF objects as
# string literals (sock.skel.h is 40k lines) and cost cppcheck minutes
# while holding nothing to check.
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
		--inline-suppr --std=c11 -D__linux__ -I headers -I user \
		'-DLIBBPF_OPTS(TYPE,NAME,...)=struct TYPE NAME = {.sz = sizeof(struct TYPE), __VA_ARGS__}' \
		--suppress=missingIncludeSystem --suppress=unusedFunction \
		user tests/unit tests/tools

clean:
	rm -rf $(OUT) ispmon
	@$(MAKE) -s -C tests/tools clean 2>/dev/null || true

# === cross builds: make ARCH=arm64 ==========================================
# Owned by the operations stack (issue 8); the rest of this file is untouched
# by it. On an amd64 host `make ARCH=arm64` builds build-arm64/ispmon for
# arm64 (Raspberry Pi-class routers) with Debian's cross toolchain and the
# arm64 libraries from multiarch (scripts/deps-arm64.sh installs them; it is
# kept out of `make deps` because it changes dpkg's architectures). The BPF
# objects are compiled against vmlinux/arm64/vmlinux.h with
# -D__TARGET_ARCH_arm64 (BPF_CFLAGS follows ARCH); nothing is written to build/
# or ./ispmon, so the native build stays as it is.
#   make ARCH=arm64              build-arm64/ispmon
#   make ARCH=arm64 cross-deps   install the toolchain and libraries (root)
#   make ARCH=arm64 cross-clean  remove build-arm64/
ifneq ($(ARCH),$(HOST_ARCH))
CROSS_TRIPLE_arm64 := aarch64-linux-gnu
CROSS_TRIPLE := $(CROSS_TRIPLE_$(ARCH))
ifeq ($(CROSS_TRIPLE),)
$(error ARCH=$(ARCH): cross builds are set up for ARCH=arm64 only)
endif
XOUT       := build-$(ARCH)
XCC        := $(CROSS_TRIPLE)-gcc
XPKG       := PKG_CONFIG_LIBDIR=/usr/lib/$(CROSS_TRIPLE)/pkgconfig:/usr/share/pkgconfig $(PKG_CONFIG)
XCFLAGS     = $(patsubst $(OUT),$(XOUT),$(CFLAGS))
XLDLIBS     = $(shell $(XPKG) --libs $(LIBS)) -lelf -lz -lpthread -lm
XBPF_OBJS  := $(patsubst bpf/%.bpf.c,$(XOUT)/%.bpf.o,$(BPF_SRCS))
XSKELS     := $(patsubst bpf/%.bpf.c,$(XOUT)/%.skel.h,$(BPF_SRCS))
XUSER_OBJS := $(patsubst user/%.c,$(XOUT)/user/%.o,$(USER_SRCS))

.DEFAULT_GOAL := cross
.PHONY: cross cross-deps cross-clean
.SECONDARY: $(XBPF_OBJS) $(XSKELS)

cross: $(XOUT)/ispmon

cross-deps:
	@bash scripts/deps-arm64.sh

cross-clean:
	rm -rf $(XOUT)

$(XOUT) $(XOUT)/user:
	@mkdir -p $@

$(XOUT)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h headers/*.h) vmlinux/$(ARCH)/vmlinux.h | $(XOUT)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(XOUT)/%.skel.h: $(XOUT)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(XOUT)/user/%.o: user/%.c $(wildcard user/*.h headers/*.h) $(XSKELS) | $(XOUT)/user
	$(XCC) $(XCFLAGS) -c $< -o $@

$(XOUT)/ispmon: $(XUSER_OBJS)
	$(XCC) $(XCFLAGS) $(LDFLAGS) $^ -o $@ $(XLDLIBS)
endif
# === end of cross builds =====================================================

# === stress, sanitizer and fuzz builds ======================================
# (tests/test_stress.sh, tests/test_sanitize.sh, tests/test_fuzz_user.sh and
# the churn unit test). Only additions below this line.
#
#   build/asan/ispmon      ispmon from the same sources with ASan + UBSan
#   build/fuzz/fuzz_*      libFuzzer harnesses of tests/fuzz/ (clang)
#   build/tests/test_churn flow-table churn past capacity (BPF_PROG_TEST_RUN)
#   build/tests/httpload, build/tests/lanflood   load and frame injectors

ASAN_OUT        := $(OUT)/asan
ASAN_USER_OBJS  := $(patsubst user/%.c,$(ASAN_OUT)/user/%.o,$(USER_SRCS))
FUZZ_OUT        := $(OUT)/fuzz
FUZZ_CC         ?= clang
# No -Werror here: clang warns where gcc does not, and these builds must not
# break on a warning in code under edit; the gcc build stays the judge.
FUZZ_CFLAGS     := -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wno-unused-parameter \
                   -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                   -fno-omit-frame-pointer -I $(OUT) -I headers -I user \
                   -DISPMON_VERSION='"$(VERSION)"'
# What the parsers under test need (no main; devices.c and rtt.c for the
# leases file).
FUZZ_USER_SRCS  := user/config.c user/log.c user/metrics.c user/ping.c user/speedtest.c user/netif.c user/webconfig.c \
                   user/devices.c user/rtt.c
FUZZ_SRCS       := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS         := $(patsubst tests/fuzz/%.c,$(FUZZ_OUT)/%,$(FUZZ_SRCS))

.PHONY: asan fuzzers stress-tools

$(ASAN_OUT)/user $(FUZZ_OUT):
	@mkdir -p $@

$(ASAN_OUT)/user/%.o: user/%.c $(wildcard user/*.h headers/*.h) $(SKELS) | $(ASAN_OUT)/user
	$(CC) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(ASAN_OUT)/ispmon: $(ASAN_USER_OBJS)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

asan: $(ASAN_OUT)/ispmon

$(FUZZ_OUT)/fuzz_http: tests/fuzz/fuzz_http.c user/http.c $(FUZZ_USER_SRCS) $(wildcard user/*.h) | $(FUZZ_OUT)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< user/http.c $(FUZZ_USER_SRCS) -o $@ $(LDLIBS)

$(FUZZ_OUT)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_USER_SRCS) $(wildcard user/*.h) | $(FUZZ_OUT)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_USER_SRCS) -o $@ $(LDLIBS)

fuzzers: $(FUZZERS)

CHURN_SRCS      := user/rtt.c user/devices.c user/metrics.c user/log.c

$(OUT)/tests/test_churn: tests/unit/test_churn.c tests/unit/pkt.h $(CHURN_SRCS) $(wildcard user/*.h) $(SKELS) headers/flow.h | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< $(CHURN_SRCS) -o $@ $(LDLIBS)

$(OUT)/tests/httpload: tests/tools/httpload.c | $(OUT)/tests
	$(CC) $(CFLAGS) $< -o $@ -lpthread -lm

$(OUT)/tests/lanflood: tests/tools/lanflood.c | $(OUT)/tests
	$(CC) $(CFLAGS) $< -o $@

stress-tools: $(OUT)/tests/httpload $(OUT)/tests/lanflood

# `make test` builds the churn test with the other unit tests.
unit: $(OUT)/tests/test_churn
# === end of stress, sanitizer and fuzz builds ===============================

# === security (issue 9): capabilities and the web config ====================
$(OUT)/tests/test_security: tests/unit/test_security.c tests/unit/tap.h user/webconfig.c user/privs.c $(wildcard user/*.h) | $(OUT)/tests
	$(CC) $(CFLAGS) $(SAN_FLAGS) $< user/webconfig.c user/privs.c -o $@ $(LDLIBS)

unit: $(OUT)/tests/test_security
# === end of security ==========================================================
