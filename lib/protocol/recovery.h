/* State sync between replicas: the start-up decision of an empty node,
 * recovery of a node that lost its disk, and background anti-entropy.
 *
 * An empty replica starts "recovering" (no reads, no locks; writes are
 * accepted).  It asks its peers whether they hold state:
 *  - a peer that is not recovering means the cluster exists and this node
 *    lost its data (or replaces one): it copies every key from N-Q+1 peers
 *    (paged Scan, merged by version through the normal write path, so
 *    every copied entry is logged), which intersects every quorum that
 *    acknowledged a write without us; then it serves;
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
 * No gRPC: works over any dht_transport.  One thread; may block.
 */
#ifndef DHT_RECOVERY_H
#define DHT_RECOVERY_H

#include <stdint.h>

#include "protocol/replica.h"
#include "protocol/transport.h"

typedef struct dht_recovery dht_recovery;

typedef struct {
    int self;                 /* our peer index; -1 if we are not a replica */
    uint32_t page;            /* entries per Scan page; default 512          */
    int64_t rpc_timeout_ns;   /* one Scan; default 2 s                       */
    int64_t ae_interval_ns;   /* between anti-entropy passes; default 1 s    */
    int64_t page_pause_ns;    /* between pages: bounds the rate; 5 ms        */
    int64_t retry_ns;         /* start-up question retry; default 200 ms     */
    /* Called once, from the sync thread, when the replica may serve reads
     * (recovery done or new cluster): the server makes that durable. */
    void (*on_ready)(void *arg, const char *why);
    void *arg;
} dht_recovery_config;

void dht_recovery_config_default(dht_recovery_config *cfg);

/* Starts the sync thread.  If r is recovering it first runs the start-up
 * decision above; then anti-entropy until stopped. */
dht_recovery *dht_recovery_start(dht_transport *t, dht_replica *r, const dht_recovery_config *cfg);
/* Stops and joins the thread (interrupting its waits), frees s. */
void dht_recovery_stop(dht_recovery *s);

#endif
