/* The replica state machine: per key a value, its version and a lease lock.
 *
 * Rules (docs/design.md, "The protocol"):
 *  - Lock(k, owner, lease) is granted when the lock is free, expired, or
 *    already owner's; every reply carries the current version.
 *  - Write(k, v, ver, release) stores (v, ver) only if ver is newer, durably
 *    (through the persist hook) before acknowledging, then releases the lock
 *    if `release` still owns it.  Versions fence stale writers: safety never
 *    depends on the lock or on clocks.
 *  - Read(k) returns (value, version); (0, (0,0)) for a key never written.
 *    A replica marked recovering answers ok=false so it is never counted in
 *    a read quorum while its state may be incomplete; for the same reason
 *    it refuses locks, whose replies carry the version a writer builds on.
 *    It does accept writes, so it misses nothing while it copies state.
 *  - Scan(after, limit) returns a page of entries in key order, for state
 *    transfer to recovering replicas and anti-entropy.
 *
 * Thread-safe: state is split over lock stripes, so replica requests from
 * several transport threads run in parallel.  The caller passes the time
 * (monotonic ns) so the in-memory test transport can drive leases with a
 * virtual clock.
 */
#ifndef DHT_REPLICA_H
#define DHT_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"
#include "protocol/membership.h"

typedef struct dht_replica dht_replica;

/* What a well-formed replica request stays within.  A request outside is
 * refused (ok=false) and changes nothing, whoever sent it:
 *  - LOCK: owner != 0, lease 1..DHT_LEASE_MAX_MS (a lease longer than a
 *    minute only ever blocks a key);
 *  - UNLOCK: owner != 0;
 *  - WRITE: writer != 0 and counter 1..DHT_COUNTER_MAX.  The ceiling leaves
 *    every version room for 2^62 successors, so a coordinator's max + 1
 *    never wraps (at a billion puts a second, one key needs 146 years to
 *    get there honestly);
 *  - SCAN: limit up to DHT_SCAN_PAGE_MAX, stripe up to DHT_REPLICA_STRIPES;
 *  - READ: any key. */
#define DHT_LEASE_MAX_MS 60000u
#define DHT_COUNTER_MAX (UINT64_C(1) << 62)
#define DHT_SCAN_PAGE_MAX 4096u
#define DHT_REPLICA_STRIPES 64

/* 0 if req is a well-formed replica request, else -1 with the reason. */
int dht_replica_check(const dht_msg *req, char *why, size_t whylen);

/* Makes n writes durable; returns 0 once all are, or a negative errno (then
 * none of them is acknowledged).  Called without any stripe lock held,
 * possibly from several threads at once. */
typedef int (*dht_persist_fn)(void *arg, const dht_entry *writes, size_t n);

dht_replica *dht_replica_new(void);
void dht_replica_free(dht_replica *r);
void dht_replica_set_persist(dht_replica *r, dht_persist_fn fn, void *arg);
/* Recovering is kept per partition (membership.h): a replica that lost
 * its state recovers each partition it stores from that partition's other
 * replicas and serves it as soon as it has (see recovery.h).  set_recovering
 * marks every partition; dht_replica_recovering is true while any is. */
void dht_replica_set_recovering(dht_replica *r, bool recovering);
void dht_replica_set_partition_recovering(dht_replica *r, uint32_t part, bool recovering);
bool dht_replica_recovering(const dht_replica *r);
bool dht_replica_partition_recovering(const dht_replica *r, uint32_t part);

/* Answers one replica request (LOCK, UNLOCK, WRITE, READ); reply is filled. */
void dht_replica_handle(dht_replica *r, int64_t now_ns, const dht_msg *req, dht_msg *reply);

/* Answers n requests at once (reps[i] for reqs[i]); the writes among them
 * are persisted together, with one log write and fsync. */
void dht_replica_handle_batch(dht_replica *r, int64_t now_ns, const dht_msg *reqs,
                              dht_msg *reps, size_t n);

/* Installs (value, ver) if newer, without persisting: for log replay and
 * state transfer that is already durable elsewhere.  Returns 1 if it changed
 * the key. */
int dht_replica_apply(dht_replica *r, int64_t key, int64_t value, dht_version ver);

/* Current value and version of key (0 and (0,0) if never written). */
void dht_replica_lookup(dht_replica *r, int64_t key, int64_t *value, dht_version *ver);

/* Calls fn for every key that has a version (written at least once).
 * Stripes are visited one at a time; fn must not call back into r. */
typedef void (*dht_replica_visit_fn)(void *arg, int64_t key, int64_t value, dht_version ver);
void dht_replica_foreach(dht_replica *r, dht_replica_visit_fn fn, void *arg);
size_t dht_replica_size(dht_replica *r);

/* Where a scan goes on: the state is split into stripes, scanned in order,
 * each in key order.  Start with {0, 0, true}. */
typedef struct {
    uint32_t stripe;
    int64_t after;   /* within stripe: keys above this... */
    bool from_start; /* ...unless from its first key */
} dht_scan_cursor;

/* Fills up to limit entries from *cur on into a malloc'd array the caller
 * frees, and advances *cur; *more tells whether anything remains.  Every
 * key written before the first page is returned exactly once by a full
 * scan, whatever is written meanwhile.  Returns the count, or -1 when out
 * of memory. */
int dht_replica_scan(dht_replica *r, dht_scan_cursor *cur, uint32_t limit, dht_entry **out,
                     bool *more);

/* The same, keeping only the keys for which keep(keep_arg, key) is true
 * (keep NULL: all): a member asks only for the keys it stores too. */
typedef bool (*dht_replica_keep_fn)(void *arg, int64_t key);
int dht_replica_scan_filtered(dht_replica *r, dht_scan_cursor *cur, uint32_t limit,
                              dht_replica_keep_fn keep, void *keep_arg, dht_entry **out,
                              bool *more);
/* Which keys this replica stores (placement): a Lock, Unlock, Write or
 * Read of another key is refused (ok=false) and changes nothing, so no
 * request, however formed, leaves a value where no read will look for it.
 * NULL (the default): every key.  Set before requests arrive. */
void dht_replica_set_owner(dht_replica *r, dht_replica_keep_fn owns, void *arg);

/* The membership change's fence (reconfig.h): fence(arg, req) false means
 * the request's configuration stamp is no longer served here, and the
 * Lock, Read or Write is refused (ok=false).  For a Write it is asked under
 * the key's stripe lock together with the install, so that a change of
 * configuration is ordered with every write: one that passed is already
 * visible to any Scan that starts after the change.  NULL: no fence. */
typedef bool (*dht_replica_fence_fn)(void *arg, const dht_msg *req);
void dht_replica_set_fence(dht_replica *r, dht_replica_fence_fn fence, void *arg);

/* Answers a SCAN request with that filter (what handle() does with none). */
void dht_replica_handle_scan(dht_replica *r, const dht_msg *req, dht_msg *rep,
                             dht_replica_keep_fn keep, void *keep_arg);

/* Blocks writes between their persist and apply steps, so that a storage
 * checkpoint sees every logged write already applied in memory. */
void dht_replica_quiesce_begin(dht_replica *r);
void dht_replica_quiesce_end(dht_replica *r);

#endif
