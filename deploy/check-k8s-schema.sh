#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Optional: check deploy/kubernetes/*.yaml against the Kubernetes OpenAPI schemas bundled in the npm
# package kubernetes-models (offline once installed: types, required fields, enums; not unknown keys).
# Not part of `make test`, which checks what kbackend relies on (tests/unit/test_deploy.c) with libyaml only.
set -eu
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/kbackend-k8s-schema.XXXXXX)
trap 'rm -rf "$dir"' EXIT
npm install --prefix "$dir" --no-audit --no-fund --silent kubernetes-models@5.1.0 yaml@2 >/dev/null
# The script sits next to its node_modules, so its imports resolve there.
cat > "$dir/check.mjs" <<'JS'
import fs from "node:fs";
import YAML from "yaml";
let bad = 0;
for (const f of process.argv.slice(2))
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(f, "utf8"))) {
    const o = doc.toJS();
    if (!o) continue;
    const group = o.apiVersion === "v1" ? "v1" : o.apiVersion;
    const Cls = (await import(`kubernetes-models/${group}/${o.kind}`))[o.kind];
    try { new Cls(o).validate(); console.log(`ok   ${f}: ${o.kind} ${o.metadata.name}`); }
    catch (e) { bad++; console.log(`FAIL ${f}: ${o.kind} ${o.metadata.name}: ${e.message}`); }
  }
process.exit(bad ? 1 : 0);
JS
node "$dir/check.mjs" deploy/kubernetes/*.yaml deploy/kubernetes/configmap-mode/*.yaml
