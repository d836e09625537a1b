# SPDX-License-Identifier: Apache-2.0
# kbackend: one binary, BPF objects embedded as skeletons. `make V=1` shows commands.

OUT      := build
CC       ?= clang
ifeq ($(origin CC),default)
CC       := clang
endif
CLANG    ?= clang
BPFTOOL  ?= bpftool
STRIP    ?= llvm-strip
ARCH     := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

PKGS     := libbpf yaml-0.1 json-c libcares libmicrohttpd libcurl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror
CFLAGS   ?= -O2 -g
CFLAGS   += $(WARN) -std=gnu11 -D_GNU_SOURCE -MMD -MP -I$(OUT) -Iinclude -Iuser $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lelf -lz -lm
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror -MMD -MP -Ivmlinux -Iinclude

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all install deps test test-unit test-e2e fuzz fuzz-quick demo bench bench-quick bench-kube bench-bpf-cost bench-map-memory clean

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(OUT)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS     := $(patsubst bpf/%.bpf.c,$(OUT)/%.skel.h,$(BPF_SRCS))
# user/: one folder per stage (see docs/ARCHITECTURE.md, "Source layout"); main.c and util.[ch] at the top.
USER_SRCS := $(wildcard user/*.c user/*/*.c)
CORE_SRCS := $(filter-out user/main.c,$(USER_SRCS))
USER_OBJS := $(patsubst user/%.c,$(OUT)/obj/%.o,$(USER_SRCS))
CORE_OBJS := $(patsubst user/%.c,$(OUT)/obj/%.o,$(CORE_SRCS))
SAN_OBJS  := $(patsubst user/%.c,$(OUT)/san/%.o,$(CORE_SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRCS))
E2E_SRCS  := $(wildcard tests/e2e/test_*.c)
E2E_BINS  := $(patsubst tests/e2e/%.c,$(OUT)/e2e/%,$(E2E_SRCS))
# Helpers shared by every e2e test (daemon lifecycle, CLI, JSON, clients), linked into each.
E2E_LIB   := tests/e2e/e2e_daemon.c

all: $(OUT)/kbackend $(OUT)/kbackend.1 $(UNIT_BINS) $(E2E_BINS) $(OUT)/kbload

deps:
	$(Q)./scripts/deps.sh

