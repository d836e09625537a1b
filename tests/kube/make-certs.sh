#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Makes a CA and, signed by it, the test API server's certificate (SAN IP:127.0.0.1 and
# localhost) and a client certificate (CN kbackend-client), with the openssl CLI, into DIR:
# ca.pem ca.key server.pem server.key client.pem client.key.
set -eu
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "make-certs.sh: failed: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kbackend-test-ca \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	-keyout ca.key -out ca.pem
for who in server client; do
	q openssl req -newkey rsa:2048 -nodes -subj "/CN=kbackend-$who" -keyout "$who.key" -out "$who.csr"
	if [ "$who" = server ]; then
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$who.ext"
	else
		printf 'extendedKeyUsage=clientAuth\n' >"$who.ext"
	fi
	q openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-extfile "$who.ext" -out "$who.pem"
	rm -f "$who.csr" "$who.ext"
done
rm -f ca.srl
chmod 600 ./*.key
