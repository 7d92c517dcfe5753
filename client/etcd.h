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
 * Calls are asynchronous: the callback runs once on a transport worker, so
 * one load-generator thread keeps many calls in flight (kvclient.c). */
#ifndef DHT_CLIENT_ETCD_H
#define DHT_CLIENT_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dht_grpc;

typedef struct {
    int status;    /* gRPC status; -1: the transport shut down */
    bool decoded;  /* status 0 and the reply parsed */
    int64_t value; /* Range: the value read (0 for no kvs) */
    const char *why; /* when status is 0 but !decoded */
} etcd_result;

typedef void (*etcd_cb)(void *arg, const etcd_result *r);

/* Put(key, value) (is_get false) or a linearizable Range(key) to member
 * `peer` of the transport's peer list, with a deadline timeout_ns from now.
 * Returns nonzero if the call could not start (cb will not run). */
int etcd_call_async(struct dht_grpc *g, int peer, int64_t timeout_ns, bool is_get, int64_t key,
                    int64_t value, etcd_cb cb, void *arg);

#endif