$(OUT)/bpf/%.bpf.o: bpf/%.bpf.c Makefile | $(OUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -MT $@ -MF $(OUT)/bpf/$*.bpf.d -c $< -o $@.tmp
	$(Q)$(STRIP) -g $@.tmp -o $@ && rm -f $@.tmp

$(OUT)/%.skel.h: $(OUT)/bpf/%.bpf.o | $(OUT)
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(OUT)/obj/%.o: user/%.c Makefile $(SKELS) | $(OUT)/obj
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(CFLAGS) -c $< -o $@

$(OUT)/san/%.o: user/%.c Makefile $(SKELS) | $(OUT)/san
	$(call msg,CC-SAN,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(CFLAGS) -O1 $(SANFLAGS) -c $< -o $@

$(OUT)/kbackend: $(USER_OBJS) | $(OUT)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# The man page is generated from the binary's command table (`man -l build/kbackend.1`), so it cannot drift.
$(OUT)/kbackend.1: $(OUT)/kbackend
	$(call msg,GEN-MAN,$@)
	$(Q)$< help --man > $@

PREFIX ?= /usr/local
install: $(OUT)/kbackend $(OUT)/kbackend.1
	install -D -m 0755 $(OUT)/kbackend $(DESTDIR)$(PREFIX)/bin/kbackend
	install -D -m 0644 $(OUT)/kbackend.1 $(DESTDIR)$(PREFIX)/share/man/man1/kbackend.1
	install -D -m 0644 scripts/completion/kbackend.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kbackend

# Unit tests run under ASan and UBSan, against the same sources as the binary.
$(OUT)/tests/%: tests/unit/%.c $(SAN_OBJS) tests/unit/testutil.h Makefile | $(OUT)/tests
	$(call msg,TEST-CC,$@)
	$(Q)$(CC) $(CFLAGS) -O1 $(SANFLAGS) -Itests/unit $< $(SAN_OBJS) $(LDLIBS) -lcmocka -o $@

$(OUT)/e2e/%: tests/e2e/%.c $(E2E_LIB) $(CORE_OBJS) Makefile | $(OUT)/e2e
	$(call msg,E2E-CC,$@)
	$(Q)$(CC) $(CFLAGS) -Itests/e2e $< $(E2E_LIB) $(E2E_GROUP) $(CORE_OBJS) $(LDLIBS) -lcmocka -pthread -o $@

# A group's own environment (its topology and its one global E), linked only into that group's tests.
NODE_TESTS   := $(OUT)/e2e/test_daemon $(OUT)/e2e/test_control $(OUT)/e2e/test_state $(OUT)/e2e/test_limits \
		$(OUT)/e2e/test_crash $(OUT)/e2e/test_reads $(OUT)/e2e/test_incremental $(OUT)/e2e/test_endpoints
BRIDGE_TESTS := $(OUT)/e2e/test_bridge $(OUT)/e2e/test_bridge_unix
$(NODE_TESTS): E2E_GROUP := tests/e2e/e2e_node.c
$(NODE_TESTS): tests/e2e/e2e_node.c
$(BRIDGE_TESTS): E2E_GROUP := tests/e2e/bridge_env.c
$(BRIDGE_TESTS): tests/e2e/bridge_env.c
$(OUT)/e2e/test_kube: E2E_GROUP := tests/e2e/kube_env.c
$(OUT)/e2e/test_kube: tests/e2e/kube_env.c tests/e2e/kube_env.h

# Load tool for the demo and bench/: plain sockets and pthreads, no kbackend code.
$(OUT)/kbload: bench/kbload.c Makefile | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g $(WARN) -std=gnu11 -D_GNU_SOURCE $< -pthread -o $@

# connect4 cost against frontend-table size (bpf_stats); root only. `make bench-bpf-cost BENCH_ARGS='--tcp'`.
$(OUT)/bench/bpf_cost: bench/bpf_cost.c tests/e2e/e2e.h $(CORE_OBJS) Makefile | $(OUT)/bench
	$(call msg,BENCH-CC,$@)
	$(Q)$(CC) $(CFLAGS) -Itests/e2e $< $(CORE_OBJS) $(LDLIBS) -o $@

bench-bpf-cost: $(OUT)/bench/bpf_cost
	$(Q)$(OUT)/bench/bpf_cost $(BENCH_ARGS)

# Each map's memlock on an empty daemon; root only. `make bench-map-memory BENCH_ARGS='--max-slots 1048576'`.
bench-map-memory: $(OUT)/kbackend
	$(Q)OUT=$(OUT) ./bench/map-memory.sh $(BENCH_ARGS)

# The suite (docs/BENCHMARKS.md): kbackend vs direct, nftables DNAT, HAProxy, socat, plus scale; root only.
bench: $(OUT)/kbackend $(OUT)/kbload $(OUT)/bench/bpf_cost
	$(Q)OUT=$(OUT) ./bench/run.sh

# The Kubernetes source at 10,000 Backends (bench/kube-scale.sh); root only.
bench-kube: $(OUT)/kbackend $(OUT)/kbload
	$(Q)OUT=$(OUT) ./bench/kube-scale.sh

bench-quick: $(OUT)/kbackend $(OUT)/kbload $(OUT)/bench/bpf_cost
	$(Q)OUT=$(OUT) ./bench/run.sh --quick

# libFuzzer target for the parser and validator.
$(OUT)/fuzz_manifest: fuzz/fuzz_manifest.c $(CORE_SRCS) Makefile $(SKELS) | $(OUT)
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) $(filter-out -MMD -MP,$(CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined $< $(CORE_SRCS) $(LDLIBS) -o $@

FUZZ_SECONDS ?= 60
fuzz: $(OUT)/fuzz_manifest
	$(Q)./scripts/run-fuzz.sh $(OUT)/fuzz_manifest $(FUZZ_SECONDS)

fuzz-quick: $(OUT)/fuzz_manifest
	$(Q)./scripts/run-fuzz.sh $(OUT)/fuzz_manifest 15

test: all $(OUT)/fuzz_manifest
	$(Q)./tests/run.sh

test-unit: $(UNIT_BINS)
	$(Q)KB_ONLY=unit ./tests/run.sh

demo: all
	$(Q)./scripts/demo.sh

$(OUT) $(OUT)/bpf $(OUT)/obj $(OUT)/san $(OUT)/tests $(OUT)/e2e $(OUT)/bench:
	$(Q)mkdir -p $@

clean:
	$(call msg,CLEAN,$(OUT))
	$(Q)rm -rf $(OUT)

-include $(wildcard $(OUT)/*/*.d $(OUT)/*/*/*.d)
