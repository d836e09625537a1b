// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: arbitrary bytes through the parser, the validator and the compiler. */
#include <stddef.h>
#include <stdint.h>

#include "compile/compile.h"
#include "manifest/manifest.h"
#include "validate/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *unix_dirs[] = { "/run/kbackend-sidecars" };
	struct kb_compiled c = { 0 };
	struct kb_policy p;
	struct kb_model m;

	kb_policy_init(&p);
	/* Enable Backends so the fuzzer reaches the deeper rules, not only the disabled-API message. */
	p.enable_backend = 1;
	p.unix_dirs = unix_dirs;
	p.nunix_dirs = 1;
	kb_model_init(&m);
	kb_manifest_load_buffer(&m, "fuzz.yaml", (const char *)data, size);
	kb_validate(&m, &p);
	if (!m.nerrors)
		kb_compile(&m, NULL, &c);
	kb_compiled_free(&c);
	kb_model_free(&m);
	return 0;
}
