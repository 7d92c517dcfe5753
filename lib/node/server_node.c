/* The process assembly of a node: see server_node.h.  The order of start
 * and stop is the point of this file: storage before the server (a request
 * must find the replica loaded), the server before the node's coordinator
 * (it sends through the transport), and on the way out recovery first (it
 * sends), then the transport (its calls drain), then group commit (the
 * transport's last batches complete), then the coordinator and storage. */
#include "node/server_node.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "net/transport_grpc.h"
#include "node/node.h"
#include "storage/config_store.h"
#include "storage/durable.h"
#include "storage/group_commit.h"

struct dht_server_node {
    dht_replica *replica;
    dht_durable *durable;
    dht_group_commit *commit;
    dht_grpc *grpc;
    dht_node *node;
    char *config_line;          /* dht_membership_describe of the start configuration */
    char *data_dir;
    char *self;                 /* normalised */
    dht_membership *members;    /* the start configuration (positions = the transport's peers) */
    dht_config_record rec;      /* what the directory records (zeroed: nothing) */
    char *next_line;            /* rec's joint next configuration as a line, or NULL */
    pthread_mutex_t rec_mu;     /* persist runs on transport threads */
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
    free(s->data_dir);
    free(s->self);
    free(s->next_line);
    dht_membership_free(s->members);
    dht_config_record_free(&s->rec);
    pthread_mutex_destroy(&s->rec_mu);
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
                 "changing the members of a running cluster is done with `client members "
                 "add|remove`, not by restarting with another MEMBERS; R cannot change: start "
                 "this node with the recorded members and --replicas",
                 cfg->data_dir, recorded, s->config_line);
        return -1;
    }
    int n = dht_membership_size(s->members);
    int r = dht_membership_replica_count(s->members);
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

/* The record's configuration as a line (dht_membership_describe's form). */
static char *record_line(int replicas, const char *members)
{
    size_t need = (size_t)snprintf(NULL, 0, "replicas=%d partitions=%d members=%s", replicas,
                                   DHT_PARTITIONS, members) + 1;
    char *line = malloc(need);
    if (line != NULL)
        snprintf(line, need, "replicas=%d partitions=%d members=%s", replicas, DHT_PARTITIONS,
                 members);
    return line;
}

/* The comma-separated, normalised, sorted members of a configuration
 * line (malloc'd), and R. */
static char *line_members(const char *line, int *replicas, char *err, size_t errlen)
{
    char *list = malloc(DHT_CONTROL_TEXT_MAX);
    if (list == NULL ||
        dht_config_line_parse(line, strlen(line), replicas, list, DHT_CONTROL_TEXT_MAX, err,
                              errlen) != 0) {
        free(list);
        return NULL;
    }
    return list;
}

/* The engine's state, durably, as the directory's configuration record. */
static int persist_config(void *arg, const dht_reconfig_state *st)
{
    dht_server_node *s = arg;
    char err[512];
    dht_config_record r = {0};
    int rc = -1;
    if (st->cur == NULL || st->epoch == 0)
        return -1; /* no configuration to record (the engine never asks) */
    pthread_mutex_lock(&s->rec_mu);
    r.self = s->self;
    r.cluster_id = st->cluster_id ? st->cluster_id : dht_durable_cluster_id(s->durable);
    r.epoch = st->epoch;
    char *cur = line_members(st->cur, &r.replicas, err, sizeof err);
    char *next = NULL;
    /* A removed node keeps no change in progress: it takes part in none. */
    if (cur != NULL && st->next != NULL && !st->removed) {
        next = line_members(st->next, &r.next_replicas, err, sizeof err);
        if (next == NULL)
            goto out;
        r.next_epoch = st->epoch + 1;
    }
    if (cur == NULL)
        goto out;
    r.members = cur;
    r.next_members = next;
    r.transfer_done = st->transfer_done && next != NULL;
    r.removed_epoch = st->removed ? st->epoch : 0;
    r.acceptor = (uint8_t *)st->acceptor;
    r.acceptor_len = st->acceptor_len;
    rc = dht_config_store_save(s->data_dir, &r, err, sizeof err);
out:
    pthread_mutex_unlock(&s->rec_mu);
    if (rc != 0)
        DHT_ERROR("cannot record the configuration: %s", err);
    free(cur);
    free(next);
    return rc;
}

/* Positions for a process: every address it may talk to first (the
 * configuration's members, the next configuration's, the seeds, itself),
 * as an address book; the configuration is derived from it. */
