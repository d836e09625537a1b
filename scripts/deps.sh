#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Install every Debian package that the build, the tests, the demo and the
# benchmarks need. Idempotent, and quiet when nothing is missing.
# groff-base (groff) and systemd (systemd-analyze) serve the man page and
# unit file checks; installing systemd does not make it init (that is
# systemd-sysv), so it is safe in a container too.
# qemu-system-x86, busybox-static and xz-utils serve scripts/vmtest.sh, which boots
# Debian's own kernel packages (fetched with apt-get download) to run the e2e suite on them.
# python3 (Debian's, /usr/bin/python3), openssl and curl serve tests/kube/ (the test API
# server, its CA, raw API requests); kubectl from kubernetes-client is the real client held
# against it. Where another package already owns /usr/bin/kubectl (Google Cloud SDK's
# `kubectl` conflicts with kubernetes-client), Debian's kubectl is unpacked, not installed,
# into $KUBECTL_DIR, where tests/kube/ looks first.
set -eu
KUBECTL_DIR=/var/cache/kbackend-kubectl
PKGS="clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make
libyaml-dev libc-ares-dev libjson-c-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcmocka-dev libclang-rt-14-dev
iproute2 dnsmasq-base socat nftables haproxy perl procps
groff-base systemd
qemu-system-x86 busybox-static xz-utils
python3 openssl curl"
owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
if [ -z "$owner" ] || [ "$owner" = kubernetes-client ]; then
	PKGS="$PKGS kubernetes-client"
	unpack_kubectl=""
elif [ -x "$KUBECTL_DIR/usr/bin/kubectl" ]; then
	unpack_kubectl=""
else
	unpack_kubectl=1
fi
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && [ -z "$unpack_kubectl" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "kbackend: missing packages:$missing (run 'make deps' as root)" >&2
	exit 1
fi
[ -z "$missing" ] || echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
[ -z "$missing" ] || apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ -n "$unpack_kubectl" ]; then
	echo "unpacking kubernetes-client into $KUBECTL_DIR (/usr/bin/kubectl belongs to $owner)"
	tmp=$(mktemp -d)
	chmod 755 "$tmp"   # apt-get download fetches as _apt
	(cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null)
	rm -rf "$KUBECTL_DIR.new"
	dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$KUBECTL_DIR.new"
	rm -rf "$tmp" "$KUBECTL_DIR"
	mv "$KUBECTL_DIR.new" "$KUBECTL_DIR"
fi
