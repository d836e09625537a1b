// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Writes a live frontend's value in place, run by the dataplane through BPF_PROG_RUN (a syscall program: no attach point). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "kbackend.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * A hash update of a present key does not write in place: it links a new
 * element and frees the old one, which the next update may reuse at once, so a
 * connect looking the key up at that instant can miss it (and leave unsteered)
 * or read another key's value (ARCHITECTURE.md, "Slot tables and the atomic
 * swap"). A live frontend's value is therefore only written here, in place: the
 * run as one 64-bit store, which connect4/6 read with one 64-bit load.
 */
SEC("syscall")
int frontend_write(struct kb_frontend_write *w)
{
	struct kb_frontend_key key = w->key;
	struct kb_frontend val = w->val;
	struct kb_frontend *fe;

	fe = bpf_map_lookup_elem(&frontends, &key);
	if (!fe)
		return -2;	/* -ENOENT: the caller inserts it instead */
	*(volatile __u64 *)&fe->slot_base = *(__u64 *)&val.slot_base;
	fe->frontend_id = val.frontend_id;
	fe->lb = val.lb;
	fe->flags = val.flags;
	return 0;
}
