/* One blocking request over a dht_transport, for threads that may wait
 * (the state-sync thread, the client's load threads): send, sleep on a
 * condition variable until the callback, return the reply. */
#ifndef DHT_BLOCKING_CALL_H
#define DHT_BLOCKING_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/transport.h"

/* Sends req to peer and waits for the answer.  On DHT_OK *reply holds it,
 * with its own malloc'd copy of any entries (the caller frees
 * reply->entries).  On failure err (may be NULL) receives the transport's
 * description, e.g. the peer's gRPC status and details. */
dht_status dht_call_blocking(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                         dht_msg *reply, char *err, size_t errlen);

#endif
