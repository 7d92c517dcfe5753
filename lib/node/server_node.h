/* A node as a process: the WAL-backed replica, the group-commit thread and
 * the gRPC transport around a dht_node.  server/main.c fills the options
 * from flags and the environment and calls start and stop; everything a
 * request does happens below this module.
 */
#ifndef DHT_SERVER_NODE_H
#define DHT_SERVER_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "net/transport_grpc.h"
#include "protocol/membership.h"
#include "storage/wal.h"

typedef struct dht_server_node dht_server_node;

/* Room for any reason start gives: it may quote two configuration lines. */
#define DHT_SERVER_NODE_ERR_MAX (2 * DHT_WAL_META_MAX + 1024)

typedef struct {
    const dht_membership *members; /* with self set and R; outlives the server node */
    const char *listen_addr;       /* "ip:port" or "[ipv6]:port" */
    const char *data_dir;
    dht_fsync_mode fsync;
    int workers;                   /* <=0: number of cores */
    int64_t deadline_ms, lease_ms, ae_interval_ms;
    const dht_grpc_tls *tls;       /* NULL: plaintext; copied by the transport */
} dht_server_node_config;

/* Opens the data directory (replaying snapshot and log), checks that it
 * was made for this configuration (members and R; recording it in a new
 * directory), starts group commit, the gRPC server and the node.  0, or -1
 * with a reason (up to DHT_SERVER_NODE_ERR_MAX bytes; one line except for a
 * configuration mismatch, which quotes both lines on lines of their own). */
int dht_server_node_start(const dht_server_node_config *cfg, dht_server_node **out, char *err,
                          size_t errlen);
/* Stops recovery, the transport (in-flight calls end by their deadlines),
 * group commit and the node, closes the log and frees s. */
void dht_server_node_stop(dht_server_node *s);

#endif
