// SPDX-License-Identifier: Apache-2.0
/* Stage 1: YAML manifests into the model (placeholder until the parser lands). */
#include "manifest.h"

int kb_manifest_load_path(struct kb_model *m, const char *path)
{
	kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = path }, "parser not built yet");
	return -1;
}

int kb_manifest_load_buffer(struct kb_model *m, const char *name, const char *buf, size_t len)
{
	kb_diag_add_at(m, KB_SEV_ERROR, (struct kb_loc){ .file = name }, "parser not built yet");
	return -1;
}
