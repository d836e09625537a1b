/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to resolver*.c (not an API): one name's state, the resolver
 * object, and the few functions the files call across. resolver.c is what
 * the daemon drives (lifetime, the name set and its schedule, sockets,
 * lookups), resolver_query.c is how one name is refreshed (c-ares queries,
 * answers, TTLs, backoff), resolver_status.c is the JSON for `get endpoints`.
 */
#ifndef KB_RESOLVER_INT_H
#define KB_RESOLVER_INT_H

#include <ares.h>
#include <time.h>

#include "resolver/resolver.h"

#define NEVER	INT64_MAX

/* One address: family + ip words in network order, IPv4 in ip[0] (struct kb_slot's layout). */
struct raddr {
	__u8 family;
	__u32 ip[4];
};

struct rrefused {
	struct raddr a;
	char *why;
};

/* One record type's outcome in the current round. */
struct rres {
	int status;		/* ARES_SUCCESS (n >= 1), ARES_ENODATA / ARES_ENOTFOUND (negative), else a failure */
	int ttl;		/* smallest TTL of the records, seconds */
	size_t n;
	struct raddr a[KB_RESOLVER_MAX_ADDRS];
	bool allowed[KB_RESOLVER_MAX_ADDRS];
	size_t nallowed;
};

struct rname;

/* The callback argument of one query: which name, which record type (0: A, 1: AAAA). */
struct rquery {
	struct rname *n;
	int idx;
};

struct rname {
	struct kb_resolver *r;
	char *host;
	uint32_t hash;
	struct rname *hnext;		/* hash chain */
	/* what the daemon asked for */
	enum kb_lookup_family family;
	int64_t refresh_ms;
	bool respect_ttl;
	bool absolute;			/* trailing dot: no search list */
	bool literal;			/* an IP literal: resolves to itself */
	/* the answer in force */
	struct raddr *addrs;
	size_t naddrs;
	struct rrefused *refused;
	size_t nrefused;
	bool answered;			/* a good answer arrived at least once */
	bool expired;			/* emptied: negative past the last TTL */
	int ttl_s;			/* as answered */
	int64_t ttl_ms;			/* clamped */
	int64_t expires_ms;		/* monotonic: answer time + ttl_ms */
	time_t last_refresh;		/* wall clock of the last good answer */
	/* failures */
	unsigned failures;		/* consecutive */
	int64_t backoff_ms;
	bool negative;			/* the last round said NXDOMAIN/NODATA */
	bool asked[2];			/* the last round asked [0] A, [1] AAAA ... */
	int last_status[2];		/* ... and how each ended (ARES_SUCCESS or an error) */
	char last_error[64];
	time_t last_error_time;
	/* schedule */
	int64_t next_ms;		/* monotonic time of the next query */
	int64_t due;			/* the heap key: min(next query, expiry) */
	size_t heap_idx;		/* SIZE_MAX: not in the heap */
	/* the round in progress */
	bool active;			/* holds one of max_inflight slots */
	bool queued;			/* waiting for a slot */
	struct rname *qnext;
	unsigned inflight;		/* outstanding c-ares queries (+1 while sending) */
	int phase;			/* preferred families: 0 the preferred type, 1 the fallback */
	enum kb_lookup_family round_family;	/* the family the round in progress asked for */
	bool requery;			/* the family changed during the round: ask again when it ends */
	struct rres *res;		/* [0] A, [1] AAAA, for the round */
	struct rquery q[2];
	bool dropped;			/* no longer in the set: freed once no query refers to it */
};

struct rsock {
	int fd;
	bool rd, wr;
};

struct kb_resolver {
	ares_channel ch;
	struct kb_resolver_opts o;	/* servers/search not kept */
	struct rname **tab;		/* hash table of the live names */
	size_t tabcap;			/* power of two */
	size_t nnames;
	struct rname **heap;		/* min-heap on due */
	size_t nheap, heapcap;
	struct rname *qhead, *qtail;	/* FIFO waiting for an inflight slot */
	size_t nqueued;
	unsigned nactive;
	bool pumping;
	bool changed;
	/* The names behind `changed` (copies), for a recompile of only what uses them; overflow: too many to list. */
	char **changed_hosts;
	size_t nchanged;
	bool changed_overflow;
	char **taken_hosts;		/* the list last handed out, freed at the next take */
	size_t ntaken;
	bool destroying;
	struct rsock *socks;
	size_t nsocks, sockcap;
	int epfd;			/* holds every c-ares socket: one fd for the daemon's epoll */
	bool lumped;			/* several servers: c-ares reports REFUSED/SERVFAIL as ECONNREFUSED */
	uint64_t refreshes, errors;	/* rounds that ended with a good answer / a failure (metrics) */
};

/* Name n's usable address set changed. */
void rv_mark_changed(struct kb_resolver *r, const struct rname *n);

static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* The interval to the next refresh after a good answer. */
static inline int64_t refresh_interval(const struct rname *n)
{
	return n->respect_ttl ? n->ttl_ms : n->refresh_ms;
}

/* ---- the name set and its schedule (resolver.c) ---------------------------------------- */

/* Put n where its due time says (in, moved, or out of the heap). The heap is sized for every name. */
void rv_reschedule(struct kb_resolver *r, struct rname *n);
void rv_free_name(struct rname *n);
/* The live name host (case-insensitive), or NULL. */
struct rname *rv_find(const struct kb_resolver *r, const char *host);

/* ---- refresh rounds (resolver_query.c) ------------------------------------------------- */

/* Begin a refresh of n now, or queue it for a slot. */
void rv_round_begin(struct kb_resolver *r, struct rname *n);
/* Text for a c-ares status: DNS rcodes as dig prints them ("NOERROR", "REFUSED", ...), transport errors in words. */
const char *rv_status_text(const struct kb_resolver *r, int st);
/* Empty a name whose NXDOMAIN/NODATA outlived its last answer's TTL. */
void rv_expire(struct kb_resolver *r, struct rname *n);
/* An IP literal resolves to itself: if n's host is one, answer n with it (never queried) and return true. */
bool rv_literal(struct kb_resolver *r, struct rname *n);
/* Free n's answer in force (addresses and refused ones). */
void rv_clear_answer(struct rname *n);

#endif /* KB_RESOLVER_INT_H */
