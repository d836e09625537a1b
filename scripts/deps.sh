#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Install every Debian package that the build, the tests, the demo and the
# benchmarks need. Idempotent, and quiet when nothing is missing.
# groff-base (groff) and systemd (systemd-analyze) serve the man page and
# unit file checks; installing systemd does not make it init (that is
# systemd-sysv), so it is safe in a container too.
# qemu-system-x86, busybox-static and xz-utils serve scripts/vmtest.sh, which boots
# Debian's own kernel packages (fetched with apt-get download) to run the e2e suite on them.
set -eu
PKGS="clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make
libyaml-dev libc-ares-dev libjson-c-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcmocka-dev libclang-rt-14-dev
iproute2 dnsmasq-base socat nftables haproxy perl procps python3 openssl
groff-base systemd
qemu-system-x86 busybox-static xz-utils"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# kubectl drives the Kubernetes-source tests: Debian's kubernetes-client, unless a kubectl is
# installed already (another package's /usr/bin/kubectl would make dpkg refuse to overwrite it).
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "kbackend: missing packages:$missing (run 'make deps' as root)" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
