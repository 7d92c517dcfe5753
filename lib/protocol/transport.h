/* The interface between the protocol and the network.
 *
 * The coordinator and replica never see gRPC: they talk through this vtable,
 * which the gRPC transport (transport_grpc.c) and the deterministic
 * in-memory transport of the tests (lib/sim/sim_transport.c) both implement.
 *
 * Contract every implementation keeps, because the coordinator's state
 * machines rely on it:
 *  - send() either returns nonzero (nothing queued, the callback will never
 *    run) or returns 0 and then calls cb exactly once, later, never from
 *    inside send() itself;
 *  - cb gets DHT_OK with a decoded reply, or an error status and reply NULL;
 *  - after() runs cb once after the delay, never from inside after();
 *  - now() is a monotonic clock in nanoseconds, the clock of deadlines.
 */
#ifndef DHT_TRANSPORT_H
#define DHT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"

typedef enum {
    DHT_OK = 0,
    DHT_ERR_UNAVAILABLE, /* peer unreachable / refused the connection      */
    DHT_ERR_TIMEOUT,     /* deadline passed with no reply: outcome unknown */
    DHT_ERR_REMOTE,      /* peer answered with an error status             */
    DHT_ERR_SHUTDOWN     /* transport is shutting down                     */
} dht_status;

const char *dht_status_name(dht_status s);

typedef struct dht_transport dht_transport;
typedef void (*dht_reply_cb)(void *arg, dht_status status, const dht_msg *reply);
typedef void (*dht_timer_cb)(void *arg);

typedef struct dht_transport_ops {
    int (*send)(dht_transport *t, int peer, const dht_msg *req,
                int64_t deadline_ns, dht_reply_cb cb, void *arg);
    int (*after)(dht_transport *t, int64_t delay_ns, dht_timer_cb cb, void *arg);
    int64_t (*now)(dht_transport *t);
    /* Optional (NULL where the transport cannot): a timer that cancel()
     * can revoke; cancel returns 1 if cb will never run, 0 if it runs or
     * ran.  The coordinator uses them to end every operation at its
     * deadline whatever the network does. */
    void *(*after_cancelable)(dht_transport *t, int64_t delay_ns, dht_timer_cb cb, void *arg);
    int (*cancel)(dht_transport *t, void *handle);
    /* Optional: during an error callback, a description of the failure
     * (e.g. the peer's status and details), for messages. */
    const char *(*last_error)(dht_transport *t);
} dht_transport_ops;

struct dht_transport {
    const dht_transport_ops *ops;
    int npeers; /* replicas are peers 0..npeers-1 */
};

static inline int dht_transport_send(dht_transport *t, int peer, const dht_msg *req,
                                     int64_t deadline_ns, dht_reply_cb cb, void *arg)
{
    return t->ops->send(t, peer, req, deadline_ns, cb, arg);
}

static inline int dht_transport_after(dht_transport *t, int64_t delay_ns,
                                      dht_timer_cb cb, void *arg)
{
    return t->ops->after(t, delay_ns, cb, arg);
}

static inline int64_t dht_transport_now(dht_transport *t)
{
    return t->ops->now(t);
}

/* Server side: what a transport delivers incoming calls to. */
typedef void (*dht_done_fn)(void *done_arg, dht_status status, const dht_msg *reply,
                            const char *reason);

/* What a node says about itself (the administrative Stats call). */
typedef struct dht_stats {
    const char *self;          /* its advertised address (normalised) */
    const char *const *members; /* every member's address, normalised, sorted */
    int nmembers;
    int replicas;              /* R */
    uint64_t fingerprint;      /* dht_membership_fingerprint */
    uint64_t cluster_id;       /* 0: not yet part of a cluster */
    uint64_t keys;             /* entries this node stores */
    int partitions;            /* partitions it stores */
    int partitions_recovering; /* of those, how many it may not serve yet */
    int64_t log_bytes;         /* its write-ahead log on disk; -1: unknown */
} dht_stats;

typedef struct dht_service {
    /* Replica requests are answered synchronously (they touch local state
     * only).  reply is pre-zeroed. */
    void (*replica)(void *arg, const dht_msg *req, dht_msg *reply);
    /* Many replica requests at once, possibly asynchronously: fill reps
     * (pre-zeroed) and then call done(done_arg) exactly once, from any
     * thread; reqs and reps stay valid until then.  NULL: one by one
     * through replica. */
    void (*replica_batch)(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                          void (*done)(void *), void *done_arg);
    /* Public Put/Get are coordinated asynchronously; done runs exactly once,
     * on any thread.  deadline_ns is the caller's (monotonic; INT64_MAX if
     * it set none): nothing should be started for it afterwards. */
    void (*client)(void *arg, const dht_msg *req, int64_t deadline_ns, dht_done_fn done,
                   void *done_arg);
    /* Fills *out; pointers in it stay valid while the service does.  NULL:
     * the node answers no Stats. */
    void (*stats)(void *arg, dht_stats *out);
    void *arg;
} dht_service;

#endif
