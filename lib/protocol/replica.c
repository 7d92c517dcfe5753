/* Replica state: lock-striped open-addressing hash tables keyed by int64.
 *
 * Entries are never deleted (a key once touched keeps its version forever:
 * forgetting a version would let an older write win again), so linear
 * probing needs no tombstones.  A write persists outside the stripe lock,
 * so one slow fsync does not stall the other keys of its stripe; the version
 * check is repeated after persisting because a newer write may have landed
 * meanwhile.
 */
#include "protocol/replica.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define STRIPES DHT_REPLICA_STRIPES

typedef struct {
    int64_t key;
    int64_t value;
    dht_version ver;
    uint64_t lock_owner; /* 0: free */
    int64_t lease_until; /* monotonic ns */
    bool used;
} entry;

typedef struct {
    pthread_mutex_t mu;
    entry *slots; /* owned; capacity is a power of two */
    size_t cap, len;
} stripe;

struct dht_replica {
    stripe stripes[STRIPES];
    /* Per partition (membership.h): 1 while this replica may lack
     * acknowledged writes of it; nrecovering counts the ones set. */
    _Atomic uint8_t recovering[DHT_PARTITIONS];
    atomic_int nrecovering;
    dht_persist_fn persist;
    void *persist_arg;
    dht_replica_keep_fn owns; /* NULL: every key is this replica's */
    void *owns_arg;
    dht_replica_fence_fn fence; /* NULL: every stamp is served */
    void *fence_arg;
    pthread_rwlock_t apply_lock; /* shared: a write's persist+apply */
};

static uint64_t mix(int64_t key)
{
    return dht_mix64((uint64_t)key + DHT_GOLDEN_GAMMA);
}

dht_replica *dht_replica_new(void)
{
    dht_replica *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&r->stripes[i].mu, NULL);
    pthread_rwlock_init(&r->apply_lock, NULL);
    for (uint32_t p = 0; p < DHT_PARTITIONS; p++)
        atomic_init(&r->recovering[p], 0);
    atomic_init(&r->nrecovering, 0);
    return r;
}

void dht_replica_free(dht_replica *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_destroy(&r->stripes[i].mu);
        free(r->stripes[i].slots);
    }
    pthread_rwlock_destroy(&r->apply_lock);
    free(r);
}

void dht_replica_set_persist(dht_replica *r, dht_persist_fn fn, void *arg)
{
    r->persist = fn;
    r->persist_arg = arg;
}

void dht_replica_set_recovering(dht_replica *r, bool recovering)
{
    for (uint32_t p = 0; p < DHT_PARTITIONS; p++)
        dht_replica_set_partition_recovering(r, p, recovering);
}

void dht_replica_set_partition_recovering(dht_replica *r, uint32_t part, bool recovering)
{
    uint8_t was = atomic_exchange(&r->recovering[part % DHT_PARTITIONS], recovering ? 1 : 0);
    if (was != recovering)
        atomic_fetch_add(&r->nrecovering, recovering ? 1 : -1);
}

bool dht_replica_recovering(const dht_replica *r)
{
    return atomic_load(&((dht_replica *)r)->nrecovering) > 0;
}

bool dht_replica_partition_recovering(const dht_replica *r, uint32_t part)
{
    return atomic_load(&((dht_replica *)r)->recovering[part % DHT_PARTITIONS]) != 0;
}

static bool key_recovering(dht_replica *r, int64_t key)
{
    return atomic_load(&r->recovering[dht_partition_of(key)]) != 0;
}

static stripe *stripe_of(dht_replica *r, uint64_t h)
{
    return &r->stripes[h >> 58]; /* top 6 bits: STRIPES == 64 */
}

static entry *probe(entry *slots, size_t cap, int64_t key, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (slots[i].used && slots[i].key != key)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(stripe *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 64;
    entry *n = calloc(ncap, sizeof *n);
    if (n == NULL)
        return -1;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i].used)
            *probe(n, ncap, s->slots[i].key, mix(s->slots[i].key)) = s->slots[i];
    }
    free(s->slots);
    s->slots = n;
    s->cap = ncap;
    return 0;
}

