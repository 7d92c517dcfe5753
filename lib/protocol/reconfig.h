/* Membership changes, the engine every node runs (docs/design.md,
 * "Membership changes").
 *
 * A configuration is (epoch, R, members).  The configuration of epoch e+1
 * is chosen by single-decree Paxos among the members of epoch e
 * (config_agree.h), so two concurrent changes cannot both win.  A node
 * that drives a change (an administrator's CHANGE reached it) then:
 *   1. installs the joint view (e, e+1) on every member of both: from now
 *      on operations need quorums of both configurations; it waits until,
 *      for every partition, a quorum of its replicas under e holds the
 *      joint view (they refuse requests stamped with the old one), so no
 *      operation on e alone can complete any more;
 *   2. waits until every node that stores, under e+1, a partition the
 *      change moves has copied it (transfer.h);
 *   3. installs e+1 alone everywhere; members it removed learn that they
 *      are removed and refuse everything from then on.
 * Every step is idempotent and recorded before it is acknowledged, so a
 * driver that crashes leaves the change where the next CHANGE (on any
 * node) finds it: it completes the interrupted change first, then makes
 * its own.  Nodes that missed a step catch up by asking the members they
 * know for their views (periodically, and when a request is refused).
 *
 * Positions: every configuration is derived from the previous one
 * (dht_membership_derive) so positions never change within a process; new
 * members' addresses are added to the transport (add_peer) at the position
 * the derivation gave them.
 *
 * Threads: the control entry point and the check may run on any thread;
 * one mutex guards the engine.  persist and on_view are called with it
 * held (they must not call back into the engine).
 */
#ifndef DHT_RECONFIG_H
#define DHT_RECONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/control.h"
#include "protocol/recovery.h"
#include "protocol/replica.h"
#include "protocol/transport.h"
#include "protocol/view.h"

typedef struct dht_reconfig dht_reconfig;

/* What a node records durably about its configuration. */
typedef struct {
    uint64_t epoch;       /* 0: no configuration yet (waiting to join) */
    const char *cur;      /* epoch's configuration line (NULL when epoch is 0) */
    const char *next;     /* while joint, epoch+1's; else NULL */
    bool transfer_done;   /* joint: this node's copy is complete */
    bool removed;         /* removed from the cluster: serves nothing, for good */
    const uint8_t *acceptor; /* Paxos acceptor state (dht_agree_acceptor_encode) */
    size_t acceptor_len;
    uint64_t cluster_id;  /* the cluster's id (a joining node learns it); 0: none */
} dht_reconfig_state;

typedef struct {
    dht_replica *replica;
    /* The positions the transport has (one per peer, in order) and this
     * process's among them.  With epoch >= 1 it is also the configuration
     * of that epoch; with epoch 0 (joining) only an address book. */
    const dht_membership *base;
    uint64_t epoch;
    const char *next;           /* a recorded joint next configuration line, or NULL */
    bool transfer_done, removed;
    const uint8_t *acceptor;    /* recorded acceptor state, or NULL (fresh) */
    size_t acceptor_len;
    uint64_t incarnation;       /* never 0 */
    uint64_t seed;              /* Paxos backoff jitter; 0: random */
    int64_t poll_ns;            /* driver's step retry; default 100 ms */
    int64_t catch_up_ns;        /* periodic view check; default 2 s */
    int64_t rpc_timeout_ns;     /* one control call; default 1 s */
    /* Records st durably before returning 0 (-1: not recorded; the engine
     * then keeps its previous state). */
    int (*persist)(void *arg, const dht_reconfig_state *st);
    /* The node now runs on v (NULL never); takes its own reference if it
     * keeps v. */
    void (*on_view)(void *arg, dht_view *v, bool removed);
    /* This node's copy for the change in progress is complete (called with
     * the engine's lock held). NULL: nothing. */
    void (*on_copied)(void *arg);
    /* The cluster id to tell others (0: none). */
    uint64_t (*cluster_id)(void *arg);
    dht_install_fn install;     /* the node's write path, for the transfer */
    void *arg;
} dht_reconfig_config;

/* NULL on allocation failure or an invalid config (reason in err). */
dht_reconfig *dht_reconfig_new(dht_transport *t, const dht_reconfig_config *cfg, char *err,
                               size_t errlen);
/* Hands the recorded view (if any) to on_view, under the engine's lock:
 * the node's first view.  Call before the transport may deliver controls
 * to the engine. */
void dht_reconfig_publish(dht_reconfig *rc);
/* Starts timers (catch-up, an unfinished copy).  0 or -1. */
int dht_reconfig_start(dht_reconfig *rc);
/* No new step starts; never blocks. */
void dht_reconfig_request_stop(dht_reconfig *rc);
/* Waits for steps in flight (the transport must still deliver callbacks),
 * then frees rc. */
void dht_reconfig_free(dht_reconfig *rc);

/* The view now: a new reference, or NULL while joining. */
dht_view *dht_reconfig_view(dht_reconfig *rc);
bool dht_reconfig_removed(dht_reconfig *rc);
bool dht_reconfig_transfer_done(dht_reconfig *rc);

/* For the transport's check of a replica request's stamp: 0 to serve it,
 * else -1 with the reason (a stale or unknown view, a mismatch, a removed
 * or joining node).  A request from a newer view starts a catch-up. */
int dht_reconfig_check(dht_reconfig *rc, uint64_t config, uint64_t view, char *why, size_t len);
/* Stamps a request with the view now (view number and fingerprint). */
void dht_reconfig_stamp(dht_reconfig *rc, dht_msg *m);
/* Asks the members for newer views now (at most every 100 ms). */
void dht_reconfig_catch_up(dht_reconfig *rc);

/* The service's control entry point (transport.h's contract). */
void dht_reconfig_control(dht_reconfig *rc, const uint8_t *req, size_t len,
                          dht_control_done done, void *done_arg);

/* Parses a configuration line into R and a comma-separated member list
 * (list must hold DHT_CONTROL_TEXT_MAX bytes); 0 or -1 with a reason. */
int dht_config_line_parse(const char *line, size_t len, int *replicas, char *list,
                          size_t listlen, char *err, size_t errlen);

#endif
