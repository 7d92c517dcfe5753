/* A node, assembled: the public service runs the coordinator, replica
 * requests reach the replica (batches with writes through group commit),
 * and recovery brings an empty or stale replica up to date.
 *
 * The node owns none of its I/O.  Storage (the replica with its persist
 * hook, and whether it holds a complete state), group commit, the clock
 * and the transport are handed to it, so the same assembly runs as a
 * process (node/server_node.c: the WAL, the group-commit thread, gRPC) and
 * inside the deterministic simulator (sim/sim_cluster.c: simulated storage
 * and network driven from one seed).  It is the composition of the
 * protocol's pieces and nothing else: a request goes down from the
 * transport through the node and never climbs back to the binary.
 *
 * Lifecycle: dht_node_new, hand dht_node_service to the transport, then
 * dht_node_start with that transport; to end, dht_node_stop (recovery
 * stops), stop the transport and group commit, dht_node_free (waits for the
 * coordinator's stragglers).
 */
#ifndef DHT_NODE_H
#define DHT_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol/coordinator.h"
#include "protocol/membership.h"
#include "protocol/reconfig.h"
#include "protocol/recovery.h"
#include "protocol/replica.h"
#include "protocol/transport.h"

typedef struct dht_node dht_node;

typedef struct {
    const dht_membership *members; /* who we are and our peers; outlives the node */
    dht_replica *replica;          /* loaded, persist hook set; the caller frees it */
    /* Records durably that the replica's state is complete (called once,
     * when recovery decides it may serve). */
    int (*mark_initialized)(void *arg, const char *why);
    /* The cluster id recorded in the data directory (0: none: this replica
     * has never been part of a cluster), and recording one durably (0, or
     * -1 when it could not be written). */
    uint64_t (*cluster_id)(void *arg);
    int (*set_cluster_id)(void *arg, uint64_t id);
    /* Bytes of the write-ahead log on disk, for Stats; NULL: unknown. */
    int64_t (*log_bytes)(void *arg);
    void *storage_arg;
    /* Group commit: stores a batch with writes and answers it later
     * (dht_group_commit_submit's contract). */
    dht_install_fn commit;
    void *commit_arg;
    /* The clock of leases and deadlines (monotonic ns). */
    int64_t (*now)(void *arg);
    void *clock_arg;
    /* The configuration the data directory records (reconfig.h): its epoch
     * (0: 1, members is that configuration), a joint next configuration
     * line or NULL, whether this node's copy for it is done, whether the
     * node was removed, and the Paxos acceptor's state (NULL: fresh).
     * joining: the node waits to be added (members is only an address
     * book of seeds and itself). */
    uint64_t epoch;
    const char *next;
    bool transfer_done, removed, joining;
    const uint8_t *acceptor;
    size_t acceptor_len;
    /* Records the configuration state durably (0, or -1: not recorded);
     * NULL: nothing is recorded (tests). */
    int (*persist_config)(void *arg, const dht_reconfig_state *st);
    void *persist_arg; /* for persist_config; NULL: storage_arg */
    /* This process's incarnation (recovery.h); 0: drawn from the OS. */
    uint64_t incarnation;
    /* Protocol settings; members, install and on_ready are the node's. */
    dht_coord_config coord;
    dht_recovery_config recovery;
} dht_node_config;

/* Returns NULL on allocation failure. */
dht_node *dht_node_new(const dht_node_config *cfg);
/* What the transport delivers incoming calls to; valid until dht_node_free.
 * Public calls that arrive before dht_node_start fail ("node is starting"). */
const dht_service *dht_node_service(dht_node *n);
/* Starts the coordinator and recovery over t (which must outlive the
 * node); 0, or -1 with a reason. */
int dht_node_start(dht_node *n, dht_transport *t, char *err, size_t errlen);
/* True once the replica may serve reads (not recovering). */
bool dht_node_serving(const dht_node *n);
/* Asks recovery to stop without waiting (for the simulator's one thread). */
void dht_node_request_stop(dht_node *n);
/* Stops recovery, waiting for its step in flight; the transport must still
 * deliver callbacks. */
void dht_node_stop(dht_node *n);
/* Waits for the coordinator's operations to end, then frees n. */
void dht_node_free(dht_node *n);
/* The node's membership engine (NULL before dht_node_start). */
dht_reconfig *dht_node_reconfig(dht_node *n);

#endif