/* Finds key in its (locked) stripe; creates it when create is set.  Returns
 * NULL if absent (or out of memory). */
static entry *find(stripe *s, int64_t key, uint64_t h, bool create)
{
    if (s->cap) {
        entry *e = probe(s->slots, s->cap, key, h);
        if (e->used || !create)
            return e->used ? e : NULL;
    } else if (!create) {
        return NULL;
    }
    if ((s->len + 1) * 10 > s->cap * 7 && grow(s) != 0)
        return NULL;
    entry *e = probe(s->slots, s->cap, key, h);
    memset(e, 0, sizeof *e);
    e->used = true;
    e->key = key;
    s->len++;
    return e;
}

static bool fenced_off(const dht_replica *r, const dht_msg *req);

static void do_lock(dht_replica *r, int64_t now, const dht_msg *req, dht_msg *rep)
{
    if (key_recovering(r, req->key) || fenced_off(r, req))
        return; /* refused: our version may be older than what we acked */
    uint64_t h = mix(req->key);
    stripe *s = stripe_of(r, h);
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, req->key, h, true);
    if (e != NULL) {
        if (e->lock_owner == 0 || e->lease_until <= now || e->lock_owner == req->owner) {
            e->lock_owner = req->owner;
            e->lease_until = now + (int64_t)req->lease_ms * 1000000;
            rep->ok = true;
        }
        rep->version = e->ver;
    }
    pthread_mutex_unlock(&s->mu);
}

static void do_unlock(dht_replica *r, const dht_msg *req, dht_msg *rep)
{
    uint64_t h = mix(req->key);
    stripe *s = stripe_of(r, h);
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, req->key, h, false);
    if (e != NULL && e->lock_owner == req->owner && req->owner != 0) {
        e->lock_owner = 0;
        rep->ok = true;
    }
    if (e != NULL)
        rep->version = e->ver;
    pthread_mutex_unlock(&s->mu);
}

/* Under the stripe lock: installs the write if newer; returns whether it did. */
static bool install(entry *e, const dht_msg *req)
{
    if (dht_version_cmp(req->version, e->ver) <= 0)
        return false;
    e->value = req->value;
    e->ver = req->version;
    return true;
}

/* Writes of one batch: check which are newer, persist those with one hook
 * call (one log write and fsync for the lot), then install and release
 * locks.  The persist happens outside the stripe locks; the version check
 * is repeated afterwards because a newer write may have landed meanwhile. */
