/* Recovery and catch-up between replicas: the start-up decision of an
 * empty node, the copy of a node that lost its disk, and background
 * anti-entropy, all per partition (membership.h).
 *
 * An empty replica starts "recovering" (no reads, no locks; writes are
 * accepted) in every partition it stores.  It asks every member for its
 * state (Scan with limit 0): recovering or complete, the cluster id its
 * data directory records (0: it has never been part of a cluster), its
 * incarnation (a random number drawn at each process start):
 *  - A new cluster forms only when every member answers that it is empty
 *    and none has a cluster id.  The node that sees so records a cluster id
 *    and serves, and remembers the incarnations it saw; a member that asks
 *    it later with one of those incarnations learns that it is a founder
 *    (its emptiness was part of the decision) and serves too.  A member
 *    that lost its disk since has a new incarnation, so it is never taken
 *    for a founder: it recovers.  Requiring every member (not a majority)
 *    means no member joins a new cluster late: a late member would have to
 *    copy from replicas that share its partitions, and two late members
 *    sharing one could wait for each other forever.
 *  - Once any member has a cluster id, the cluster exists: the node records
 *    the id and copies, for each partition it stores, every key from R-Q+1
 *    of that partition's other replicas that are complete
 *    (dht_membership_recovery_sources), which intersects every quorum that
 *    may have acknowledged a write without it.  Each pull asks one peer for
 *    the keys both store (the Scan's member filter), so a pass costs this
 *    node's share of the data.  A partition serves as soon as enough of its
 *    replicas were copied; the node records that it is complete when all
 *    are.  Partitions whose other replicas are not complete (two lost disks
 *    among a partition's three replicas) wait, and never serve stale data.
 *  - If too few members answer, it keeps asking.
 * Afterwards, and for nodes that restarted with their data, a pass every
 * `ae_interval` pulls from each peer the keys both store and installs the
 * newer versions, so a node that was down or cut off catches up by itself.
 * Installing a version found on any replica is what a read's write-back
 * does anyway, so it is safe at any time.
 *
 * Event-driven, with no thread of its own: every step is a transport call,
 * a transport timer or an install whose completion starts the next step,
 * so the same code runs on the gRPC transport's threads and, step by step
 * and deterministically, in the simulator.  At most one step chain is in
 * flight (the start-up question asks the peers in parallel and waits for
 * all of them).  No gRPC: works over any dht_transport.
 */
#ifndef DHT_RECOVERY_H
#define DHT_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/membership.h"
#include "protocol/replica.h"
#include "protocol/transport.h"

typedef struct dht_recovery dht_recovery;

/* Stores n WRITE requests durably through the node's write path (group
 * commit): fills reps (pre-zeroed) and then calls done(done_arg) exactly
 * once, from any thread; reqs and reps stay the caller's until then.
 * Returns nonzero if it cannot take them (done will not run). */
typedef int (*dht_install_fn)(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                              void (*done)(void *), void *done_arg);

typedef struct {
    const dht_membership *members; /* who to ask, and who we are; required */
    uint32_t page;            /* entries per Scan page; default 512          */
    int64_t rpc_timeout_ns;   /* one Scan; default 2 s                       */
    int64_t ae_interval_ns;   /* between anti-entropy passes; default 1 s    */
    int64_t page_pause_ns;    /* between pages: bounds the rate; 5 ms        */
    int64_t retry_ns;         /* start-up question retry; default 200 ms     */
    dht_install_fn install;   /* required */
    uint64_t cluster_id;      /* what the data directory records; 0: none */
    uint64_t incarnation;     /* this process's (never 0; the node draws it) */
    /* Records a cluster id durably (0, or -1 if it could not). */
    int (*set_cluster_id)(void *arg, uint64_t id);
    /* Called once, before the replica leaves the recovering state, when it
     * may serve reads (recovery done or new cluster): the node makes that
     * durable. */
    void (*on_ready)(void *arg, const char *why);
    /* Optional: stamps a Scan with the node's view before it is sent
     * (a changed membership's members refuse unstamped old ones). */
    void (*stamp)(void *arg, dht_msg *m);
    void *arg; /* for install, on_ready and stamp */
} dht_recovery_config;

void dht_recovery_config_default(dht_recovery_config *cfg);

/* Starts: if r is recovering, the start-up decision above first; then
 * anti-entropy until stopped.  t, r and cfg->members must outlive it.
 * Returns NULL on allocation failure or a config without members/install. */
dht_recovery *dht_recovery_start(dht_transport *t, dht_replica *r, const dht_recovery_config *cfg);
/* Asks it to stop: no new step starts, a pending cancelable timer is
 * revoked.  Never blocks (the simulator's single thread calls it). */
void dht_recovery_request_stop(dht_recovery *s);
/* Requests a stop, waits until no step is in flight (each is bounded by an
 * RPC deadline or a cancelable timer), then frees s.  The transport must
 * still be delivering callbacks. */
void dht_recovery_stop(dht_recovery *s);
/* The same without freeing s: its getters below stay usable (for Scans
 * answered until the transport stops); dht_recovery_stop frees it later. */
void dht_recovery_halt(dht_recovery *s);

/* For answering Scans (any thread): the cluster id now known (0: none
 * yet), and whether incarnation was seen empty when this node formed the
 * cluster. */
uint64_t dht_recovery_cluster_id(const dht_recovery *s);
bool dht_recovery_founder(const dht_recovery *s, uint64_t incarnation);
/* Partitions this node stores that are still recovering. */
int dht_recovery_partitions_pending(const dht_recovery *s);

#endif
