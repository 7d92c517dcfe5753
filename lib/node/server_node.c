/* The process assembly of a node: see server_node.h.  The order of start
 * and stop is the point of this file: storage before the server (a request
 * must find the replica loaded), the server before the node's coordinator
 * (it sends through the transport), and on the way out recovery first (it
 * sends), then the transport (its calls drain), then group commit (the
 * transport's last batches complete), then the coordinator and storage. */
#include "node/server_node.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "net/transport_grpc.h"
#include "node/node.h"
#include "storage/durable.h"
#include "storage/group_commit.h"

struct dht_server_node {
    dht_replica *replica;
    dht_durable *durable;
    dht_group_commit *commit;
    dht_grpc *grpc;
    dht_node *node;
    char *config_line; /* dht_membership_describe of the members */
};

static int64_t wall_now(void *arg)
{
    (void)arg;
    return dht_now_ns();
}

static int mark_initialized(void *arg, const char *why)
{
    return dht_durable_mark_initialized(arg, why);
}

static uint64_t cluster_id(void *arg)
{
    return dht_durable_cluster_id(arg);
}

static int set_cluster_id(void *arg, uint64_t id)
{
    return dht_durable_set_cluster_id(arg, id) == 0 ? 0 : -1;
}

static int64_t log_bytes(void *arg)
{
    int64_t n = dht_durable_disk_bytes(arg);
    return n < 0 ? -1 : n;
}

static int commit_submit(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                         void (*done)(void *), void *done_arg)
{
    return dht_group_commit_submit(arg, reqs, reps, n, done, done_arg);
}

static int is_serving(void *arg)
{
    return dht_node_serving(arg);
}

static void teardown(dht_server_node *s)
{
    if (s->node)
        dht_node_stop(s->node);
    if (s->grpc)
        dht_grpc_stop(s->grpc);
    if (s->commit)
        dht_group_commit_stop(s->commit);
    dht_node_free(s->node);
    if (s->durable)
        dht_durable_close(s->durable);
    dht_replica_free(s->replica);
    free(s->config_line);
    free(s);
}

/* The data directory must have been made for this configuration: a node
 * that stored its keys under other members or another R would serve a
 * placement it does not hold.  A new directory records it; one from before
 * configurations were recorded (every member stored every key) is this
 * configuration only when every member stores every key, R = N. */
static int check_config(dht_server_node *s, const dht_server_node_config *cfg, char *err,
                        size_t errlen)
{
    const char *recorded = dht_durable_config(s->durable);
    bool holds = dht_replica_size(s->replica) > 0 || dht_durable_initialized(s->durable) ||
                 dht_durable_cluster_id(s->durable) != 0;
    /* A directory that holds nothing yet (a start with a mistyped member
     * list or R, never part of a cluster) takes the configuration it is
     * started with now. */
    if (recorded != NULL && !holds && strcmp(recorded, s->config_line) != 0) {
        DHT_INFO("data directory %s holds no data yet: its recorded configuration (%s) is "
                 "replaced by this one", cfg->data_dir, recorded);
        recorded = NULL;
    }
    if (recorded != NULL) {
        if (strcmp(recorded, s->config_line) == 0)
            return 0;
        snprintf(err, errlen,
                 "data directory %s was made for another configuration of the cluster:\n"
                 "  recorded: %s\n"
                 "  now:      %s\n"
                 "changing the members or the replicas of an existing cluster by restarting "
                 "its nodes is not supported (membership changes come later): start this node "
                 "with the recorded members and --replicas; a cluster of other members or "
                 "replicas needs new, empty data directories on every node",
                 cfg->data_dir, recorded, s->config_line);
        return -1;
    }
    int n = dht_membership_size(cfg->members);
    int r = dht_membership_replica_count(cfg->members);
    if (holds && r != n) {
        snprintf(err, errlen,
                 "data directory %s holds data but records no configuration: it was made by "
                 "the earlier version of the store, in which every member stored every key, "
                 "so it can only be started with the members it was made with, every one "
                 "storing every key: --replicas %d (the number of members), not %d",
                 cfg->data_dir, n, r);
        return -1;
    }
    int rc = dht_durable_set_config(s->durable, s->config_line);
    if (rc != 0) {
        snprintf(err, errlen, "data directory %s: cannot record the configuration: %s",
                 cfg->data_dir, strerror(-rc));
        return -1;
    }
    if (holds)
        DHT_INFO("data directory %s is from before configurations were recorded (every "
                 "member stores every key, as here): recorded this configuration",
                 cfg->data_dir);
    return 0;
}

