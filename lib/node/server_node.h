/* A node as a process: the WAL-backed replica, the group-commit thread and
 * the gRPC transport around a dht_node.  server/main.c fills the options
 * from flags and the environment and calls start and stop; everything a
 * request does happens below this module.
 */
#ifndef DHT_SERVER_NODE_H
#define DHT_SERVER_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/transport_grpc.h"
#include "protocol/membership.h"
#include "storage/wal.h"

typedef struct dht_server_node dht_server_node;

/* Room for any reason start gives: it may quote two configuration lines. */
#define DHT_SERVER_NODE_ERR_MAX (2 * DHT_WAL_META_MAX + 1024)

typedef struct {
    /* MEMBERS: the configuration of a new cluster, or only seeds once the
     * data directory records the configuration this node knows (which may
     * have changed since: membership changes). */
    const char *members;
    const char *self;              /* this node's advertised HOST:PORT: its identity */
    int replicas;                  /* R asked for; 0: the default (or the recorded R) */
    bool replicas_given;           /* R came from a flag or the environment */
    bool join;                     /* wait to be added to a running cluster */
    const char *listen_addr;       /* "ip:port" or "[ipv6]:port" */
    const char *data_dir;
    dht_fsync_mode fsync;
    int workers;                   /* <=0: number of cores */
    int64_t deadline_ms, lease_ms, ae_interval_ms;
    const dht_grpc_tls *tls;       /* NULL: plaintext; copied by the transport */
} dht_server_node_config;

/* Opens the data directory (replaying snapshot and log), finds the
 * configuration this node runs on (the recorded one; else MEMBERS and R
 * for a new cluster, checked against what an older directory recorded;
 * else, joining, none yet), starts group commit, the gRPC server and the
 * node.  0, or -1
 * with a reason (up to DHT_SERVER_NODE_ERR_MAX bytes; one line except for a
 * configuration mismatch, which quotes both lines on lines of their own). */
int dht_server_node_start(const dht_server_node_config *cfg, dht_server_node **out, char *err,
                          size_t errlen);
/* Stops recovery, the transport (in-flight calls end by their deadlines),
 * group commit and the node, closes the log and frees s. */
void dht_server_node_stop(dht_server_node *s);
/* Whether the node serves reads now (for the process's own messages). */
bool dht_server_node_serving(dht_server_node *s);

#endif
