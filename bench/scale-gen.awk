# SPDX-License-Identifier: Apache-2.0
# The scale benches' manifest (awk -v N=... -f bench/scale-gen.awk): ceil(N/64) Gateways (one
# 198.19.x.y address, 64 TCP listeners each), N TCPRoutes (one per listener) and N Backends of
# 10 endpoints (5 in 198.51.100.0/24, 5 in 203.0.113.0/24, port 8080), all in namespace bench.
# With -v LABELS=1 every Backend also carries the labels app=be-I and shard=I%10 (what `get -l` selects on).
# Chunks of a bigger state (bench/change-scale.sh): -v OFF=K numbers Backends and routes from K and
# Gateways from ceil(K/64) (K a multiple of 64 keeps their addresses apart); -v E=M gives each Backend
# M endpoints (1..10) instead of 10. Without them the output is what it always was.
BEGIN {
	G = int((N + 63) / 64)
	GO = int((OFF + 63) / 64)
	if (E == "") E = 10
	for (g = 0; g < G; g++) {
		printf "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw-%d\n  namespace: bench\n", GO + g
		printf "spec:\n  gatewayClassName: eg\n  addresses:\n    - type: IPAddress\n      value: 198.19.%d.%d\n  listeners:\n",
			int((GO + g) / 250), (GO + g) % 250 + 1
		for (l = 0; l < 64 && g * 64 + l < N; l++)
			printf "    - name: l%d\n      protocol: TCP\n      port: %d\n", l, 10000 + l
		print "---"
	}
	for (k = 0; k < N; k++) {
		i = OFF + k
		printf "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata:\n  name: r-%d\n  namespace: bench\n", i
		printf "spec:\n  parentRefs:\n    - name: gw-%d\n      sectionName: l%d\n  rules:\n    - backendRefs:\n", GO + int(k / 64), k % 64
		printf "        - group: gateway.envoyproxy.io\n          kind: Backend\n          name: be-%d\n---\n", i
		printf "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: be-%d\n  namespace: bench\n", i
		if (LABELS)
			printf "  labels:\n    app: be-%d\n    shard: \"%d\"\n", i, i % 10
		printf "spec:\n  endpoints:\n"
		for (j = 0; j < E; j++) {
			if (j < 5) a = sprintf("198.51.100.%d", (i * 5 + j) % 250 + 2)
			else a = sprintf("203.0.113.%d", (i * 5 + j - 5) % 250 + 2)
			printf "    - ip:\n        address: %s\n        port: 8080\n", a
		}
		if (k < N - 1) print "---"
	}
}
