/* SPDX-License-Identifier: Apache-2.0 */
/* Small shared helpers: an allocation arena, growable arrays and logging. */
#ifndef KB_UTIL_H
#define KB_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Every object of one model lives in one arena, so a model (and a failed
 * parse) is freed in one call and the fuzzer sees no leaks by construction.
 */
struct kb_arena_block;
struct kb_arena {
	struct kb_arena_block *head;
};

void *kb_alloc(struct kb_arena *a, size_t n);		/* zeroed; aborts on ENOMEM */
char *kb_strdup(struct kb_arena *a, const char *s);	/* NULL stays NULL */
char *kb_strndup(struct kb_arena *a, const char *s, size_t n);
char *kb_sprintf(struct kb_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *kb_vsprintf(struct kb_arena *a, const char *fmt, va_list ap);
void kb_arena_free(struct kb_arena *a);
/* Free all but one chunk and empty it, for an arena reused per item (a document's scratch). */
void kb_arena_reset(struct kb_arena *a);
/* Move every block of src into dst (src ends empty): what src allocated now lives as long as dst. */
void kb_arena_absorb(struct kb_arena *dst, struct kb_arena *src);

/*
 * Grow an arena array by one element and return a pointer to the new,
 * zeroed element: `struct x *e = KB_PUSH(a, arr, n);`. Capacity doubles at
 * powers of two, so the old copy is wasted at most once per doubling.
 */
void *kb_push(struct kb_arena *a, void **arr, size_t *n, size_t elem);
#define KB_PUSH(a, arr, n) ((__typeof__(*(arr)) *)kb_push((a), (void **)&(arr), &(n), sizeof(*(arr))))

/*
 * A string-keyed hash (open addressing, FNV-1a) whose memory lives in an
 * arena, so lookups over a whole model stay linear. Zero-initialise with the
 * arena set: `struct kb_smap m = { .a = &arena };`.
 */
struct kb_smap_ent {
	char *key;
	void *val;
};

struct kb_smap {
	struct kb_arena *a;
	struct kb_smap_ent *ents;
	size_t cap, n;
};

void *kb_smap_get(const struct kb_smap *m, const char *key);
/* Insert unless present; returns the value now stored (the first one wins). */
void *kb_smap_put(struct kb_smap *m, const char *key, void *val);
/* Insert or overwrite; NULL stands for "absent" to kb_smap_get. */
void kb_smap_set(struct kb_smap *m, const char *key, void *val);

/* Equal strings, two NULLs included. */
static inline bool kb_str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* CLOCK_MONOTONIC in milliseconds. */
long kb_now_ms(void);
/* CLOCK_MONOTONIC in microseconds (stage timings). */
long long kb_now_us(void);
/* This process's resident memory in bytes (/proc/self/statm), or -1. */
long kb_rss_bytes(void);

/* Logging: one line per event on stderr. */
extern int kb_verbosity;	/* 0 default, 1 -v, 2 -vv */
void kb_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kb_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "kbackend: <what failed>: <why>" on stderr. */
void kb_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One error line "kbackend: failed to <verb> <object>: <strerror>"; returns err as a negative errno (-EIO for 0). */
int kb_fail(int err, const char *verb, const char *object);

/* Parse "10s", "500ms", "1m", "2h" (Gateway API Duration) into ms. false on bad input. */
bool kb_parse_duration_ms(const char *s, int64_t *out);

#endif /* KB_UTIL_H */
