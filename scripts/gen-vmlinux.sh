#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Regenerate vmlinux/vmlinux.h from a kernel's BTF. The result is committed so
# that the build never depends on the build host's kernel.
set -eu
btf=${1:-/sys/kernel/btf/vmlinux}
out=$(dirname "$0")/../vmlinux/vmlinux.h
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out from $btf ($(wc -l < "$out") lines)"
