/* The client's handle on the store: either the fan-out coordinator (the
 * client itself locks, writes and reads on every replica) or, with --via,
 * the public KeyValue service of the listed nodes, or, with --etcd, an etcd
 * cluster's KV service (the benchmark's baseline, client/etcd.c).
 * Every operation is asynchronous (kv_put_async/kv_get_async: the callback
 * runs once on a transport thread), so the load generator keeps many in
 * flight from a couple of threads; kv_put/kv_get wait for one.
 *
 * --via and --etcd send each call to one node, `peer` (an index into the
 * transport's peer list).  The load generator gives each thread its own copy
 * of the handle with peer = client index % nodes, so the clients spread over
 * the listed nodes; when a call fails at the transport level (unreachable,
 * deadline passed) the handle moves on to the next node for its next call.
 * Both backends follow this same policy, so the two systems are driven
 * alike.  With --via, `random` also follows the cluster's members
 * (follow.h, follow_via_new): calls then go only to members, a listed node
 * that is not one (any more) is skipped, and when no listed node is left
 * the load spreads over the members the nodes report. */
#ifndef DHT_KVCLIENT_H
#define DHT_KVCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/coordinator.h"
#include "protocol/transport.h"

struct dht_grpc;
struct follow;

typedef struct {
    dht_transport *t;
    dht_coord *coord; /* NULL in --via and --etcd mode */
    int64_t deadline_ns;
    struct dht_grpc *etcd; /* --etcd: the transport whose peers are etcd members */
    int peer;              /* --via/--etcd: the node of the next call */
    /* --via following the members (follow_via_new; not owned): where calls
     * may go.  NULL: the listed nodes, as they are. */
    struct follow *via;
    int slot; /* the load's client number (kv_set_slot) */
} kvclient;

/* Makes c client number i of a load: its first node is the listed node
 * i mod n (--via, --etcd), as random's clients spread over them. */
void kv_set_slot(kvclient *c, int i);

/* What one operation came to, for its callback. */
typedef struct {
    bool is_put;
    dht_put_outcome outcome; /* put */
    int ok;                  /* get: 1 with value, 0 failed */
    int64_t value;           /* get */
    const char *reason;      /* why not applied/ok ("" otherwise); valid during the callback */
} kv_result;

typedef void (*kv_cb)(void *arg, const kv_result *r);

/* Start one operation; cb runs exactly once, later, on a transport thread.
 * c must stay valid and carry no other operation until then (its `peer`
 * moves on after a failed call).  Nonzero: not started, cb will not run. */
int kv_put_async(kvclient *c, int64_t key, int64_t value, kv_cb cb, void *arg);
int kv_get_async(kvclient *c, int64_t key, kv_cb cb, void *arg);

/* Blocking forms: put's outcome; get returns 1 and sets *value, or 0 with
 * reason. */
dht_put_outcome kv_put(kvclient *c, int64_t key, int64_t value, char *reason, size_t len);
int kv_get(kvclient *c, int64_t key, int64_t *value, char *reason, size_t len);

/* --via only: the node's own replica state of key, bypassing the protocol
 * (a diagnostic: no quorum, no write-back).  Returns 1 with value and
 * version, 0 with reason (unreachable, or the replica is recovering). */
int kv_replica_read(kvclient *c, int64_t key, int64_t *value, dht_version *ver, char *reason,
                    size_t len);

#endif