static void do_writes(dht_replica *r, const dht_msg *const *reqs, dht_msg *const *reps, size_t n)
{
    dht_entry small[16], *todo = n <= 16 ? small : malloc(n * sizeof *todo);
    if (todo == NULL)
        return; /* out of memory: every reply stays ok=false */
    size_t ntodo = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = mix(reqs[i]->key);
        stripe *s = stripe_of(r, h);
        pthread_mutex_lock(&s->mu);
        entry *e = find(s, reqs[i]->key, h, true);
        if (e != NULL && dht_version_cmp(reqs[i]->version, e->ver) > 0)
            todo[ntodo++] = (dht_entry){reqs[i]->key, reqs[i]->value, reqs[i]->version};
        pthread_mutex_unlock(&s->mu);
    }
    int rc = 0;
    pthread_rwlock_rdlock(&r->apply_lock);
    if (ntodo > 0 && r->persist != NULL)
        rc = r->persist(r->persist_arg, todo, ntodo);
    for (size_t i = 0; i < n; i++) {
        const dht_msg *req = reqs[i];
        uint64_t h = mix(req->key);
        stripe *s = stripe_of(r, h);
        pthread_mutex_lock(&s->mu);
        entry *e = find(s, req->key, h, false);
        /* The fence is asked under the stripe lock, with the install: a
         * configuration change that fences this write's view off either
         * came first (the write is refused) or finds it installed (a copy
         * that reads this stripe afterwards sees it). */
        if (e != NULL && fenced_off(r, req)) {
            reps[i]->version = e->ver;
        } else if (e != NULL) {
            /* a failed persist fails only the writes that needed it */
            bool needed = dht_version_cmp(req->version, e->ver) > 0;
            if (rc == 0 || !needed) {
                install(e, req);
                reps[i]->ok = true;
            }
            if (req->owner != 0 && e->lock_owner == req->owner)
                e->lock_owner = 0;
            reps[i]->version = e->ver;
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_rwlock_unlock(&r->apply_lock);
    if (todo != small)
        free(todo);
}

static void do_read(dht_replica *r, const dht_msg *req, dht_msg *rep)
{
    if (key_recovering(r, req->key) || fenced_off(r, req))
        return; /* ok=false: not a valid read-quorum member yet */
    dht_replica_lookup(r, req->key, &rep->value, &rep->version);
    rep->ok = true;
}

void dht_replica_handle_scan(dht_replica *r, const dht_msg *req, dht_msg *rep,
                             dht_replica_keep_fn keep, void *keep_arg)
{
    rep->type = DHT_MSG_SCAN;
    rep->recovering = dht_replica_recovering(r);
    rep->ok = true;
    if (req->limit == 0)
        return;
    dht_scan_cursor cur = {req->stripe, req->key, req->from_start};
    int n = dht_replica_scan_filtered(r, &cur, req->limit, keep, keep_arg, &rep->entries,
                                      &rep->more);
    if (n < 0) {
        rep->ok = false;
        return;
    }
    rep->nentries = (uint32_t)n;
    /* the reply carries the cursor of the next page */
    rep->stripe = cur.stripe;
    rep->key = cur.after;
    rep->from_start = cur.from_start;
}

int dht_replica_check(const dht_msg *req, char *why, size_t whylen)
{
    const char *bad = NULL;
    char buf[160];
    switch (req->type) {
    case DHT_MSG_LOCK:
        if (req->owner == 0)
            bad = "lock owner 0";
        else if (req->lease_ms == 0 || req->lease_ms > DHT_LEASE_MAX_MS) {
            snprintf(buf, sizeof buf, "lease %u ms outside 1..%u", (unsigned)req->lease_ms,
                     (unsigned)DHT_LEASE_MAX_MS);
            bad = buf;
        }
        break;
    case DHT_MSG_UNLOCK:
        if (req->owner == 0)
            bad = "lock owner 0";
        break;
    case DHT_MSG_WRITE:
        if (req->version.writer == 0)
            bad = "writer 0";
        else if (req->version.counter == 0 || req->version.counter > DHT_COUNTER_MAX) {
            snprintf(buf, sizeof buf, "version counter %llu outside 1..2^62",
                     (unsigned long long)req->version.counter);
            bad = buf;
        }
        break;
    case DHT_MSG_READ:
        break;
    case DHT_MSG_SCAN:
        if (req->limit > DHT_SCAN_PAGE_MAX) {
            snprintf(buf, sizeof buf, "scan limit %u above %u", (unsigned)req->limit,
                     (unsigned)DHT_SCAN_PAGE_MAX);
            bad = buf;
        } else if (req->stripe > STRIPES) {
            snprintf(buf, sizeof buf, "scan stripe %u above %u", (unsigned)req->stripe,
                     (unsigned)STRIPES);
            bad = buf;
        }
        break;
    default:
        bad = "not a replica request";
        break;
    }
    if (bad == NULL)
        return 0;
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", bad);
    return -1;
}

void dht_replica_set_fence(dht_replica *r, dht_replica_fence_fn fence, void *arg)
{
    r->fence = fence;
    r->fence_arg = arg;
}

static bool fenced_off(const dht_replica *r, const dht_msg *req)
{
    return r->fence != NULL && !r->fence(r->fence_arg, req);
}

void dht_replica_set_owner(dht_replica *r, dht_replica_keep_fn owns, void *arg)
{
    r->owns = owns;
    r->owns_arg = arg;
}

/* Well formed, and about a key this replica stores (scans filter). */
static bool accepts(const dht_replica *r, const dht_msg *req)
{
    return dht_replica_check(req, NULL, 0) == 0 &&
           (r->owns == NULL || req->type == DHT_MSG_SCAN || r->owns(r->owns_arg, req->key));
}

void dht_replica_handle(dht_replica *r, int64_t now_ns, const dht_msg *req, dht_msg *reply)
{
    memset(reply, 0, sizeof *reply);
    reply->type = req->type;
    reply->key = req->key;
    if (!accepts(r, req))
        return; /* refused: ok=false, nothing changed */
    switch (req->type) {
    case DHT_MSG_LOCK:
        do_lock(r, now_ns, req, reply);
        break;
    case DHT_MSG_UNLOCK:
        do_unlock(r, req, reply);
        break;
    case DHT_MSG_WRITE:
        do_writes(r, &req, &reply, 1);
        break;
    case DHT_MSG_READ:
        do_read(r, req, reply);
        break;
    case DHT_MSG_SCAN:
        dht_replica_handle_scan(r, req, reply, NULL, NULL);
        break;
    default:
        break; /* not a replica request: ok=false */
    }
}

void dht_replica_handle_batch(dht_replica *r, int64_t now_ns, const dht_msg *reqs,
                              dht_msg *reps, size_t n)
{
    const dht_msg *wsmall[16], **wreq = n <= 16 ? wsmall : malloc(n * sizeof *wreq);
    dht_msg *rsmall[16], **wrep = n <= 16 ? rsmall : malloc(n * sizeof *wrep);
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].type == DHT_MSG_WRITE && wreq != NULL && wrep != NULL &&
            accepts(r, &reqs[i])) {
            memset(&reps[i], 0, sizeof reps[i]);
            reps[i].type = DHT_MSG_WRITE;
            reps[i].key = reqs[i].key;
            wreq[nw] = &reqs[i];
            wrep[nw++] = &reps[i];
        } else {
            dht_replica_handle(r, now_ns, &reqs[i], &reps[i]);
        }
    }
    if (nw > 0)
        do_writes(r, wreq, wrep, nw);
    if (wreq != wsmall)
        free(wreq);
    if (wrep != rsmall)
        free(wrep);
}

