/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to compile*.c: the slot-table math compile.c takes from compile_share.c. */
#ifndef KB_COMPILE_INT_H
#define KB_COMPILE_INT_H

#include <linux/types.h>
#include <stddef.h>

#include "manifest/model.h"

/*
 * Not part of the compiler's interface (compile.h, which also holds the math
 * that tests call: kb_priority_load, kb_apportion, kb_slot_count).
 */

/* The smallest table of at most kb_slot_count(used) slots that holds every weight exactly, else that bound. */
__u32 kb_table_size(const double *w, size_t n, size_t used);

/* Interleave counts[i] slots of each endpoint i into slots[0..nslots). */
void kb_lay_out_slots(const __u32 *counts, size_t n, __u32 nslots, __u32 *slots);

/* The EndpointSlices of one Service or ServiceImport, in model order. */
struct slice_list {
	struct kb_endpoint_slice **v;
	size_t n;
};

/*
 * Index m's Services and ServiceImports ("Kind/ns/name" -> struct kb_service,
 * the first of each) and their EndpointSlices (the owner's key -> struct
 * slice_list), in a (compile_slices.c).
 */
void kb_index_services(struct kb_arena *a, const struct kb_model *m, struct kb_smap *services, struct kb_smap *slices);

#endif /* KB_COMPILE_INT_H */