int dht_server_node_start(const dht_server_node_config *cfg, dht_server_node **out, char *err,
                          size_t errlen)
{
    dht_server_node *s = calloc(1, sizeof *s);
    if (s == NULL || (s->replica = dht_replica_new()) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return -1;
    }
    size_t len = dht_membership_describe(cfg->members, NULL, 0) + 1;
    s->config_line = malloc(len);
    if (s->config_line == NULL) {
        snprintf(err, errlen, "out of memory");
        teardown(s);
        return -1;
    }
    dht_membership_describe(cfg->members, s->config_line, len);
    DHT_INFO("configuration %s (fingerprint %016" PRIx64 ")", s->config_line,
             dht_membership_fingerprint(cfg->members));
    int64_t t0 = dht_now_ns();
    if (dht_durable_open(cfg->data_dir, cfg->fsync, s->replica, &s->durable, err, errlen) != 0) {
        teardown(s);
        return -1;
    }
    DHT_INFO("data directory %s (fsync %s): %zu keys loaded in %.1f ms%s", cfg->data_dir,
             dht_fsync_mode_name(cfg->fsync), dht_replica_size(s->replica),
             (double)(dht_now_ns() - t0) / 1e6,
             dht_durable_initialized(s->durable) ? "" : ", not initialized: recovering");
    if (check_config(s, cfg, err, errlen) != 0) {
        teardown(s);
        return -1;
    }
    s->commit = dht_group_commit_start(s->replica);
    if (s->commit == NULL) {
        snprintf(err, errlen, "cannot start the group-commit thread");
        teardown(s);
        return -1;
    }

    dht_node_config nc = {.members = cfg->members, .replica = s->replica,
                          .mark_initialized = mark_initialized, .cluster_id = cluster_id,
                          .set_cluster_id = set_cluster_id, .log_bytes = log_bytes,
                          .storage_arg = s->durable,
                          .commit = commit_submit, .commit_arg = s->commit, .now = wall_now};
    dht_coord_config_default(&nc.coord);
    nc.coord.deadline_ns = cfg->deadline_ms * DHT_NS_PER_MS;
    nc.coord.lease_ms = (uint32_t)cfg->lease_ms;
    dht_recovery_config_default(&nc.recovery);
    nc.recovery.ae_interval_ns = cfg->ae_interval_ms * DHT_NS_PER_MS;
    s->node = dht_node_new(&nc);
    if (s->node == NULL) {
        snprintf(err, errlen, "out of memory");
        teardown(s);
        return -1;
    }

    int n = dht_membership_size(cfg->members);
    const char **peers = calloc((size_t)n, sizeof *peers);
    if (peers == NULL) {
        snprintf(err, errlen, "out of memory");
        teardown(s);
        return -1;
    }
    for (int i = 0; i < n; i++)
        peers[i] = dht_membership_addr(cfg->members, i);
    dht_grpc_config gc = {.peers = peers, .npeers = n, .workers = cfg->workers,
                          .self = dht_membership_self(cfg->members),
                          .listen_addr = cfg->listen_addr, .service = dht_node_service(s->node),
                          .serving = is_serving, .serving_arg = s->node, .tls = cfg->tls,
                          .fingerprint = dht_membership_fingerprint(cfg->members),
                          .config_line = s->config_line};
    int rc = dht_grpc_start(&gc, &s->grpc, err, errlen);
    free(peers); /* the transport copied them */
    if (rc != 0) {
        s->grpc = NULL;
        teardown(s);
        return -1;
    }
    if (dht_node_start(s->node, dht_grpc_transport(s->grpc), err, errlen) != 0) {
        teardown(s);
        return -1;
    }
    *out = s;
    return 0;
}

void dht_server_node_stop(dht_server_node *s)
{
    if (s != NULL)
        teardown(s);
}
