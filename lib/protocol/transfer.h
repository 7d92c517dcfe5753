/* The copy a membership change needs before its old configuration can
 * retire (docs/design.md, "Membership changes").
 *
 * In the joint view from configuration e to e+1, every node that stores a
 * partition under e+1 whose replica set the change alters copies that
 * partition from R-Q+1 of its replicas under e (itself counting as one when
 * it is one of them).  Those copies intersect every quorum of e that may
 * have acknowledged a write, so once enough of a partition's new replicas
 * hold them (R-Q+1 of them: every quorum of e+1 meets those), quorums of
 * e+1 alone see every acknowledged write and e can retire.
 *
 * Each pull is a Scan stamped with the joint view: the source answers with
 * the entries of the partitions the change gives the asker (and refuses if
 * it is not in that same view).  A copy counts only from a source that was
 * complete in those partitions (not recovering) and did not restart during
 * the pull.  Failed sources are tried again after retry_ns until the copy
 * is done or the transfer is halted; pulls run one at a time, paced like
 * recovery's.  Event-driven over the transport; no thread of its own.
 */
#ifndef DHT_TRANSFER_H
#define DHT_TRANSFER_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol/recovery.h"
#include "protocol/replica.h"
#include "protocol/transport.h"
#include "protocol/view.h"

typedef struct dht_transfer dht_transfer;

typedef struct {
    dht_view *view;         /* the joint view (the transfer takes a reference) */
    uint64_t incarnation;   /* this process's, for the Scans */
    uint32_t page;          /* entries per Scan page; default 512 */
    int64_t rpc_timeout_ns; /* one Scan; default 2 s */
    int64_t retry_ns;       /* before trying failed sources again; default 200 ms */
    int64_t page_pause_ns;  /* between pages; default 1 ms */
    dht_install_fn install; /* the node's write path (required) */
    void *install_arg;
    /* Called once, from a transport thread, when every partition has its
     * copies (at once, later, if there is nothing to copy). */
    void (*on_done)(void *arg);
    void *arg; /* for on_done */
} dht_transfer_config;

/* NULL on allocation failure or without view/install/on_done, or when the
 * view is not joint or this process has no position in it. */
dht_transfer *dht_transfer_start(dht_transport *t, dht_replica *r, const dht_transfer_config *cfg);
/* No step starts after this returns; a pending timer is revoked.  Never
 * blocks (the simulator's one thread may call it). */
void dht_transfer_request_stop(dht_transfer *x);
/* Requests a stop, waits for the step in flight (the transport must still
 * deliver callbacks), then frees x.  NULL is fine. */
void dht_transfer_stop(dht_transfer *x);
/* Whether a stop was requested and no step is in flight any more (then
 * dht_transfer_stop returns at once). */
bool dht_transfer_idle(dht_transfer *x);
/* Partitions still short of copies; 0 when done. */
int dht_transfer_pending(const dht_transfer *x);

/* Whether the change of view v moves partition part (its replica set
 * differs between the two configurations) and member p stores it
 * afterwards: what a transfer Scan from p asks for. */
bool dht_transfer_wants(const dht_view *v, int p, uint32_t part);

#endif
