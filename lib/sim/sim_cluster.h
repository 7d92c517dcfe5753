/* A simulated cluster of whole nodes (lib/node) over the in-memory
 * network: each node is the real assembly (public service, coordinator,
 * replica, group commit, recovery), with simulated storage and a
 * group-commit queue that the simulator drives, all from one seed.
 *
 * Storage: every node has a stable log (what an fsync made durable) and a
 * group-commit queue (batches received but not yet synced).  A commit
 * round runs after a random fsync latency; it appends the batches' writes
 * to the stable log and only then answers them, as the real group commit
 * does.  A crash loses the queue (nothing of it was acknowledged) and the
 * whole process state (replica, locks, coordinator); a restart replays the
 * stable log into a new incarnation; a wipe also loses the stable log.
 *
 * Single-threaded and deterministic: drive it with sim_run* on
 * sim_cluster_world().  Used by tests/test_node_sim.c.
 */
#ifndef DHT_SIM_CLUSTER_H
#define DHT_SIM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/replica.h"
#include "sim/sim_transport.h"

typedef struct sim_cluster sim_cluster;

typedef struct {
    uint64_t seed;
    int nodes;                /* hosts, 1..DHT_MAX_MEMBERS */
    int members;              /* of them, the first ones form the cluster (epoch 1);
                                 0: all.  The others wait unstarted (spares). */
    int replicas;             /* R per key; 0: the default, min(3, nodes) */
    double loss;              /* per message */
    int64_t fsync_min_ns;     /* group-commit latency; default 50 us .. 1 ms */
    int64_t fsync_max_ns;
    bool trace;               /* record sim_trace_text() */
} sim_cluster_config;

/* Starts every node with empty storage (a new cluster). */
sim_cluster *sim_cluster_new(const sim_cluster_config *cfg);
/* Stops every node, drains the network, frees everything. */
void sim_cluster_free(sim_cluster *c);
sim_world *sim_cluster_world(sim_cluster *c);

/* A client's call to node's public KeyValue entry point with a deadline
 * timeout_ns from now.  Put: ok 1 applied, 0 not applied, -1 unknown (also
 * when the node crashed first, as its connection would break).  Get: ok 1
 * with the value, 0 failed. */
typedef void (*sim_put_cb)(void *arg, int ok);
typedef void (*sim_get_cb)(void *arg, int ok, int64_t value);
void sim_cluster_put(sim_cluster *c, int node, int64_t key, int64_t value, int64_t timeout_ns,
                     sim_put_cb cb, void *arg);
void sim_cluster_get(sim_cluster *c, int node, int64_t key, int64_t timeout_ns, sim_get_cb cb,
                     void *arg);

void sim_cluster_crash(sim_cluster *c, int node);
/* Starts a new incarnation from the stable log (wipe: from nothing). */
void sim_cluster_restart(sim_cluster *c, int node, bool wipe);
void sim_cluster_pause(sim_cluster *c, int node);
void sim_cluster_resume(sim_cluster *c, int node);

bool sim_cluster_up(const sim_cluster *c, int node);
bool sim_cluster_serving(const sim_cluster *c, int node);
/* Whether node is one of key's replicas (placement, membership.h). */
bool sim_cluster_stores(const sim_cluster *c, int node, int64_t key);
/* The cluster id node's storage records (0: none). */
uint64_t sim_cluster_id(const sim_cluster *c, int node);
/* The current incarnation's replica (NULL while crashed). */
dht_replica *sim_cluster_replica(sim_cluster *c, int node);
/* Writes in the stable log, and write requests waiting for a commit round. */
size_t sim_cluster_synced(const sim_cluster *c, int node);
size_t sim_cluster_unsynced(const sim_cluster *c, int node);

/* Membership changes.  A spare host starts as a joining node (it waits to
 * be added). */
void sim_cluster_start_joiner(sim_cluster *c, int node);
/* An administrator's CHANGE (add or remove host `target`) sent to node;
 * cb gets the outcome and the node's text (or the transport's failure). */
typedef void (*sim_change_cb)(void *arg, bool ok, const char *text);
void sim_cluster_change(sim_cluster *c, int node, bool add, int target, int64_t timeout_ns,
                        sim_change_cb cb, void *arg);
/* node's view number now (recorded one while down); 0: none. */
uint64_t sim_cluster_view_number(sim_cluster *c, int node);
bool sim_cluster_removed(sim_cluster *c, int node);
/* Whether node stores key under the current configuration of its view. */
bool sim_cluster_stores_now(sim_cluster *c, int node, int64_t key);

#endif