int dht_replica_apply(dht_replica *r, int64_t key, int64_t value, dht_version ver)
{
    uint64_t h = mix(key);
    stripe *s = stripe_of(r, h);
    dht_msg m = {.key = key, .value = value, .version = ver};
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, key, h, true);
    int changed = e != NULL && install(e, &m);
    pthread_mutex_unlock(&s->mu);
    return changed;
}

void dht_replica_lookup(dht_replica *r, int64_t key, int64_t *value, dht_version *ver)
{
    uint64_t h = mix(key);
    stripe *s = stripe_of(r, h);
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, key, h, false);
    *value = e ? e->value : 0;
    *ver = e ? e->ver : (dht_version){0, 0};
    pthread_mutex_unlock(&s->mu);
}

void dht_replica_foreach(dht_replica *r, dht_replica_visit_fn fn, void *arg)
{
    for (int i = 0; i < STRIPES; i++) {
        stripe *s = &r->stripes[i];
        pthread_mutex_lock(&s->mu);
        for (size_t j = 0; j < s->cap; j++) {
            entry *e = &s->slots[j];
            if (e->used && (e->ver.counter | e->ver.writer) != 0)
                fn(arg, e->key, e->value, e->ver);
        }
        pthread_mutex_unlock(&s->mu);
    }
}

size_t dht_replica_size(dht_replica *r)
{
    size_t n = 0;
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&r->stripes[i].mu);
        n += r->stripes[i].len;
        pthread_mutex_unlock(&r->stripes[i].mu);
    }
    return n;
}

