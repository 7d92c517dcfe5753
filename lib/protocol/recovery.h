/* Recovery and catch-up between replicas: the start-up decision of an
 * empty node, the copy of a node that lost its disk, and background
 * anti-entropy.
 *
 * An empty replica starts "recovering" (no reads, no locks; writes are
 * accepted).  It asks its peers whether they hold state:
 *  - a peer that is not recovering means the cluster exists and this node
 *    lost its data (or replaces one): it copies every key from R-Q+1 peers
 *    (dht_membership_recovery_sources; paged Scan, merged by version
 *    through the node's write path, so every copied entry is logged),
 *    which intersects every quorum that acknowledged a write without us;
 *    then it serves;
 *  - if any peer answers that it is empty too, the cluster is new (within
 *    the failure model two nodes never lose their disks at once): it
 *    serves at once;
 *  - if no peer answers, it keeps asking (it is one of the tolerated
 *    failures until then).
 * Afterwards, and for nodes that restarted with their data, a pass every
 * `ae_interval` pulls each peer's entries and installs the newer versions,
 * so a node that was down or cut off catches up by itself.  Installing a
 * version found on any replica is what a read's write-back does anyway, so
 * it is safe at any time.
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
    /* Called once, before the replica leaves the recovering state, when it
     * may serve reads (recovery done or new cluster): the node makes that
     * durable. */
    void (*on_ready)(void *arg, const char *why);
    void *arg; /* for install and on_ready */
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

#endif
