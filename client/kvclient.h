/* The client's handle on the store: either the fan-out coordinator (the
 * client itself locks, writes and reads on every replica) or, with --via, a
 * single node's public KeyValue service.  Blocking calls, one per thread. */
#ifndef DHT_KVCLIENT_H
#define DHT_KVCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator.h"
#include "transport.h"

typedef struct {
    dht_transport *t;
    dht_coord *coord; /* NULL in --via mode */
    int64_t deadline_ns;
} kvclient;

dht_put_outcome kv_put(kvclient *c, int64_t key, int64_t value, char *reason, size_t len);
/* Returns 1 and sets *value, or 0 with reason. */
int kv_get(kvclient *c, int64_t key, int64_t *value, char *reason, size_t len);

#endif
