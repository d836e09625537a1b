// SPDX-License-Identifier: Apache-2.0
/* Small shared helpers: an allocation arena, growable arrays and logging. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int kb_verbosity;

long long kb_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long kb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long kb_rss_bytes(void)
{
	long pages, resident = -1;
	FILE *f = fopen("/proc/self/statm", "re");

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/*
 * Memory comes in 64 KiB chunks and is handed out by bumping a pointer, so a
 * model of 20,000 objects costs a few thousand mallocs, not millions. Under
 * AddressSanitizer every allocation gets its own block instead, so the fuzzer
 * and the unit tests still see each overflow at its own allocation.
 */
#if defined(__SANITIZE_ADDRESS__)
#define KB_ARENA_CHUNKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KB_ARENA_CHUNKS 0
#endif
#endif
#ifndef KB_ARENA_CHUNKS
#define KB_ARENA_CHUNKS 1
#endif

#define KB_ARENA_CHUNK (64u << 10)

struct kb_arena_block {
	struct kb_arena_block *next;
	size_t size, used;
	max_align_t data[];
};

/*
 * Freed chunks wait here (up to 1 MiB) for the next arena, zeroed as far as
 * they were used. A small change (one DNS answer, one Backend) allocates a
 * few fresh chunks per stage; from calloc each costs a 64 KiB memset, and
 * after the heap was trimmed also its page faults, which made the same
 * change several times slower at 10,000 objects than at 100. Chunks held
 * here are in use as far as malloc knows, so malloc_trim leaves them
 * resident. Arenas live on several threads (parse halves, the restore, the
 * bridge), hence the lock.
 */
#define KB_CHUNK_CACHE 16
static struct {
	pthread_mutex_t lock;
	struct kb_arena_block *free[KB_CHUNK_CACHE];
	size_t n;
} chunk_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct kb_arena_block *chunk_take(void)
{
	struct kb_arena_block *b = NULL;

	pthread_mutex_lock(&chunk_cache.lock);
	if (chunk_cache.n)
		b = chunk_cache.free[--chunk_cache.n];
	pthread_mutex_unlock(&chunk_cache.lock);
	return b;
}

/* Keep b for the next arena (true), or let the caller free it. */
static bool chunk_keep(struct kb_arena_block *b)
{
	bool kept = false;

	if (!KB_ARENA_CHUNKS || b->size != KB_ARENA_CHUNK)
		return false;
	pthread_mutex_lock(&chunk_cache.lock);
	kept = chunk_cache.n < KB_CHUNK_CACHE;
	pthread_mutex_unlock(&chunk_cache.lock);
	if (!kept)
		return false;	/* full: a big model's thousands of chunks are not zeroed just to be freed */
	kept = false;
	memset(b->data, 0, b->used);
	b->used = 0;
	b->next = NULL;
	pthread_mutex_lock(&chunk_cache.lock);
	if (chunk_cache.n < KB_CHUNK_CACHE) {
		chunk_cache.free[chunk_cache.n++] = b;
		kept = true;
	}
	pthread_mutex_unlock(&chunk_cache.lock);
	return kept;
}

static struct kb_arena_block *block_new(size_t size)
{
	struct kb_arena_block *b = size == KB_ARENA_CHUNK ? chunk_take() : NULL;

	if (b)
		return b;
	b = calloc(1, sizeof(*b) + size);

	if (!b) {
		fprintf(stderr, "kbackend: out of memory\n");
		abort();
	}
	b->size = size;
	return b;
}

void *kb_alloc(struct kb_arena *a, size_t n)
{
	struct kb_arena_block *b = a->head;
	size_t need = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	void *p;

	if (!KB_ARENA_CHUNKS || need > KB_ARENA_CHUNK / 4) {
		/* Its own block, linked behind the current chunk so that chunk keeps filling. */
		struct kb_arena_block *big = block_new(n);

		big->used = n;
		if (b) {
			big->next = b->next;
			b->next = big;
		} else {
			a->head = big;
		}
		return big->data;
	}
	if (!b || b->size - b->used < need) {
		b = block_new(KB_ARENA_CHUNK);
		b->next = a->head;
		a->head = b;
	}
	/* Chunks come zeroed from calloc and are never reused, so the memory is zero. */
	p = (char *)b->data + b->used;
	b->used += need;
	return p;
}