void dht_replica_quiesce_begin(dht_replica *r)
{
    pthread_rwlock_wrlock(&r->apply_lock);
}

void dht_replica_quiesce_end(dht_replica *r)
{
    pthread_rwlock_unlock(&r->apply_lock);
}

/* ---- scan: pages of entries, stripe by stripe, in key order within each --
 * A page walks stripes from the cursor's; within a stripe a bounded
 * max-heap picks the smallest keys above the cursor.  Each page costs
 * O(stripe size * log limit) rather than a pass over every key, so a full
 * scan is O(n log n), and key order within a stripe makes the cursor immune
 * to the table growing between pages (nothing is skipped). */

typedef struct {
    dht_entry *heap; /* max-heap on key, at most cap entries */
    uint32_t len, cap;
    int64_t after;
    bool from_start;
    bool more;
    dht_replica_keep_fn keep;
    void *keep_arg;
} scan_state;

static void heap_sift_down(dht_entry *h, uint32_t len, uint32_t i)
{
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= len)
            return;
        if (c + 1 < len && h[c + 1].key > h[c].key)
            c++;
        if (h[c].key <= h[i].key)
            return;
        dht_entry t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

static void scan_visit(scan_state *st, const entry *en)
{
    if (!st->from_start && en->key <= st->after)
        return;
    if (st->keep != NULL && !st->keep(st->keep_arg, en->key))
        return;
    dht_entry e = {en->key, en->value, en->ver};
    if (st->len < st->cap) {
        uint32_t i = st->len++;
        st->heap[i] = e;
        while (i > 0 && st->heap[(i - 1) / 2].key < st->heap[i].key) {
            dht_entry t = st->heap[i];
            st->heap[i] = st->heap[(i - 1) / 2];
            st->heap[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    st->more = true; /* at least one key does not fit in this page */
    if (e.key < st->heap[0].key) {
        st->heap[0] = e;
        heap_sift_down(st->heap, st->len, 0);
    }
}

static int entry_key_cmp(const void *a, const void *b)
{
    int64_t x = ((const dht_entry *)a)->key, y = ((const dht_entry *)b)->key;
    return (x > y) - (x < y);
}

int dht_replica_scan(dht_replica *r, dht_scan_cursor *cur, uint32_t limit, dht_entry **out,
                     bool *more)
{
    return dht_replica_scan_filtered(r, cur, limit, NULL, NULL, out, more);
}

int dht_replica_scan_filtered(dht_replica *r, dht_scan_cursor *cur, uint32_t limit,
                              dht_replica_keep_fn keep, void *keep_arg, dht_entry **out,
                              bool *more)
{
    if (limit == 0)
        limit = 1;
    dht_entry *page = malloc((size_t)limit * sizeof *page);
    if (page == NULL)
        return -1;
    uint32_t n = 0;
    *more = false;
    while (cur->stripe < STRIPES && n < limit) {
        stripe *s = &r->stripes[cur->stripe];
        scan_state st = {.heap = page + n, .cap = limit - n, .after = cur->after,
                         .from_start = cur->from_start, .keep = keep, .keep_arg = keep_arg};
        pthread_mutex_lock(&s->mu);
        for (size_t j = 0; j < s->cap; j++) {
            const entry *e = &s->slots[j];
            if (e->used && (e->ver.counter | e->ver.writer) != 0)
                scan_visit(&st, e);
        }
        pthread_mutex_unlock(&s->mu);
        qsort(st.heap, st.len, sizeof *st.heap, entry_key_cmp);
        n += st.len;
        if (st.more) { /* this stripe continues on the next page */
            cur->after = page[n - 1].key;
            cur->from_start = false;
            *more = true;
            break;
        }
        cur->stripe++;
        cur->after = 0;
        cur->from_start = true;
    }
    if (cur->stripe < STRIPES)
        *more = true;
    *out = page;
    return (int)n;
}
