/* The load generator's etcd backend: put/get of int64 keys and values over
 * etcd v3's KV service (proto/etcd_kv.proto), so the benchmark drives etcd
 * and our store with the same client, threads and latency accounting.
 *
 * Mapping (docs/bench.md says the same):
 *   key   = the decimal string of k ("17", "-5"): readable with `etcdctl get 17`
 *   value = the 8 bytes of v, little endian
 *   put   = KV.Put(key, value)
 *   get   = KV.Range(key), linearizable (serializable = false); a key with
 *           no kvs reads as 0, like a never-written key of our store.
 *
 * Calls are blocking for the calling thread (an asynchronous call through
 * the transport plus a condition variable), one per thread at a time. */
#ifndef DHT_CLIENT_ETCD_H
#define DHT_CLIENT_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator.h"

struct dht_grpc;

/* Outcome of a put to member `peer` of the transport's peer list, with a
 * deadline timeout_ns from now.  Any failure of the call is
 * DHT_PUT_UNKNOWN: the request may have been committed.  *grpc_status gets
 * the gRPC status (-1: transport shutting down or call not started). */
dht_put_outcome etcd_put(struct dht_grpc *g, int peer, int64_t timeout_ns, int64_t key,
                         int64_t value, int *grpc_status, char *reason, size_t len);

/* Linearizable read: returns 1 with *value, or 0 with reason. */
int etcd_get(struct dht_grpc *g, int peer, int64_t timeout_ns, int64_t key, int64_t *value,
             int *grpc_status, char *reason, size_t len);

#endif