char *kb_strndup(struct kb_arena *a, const char *s, size_t n)
{
	char *p;

	if (!s)
		return NULL;
	p = kb_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *kb_strdup(struct kb_arena *a, const char *s)
{
	return s ? kb_strndup(a, s, strlen(s)) : NULL;
}

char *kb_vsprintf(struct kb_arena *a, const char *fmt, va_list ap)
{
	va_list aq;
	int n;
	char *p;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		n = 0;
	p = kb_alloc(a, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *kb_sprintf(struct kb_arena *a, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = kb_vsprintf(a, fmt, ap);
	va_end(ap);
	return p;
}

void kb_arena_free(struct kb_arena *a)
{
	struct kb_arena_block *b = a->head, *next;

	for (; b; b = next) {
		next = b->next;
		if (!chunk_keep(b))
			free(b);
	}
	a->head = NULL;
}

void kb_arena_reset(struct kb_arena *a)
{
	struct kb_arena_block *keep = a->head;

	/*
	 * Keep the newest chunk (the one being filled) and zero only what was
	 * used of it: freeing it would have the next calloc clear a whole 64 KiB
	 * again, for every document of a 20,000-document stream.
	 */
	if (!KB_ARENA_CHUNKS || !keep || keep->size != KB_ARENA_CHUNK) {
		kb_arena_free(a);
		return;
	}
	a->head = keep->next;
	kb_arena_free(a);
	memset(keep->data, 0, keep->used);
	keep->used = 0;
	keep->next = NULL;
	a->head = keep;
}

void kb_arena_absorb(struct kb_arena *dst, struct kb_arena *src)
{
	struct kb_arena_block *b = src->head;

	if (!b)
		return;
	/* src's blocks go behind dst's current chunk, which keeps filling. */
	while (b->next)
		b = b->next;
	if (dst->head) {
		b->next = dst->head->next;
		dst->head->next = src->head;
	} else {
		dst->head = src->head;
	}
	src->head = NULL;
}

void *kb_push(struct kb_arena *a, void **arr, size_t *n, size_t elem)
{
	size_t cnt = *n;
	char *p;

	/* Capacity is implicit: the next power of two >= cnt (min 4). */
	if (cnt == 0 || (cnt >= 4 && (cnt & (cnt - 1)) == 0)) {
		size_t cap = cnt < 4 ? 4 : cnt * 2;

		p = kb_alloc(a, cap * elem);
		if (cnt)
			memcpy(p, *arr, cnt * elem);
		*arr = p;
	}
	p = (char *)*arr + cnt * elem;
	memset(p, 0, elem);
	*n = cnt + 1;
	return p;
}

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
	char buf[2048];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(stderr, "%s%s\n", prefix, buf);
}

void kb_log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("kbackend: ", fmt, ap);
	va_end(ap);
}

void kb_log_debug(const char *fmt, ...)
{
	va_list ap;

	if (kb_verbosity < 1)
		return;
	va_start(ap, fmt);
	vlog("kbackend: debug: ", fmt, ap);
	va_end(ap);
}

int kb_fail(int err, const char *verb, const char *object)
{
	if (err > 0)
		err = -err;
	if (!err)
		err = -EIO;
	kb_err("failed to %s %s: %s", verb, object, strerror(-err));
	return err;
}

void kb_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("kbackend: ", fmt, ap);
	va_end(ap);
}

bool kb_parse_duration_ms(const char *s, int64_t *out)
{
	/* Gateway API Duration: one or more <number><unit>, units h m s ms. */
	int64_t total = 0;
	const char *p = s;

	if (!s || !*s)
		return false;
	while (*p) {
		int64_t v = 0, mul;
		int digits = 0;

		while (*p >= '0' && *p <= '9') {
			if (v > 100000000)
				return false;
			v = v * 10 + (*p++ - '0');
			digits++;
		}
		if (!digits || digits > 5)
			return false;
		if (p[0] == 'm' && p[1] == 's') {
			mul = 1;
			p += 2;
		} else if (*p == 'h') {
			mul = 3600000;
			p++;
		} else if (*p == 'm') {
			mul = 60000;
			p++;
		} else if (*p == 's') {
			mul = 1000;
			p++;
		} else {
			return false;
		}
		total += v * mul;
	}
	*out = total;
	return true;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct kb_smap_ent *smap_slot(struct kb_smap_ent *ents, size_t cap, const char *key)
{
	size_t i = fnv1a(key) & (cap - 1);

	while (ents[i].key && strcmp(ents[i].key, key) != 0)
		i = (i + 1) & (cap - 1);
	return &ents[i];
}

void *kb_smap_get(const struct kb_smap *m, const char *key)
{
	return m->cap ? smap_slot(m->ents, m->cap, key)->val : NULL;
}

void kb_smap_set(struct kb_smap *m, const char *key, void *val)
{
	struct kb_smap_ent *e = m->cap ? smap_slot(m->ents, m->cap, key) : NULL;

	if (e && e->key)
		e->val = val;
	else
		kb_smap_put(m, key, val);
}

void *kb_smap_put(struct kb_smap *m, const char *key, void *val)
{
	struct kb_smap_ent *e;

	if ((m->n + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct kb_smap_ent *ents = kb_alloc(m->a, cap * sizeof(*ents));

		for (size_t i = 0; i < m->cap; i++)
			if (m->ents[i].key)
				*smap_slot(ents, cap, m->ents[i].key) = m->ents[i];
		m->ents = ents;
		m->cap = cap;
	}
	e = smap_slot(m->ents, m->cap, key);
	if (!e->key) {
		e->key = kb_strdup(m->a, key);
		e->val = val;
		m->n++;
	}
	return e->val;
}