static int book_of(const char *a, const char *b, const char *c, const char *self,
                   dht_membership **out, char *err, size_t errlen)
{
    size_t cap = (a ? strlen(a) : 0) + (b ? strlen(b) : 0) + (c ? strlen(c) : 0) +
                 strlen(self) + 8;
    char *all = malloc(cap), *seen = malloc(cap + 2);
    if (all == NULL || seen == NULL) {
        free(all);
        free(seen);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    all[0] = '\0';
    const char *lists[] = {a, b, c, self};
    size_t used = 0;
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        if (lists[l] == NULL)
            continue;
        char *copy = strdup(lists[l]), *save = NULL;
        if (copy == NULL)
            break;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
            if (dht_member_addr_normalise(tok, norm, sizeof norm, why, sizeof why) != 0)
                continue;
            /* ",norm," against ",all," finds a duplicate exactly. */
            snprintf(seen, cap + 2, ",%s,", all);
            char probe[DHT_ADDR_MAX + 2];
            snprintf(probe, sizeof probe, ",%s,", norm);
            if (strstr(seen, probe) != NULL)
                continue;
            used += (size_t)snprintf(all + used, cap - used, "%s%s", used ? "," : "", norm);
        }
        free(copy);
    }
    free(seen);
    int rc = dht_membership_new(all, self, 1, out, err, errlen);
    free(all);
    return rc;
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
    pthread_mutex_init(&s->rec_mu, NULL);
    char norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
    if (dht_member_addr_normalise(cfg->self, norm, sizeof norm, why, sizeof why) != 0) {
        snprintf(err, errlen, "this node's address: %s", why);
        teardown(s);
        return -1;
    }
    s->self = strdup(norm);
    s->data_dir = strdup(cfg->data_dir);
    if (s->self == NULL || s->data_dir == NULL) {
        snprintf(err, errlen, "out of memory");
        teardown(s);
        return -1;
    }
    int64_t t0 = dht_now_ns();
    if (dht_durable_open(cfg->data_dir, cfg->fsync, s->replica, &s->durable, err, errlen) != 0) {
        teardown(s);
        return -1;
    }
    DHT_INFO("data directory %s (fsync %s): %zu keys loaded in %.1f ms%s", cfg->data_dir,
             dht_fsync_mode_name(cfg->fsync), dht_replica_size(s->replica),
             (double)(dht_now_ns() - t0) / 1e6,
             dht_durable_initialized(s->durable) ? "" : ", not initialized: recovering");
    int loaded = dht_config_store_load(cfg->data_dir, &s->rec, err, errlen);
    if (loaded < 0) {
        teardown(s);
        return -1;
    }
    bool joining = false;
    uint64_t epoch = 1;
    if (loaded == 0) {
        /* The recorded configuration; MEMBERS is only a seed now. */
        if (strcmp(s->rec.self, s->self) != 0) {
            snprintf(err, errlen,
                     "data directory %s belongs to the node %s, not to this node (%s): give "
                     "each node its own data directory",
                     cfg->data_dir, s->rec.self, s->self);
            teardown(s);
            return -1;
        }
        if (cfg->replicas_given && cfg->replicas != s->rec.replicas) {
            snprintf(err, errlen,
                     "data directory %s records %d replicas per key, not the %d asked for: R "
                     "cannot change in a running cluster",
                     cfg->data_dir, s->rec.replicas, cfg->replicas);
            teardown(s);
            return -1;
        }
        dht_membership *book;
        if (book_of(s->rec.members, s->rec.next_members, cfg->members, s->self, &book, err,
                    errlen) != 0) {
            teardown(s);
            return -1;
        }
        int rc = dht_membership_derive(book, s->rec.members, s->rec.replicas, &s->members, err,
                                       errlen);
        dht_membership_free(book);
        if (rc != 0) {
            teardown(s);
            return -1;
        }
        if (s->rec.next_members != NULL &&
            (s->next_line = record_line(s->rec.next_replicas, s->rec.next_members)) == NULL) {
            snprintf(err, errlen, "out of memory");
            teardown(s);
            return -1;
        }
        epoch = s->rec.epoch;
        dht_membership *seeds;
        if (dht_membership_new(cfg->members, NULL, 0, &seeds, err, errlen) == 0) {
            size_t need = dht_membership_describe(seeds, NULL, 0) + 1;
            char *line = malloc(need);
            char *mine = record_line(dht_membership_replica_count(seeds), s->rec.members);
            if (line != NULL && mine != NULL) {
                dht_membership_describe(seeds, line, need);
                if (strstr(line, " members=") && strcmp(strstr(line, " members="),
                                                        strstr(mine, " members=")) != 0)
                    DHT_INFO("MEMBERS (%s) is only a seed: this node runs on the configuration "
                             "its data directory records, and learns newer ones from the "
                             "members",
                             cfg->members);
            }
            free(line);
            free(mine);
            dht_membership_free(seeds);
        }
        char *d = dht_config_record_describe(&s->rec);
        DHT_INFO("recorded configuration: %s%s", d ? d : "?",
                 s->rec.removed_epoch ? " (this node was removed: it serves nothing)" : "");
        free(d);
    } else if (cfg->join) {
        bool holds = dht_replica_size(s->replica) > 0 || dht_durable_initialized(s->durable) ||
                     dht_durable_cluster_id(s->durable) != 0;
        if (holds) {
            snprintf(err, errlen,
                     "--join needs an empty data directory, and %s holds data: a node joins a "
                     "cluster empty and copies what it will store",
                     cfg->data_dir);
            teardown(s);
            return -1;
        }
        if (book_of(cfg->members, NULL, NULL, s->self, &s->members, err, errlen) != 0) {
            teardown(s);
            return -1;
        }
        joining = true;
        DHT_INFO("joining: waiting to be added (`client --servers %s members add %s`)",
                 cfg->members, s->self);
    } else {
        dht_membership *seeds;
        if (dht_membership_new(cfg->members, NULL, 0, &seeds, err, errlen) != 0) {
            teardown(s);
            return -1;
        }
        bool listed = dht_membership_find(seeds, s->self) >= 0;
        dht_membership_free(seeds);
        if (!listed) {
            snprintf(err, errlen,
                     "this node (%s) is not in the members list %s; fix MEMBERS or pass --id "
                     "N, or start it with --join to add it to a running cluster",
                     s->self, cfg->members);
            teardown(s);
            return -1;
        }
        if (dht_membership_new(cfg->members, s->self, cfg->replicas, &s->members, err, errlen) !=
            0) {
            teardown(s);
            return -1;
        }
    }
    size_t len = dht_membership_describe(s->members, NULL, 0) + 1;
    s->config_line = malloc(len);
    if (s->config_line == NULL) {
        snprintf(err, errlen, "out of memory");
        teardown(s);
        return -1;
    }
    dht_membership_describe(s->members, s->config_line, len);
    if (!joining)
        DHT_INFO("configuration %s (fingerprint %016" PRIx64 ") at epoch %llu", s->config_line,
                 dht_membership_fingerprint(s->members), (unsigned long long)epoch);
    if (loaded != 0 && !joining) {
        if (check_config(s, cfg, err, errlen) != 0) {
            teardown(s);
            return -1;
        }
        /* From now on the directory records what this node knows, and
         * MEMBERS is only a seed. */
        char *list = NULL;
        int r;
        list = line_members(s->config_line, &r, err, errlen);
        dht_config_record first = {.self = s->self,
                                   .cluster_id = dht_durable_cluster_id(s->durable),
                                   .epoch = 1, .replicas = r, .members = list};
        if (list == NULL || dht_config_store_save(cfg->data_dir, &first, err, errlen) != 0) {
            free(list);
            teardown(s);
            return -1;
        }
        free(list);
    }
    s->commit = dht_group_commit_start(s->replica);
    if (s->commit == NULL) {
        snprintf(err, errlen, "cannot start the group-commit thread");
        teardown(s);
        return -1;
    }

    dht_node_config nc = {.members = s->members, .replica = s->replica,
                          .mark_initialized = mark_initialized, .cluster_id = cluster_id,
                          .set_cluster_id = set_cluster_id, .log_bytes = log_bytes,
                          .storage_arg = s->durable,
                          .commit = commit_submit, .commit_arg = s->commit, .now = wall_now,
                          .epoch = epoch, .next = s->next_line,
                          .transfer_done = s->rec.transfer_done,
                          .removed = s->rec.removed_epoch != 0, .joining = joining,
                          .acceptor = s->rec.acceptor, .acceptor_len = s->rec.acceptor_len,
                          .persist_config = persist_config, .persist_arg = s};
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

    int n = dht_membership_size(s->members);
    const char **peers = calloc((size_t)n, sizeof *peers);
    if (peers == NULL) {
        snprintf(err, errlen, "out of memory");
        teardown(s);
        return -1;
    }
    for (int i = 0; i < n; i++)
        peers[i] = dht_membership_addr(s->members, i);
    dht_grpc_config gc = {.peers = peers, .npeers = n, .workers = cfg->workers,
                          .self = dht_membership_self(s->members),
                          .listen_addr = cfg->listen_addr, .service = dht_node_service(s->node),
                          .serving = is_serving, .serving_arg = s->node, .tls = cfg->tls,
                          .fingerprint = dht_membership_fingerprint(s->members),
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

bool dht_server_node_serving(dht_server_node *s)
{
    return dht_node_serving(s->node);
}

void dht_server_node_stop(dht_server_node *s)
{
    if (s != NULL)
        teardown(s);
}
