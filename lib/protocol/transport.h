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
 *  - now() is a monotonic clock in nanoseconds, the clock of deadlines;
 *  - control() keeps send()'s contract for opaque bytes.
 *
 * Stamps: a replica request whose dht_msg has config != 0 travels with
 * that (config, view) pair; one with config == 0 with the transport's own
 * static fingerprint (if it has one) and view 0.  One wire message never
 * mixes stamps (a batch is split where the stamp changes; items of one
 * stamp keep their order), so the receiving service can refuse a message
 * whole (dht_service.check_config) without refusing another sender's view.
 */
#ifndef DHT_TRANSPORT_H
#define DHT_TRANSPORT_H

#include <stdbool.h>
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
/* A control reply: DHT_OK with rep (len bytes, valid only during the
 * callback; not NULL, even when len is 0), or an error status and rep
 * NULL (last_error then says why, e.g. the peer's refusal text). */
typedef void (*dht_control_cb)(void *arg, dht_status st, const uint8_t *rep, size_t len);

/* The largest control request or reply body: a transport refuses a larger
 * request before the service sees it.  Membership messages are small;
 * the bound only keeps a stranger from making a node buffer much. */
#define DHT_CONTROL_MAX ((size_t)1 << 20)

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
    /* Optional: makes addr (HOST:PORT) a peer at runtime, for membership
     * changes.  Returns its peer index: the existing one when addr
     * (normalised, protocol/membership.h) already is a peer, else a new
     * one, the old npeers (npeers then grows by one, only once the peer
     * can be sent to); -1 for a bad address or at DHT_MAX_MEMBERS.  Safe
     * against concurrent sends to the existing peers. */
    int (*add_peer)(dht_transport *t, const char *addr);
    /* Optional: sends opaque bytes to peer's service.control (the control
     * channel of membership changes), with send()'s contract: nonzero:
     * not sent, cb never runs; else cb exactly once, later, never from
     * inside control().  req is copied before control() returns.  A
     * refusal (the service's error, no control service, a body over
     * DHT_CONTROL_MAX) reaches cb as DHT_ERR_REMOTE with last_error. */
    int (*control)(dht_transport *t, int peer, const uint8_t *req, size_t len,
                   int64_t deadline_ns, dht_control_cb cb, void *arg);
} dht_transport_ops;

struct dht_transport {
    const dht_transport_ops *ops;
    /* Replicas are peers 0..npeers-1.  Atomic because add_peer may grow
     * it while other threads send; it never shrinks. */
    _Atomic int npeers;
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

/* -1 where the transport has no add_peer. */
static inline int dht_transport_add_peer(dht_transport *t, const char *addr)
{
    return t->ops->add_peer ? t->ops->add_peer(t, addr) : -1;
}

/* Nonzero (not sent) where the transport has no control channel. */
static inline int dht_transport_control(dht_transport *t, int peer, const uint8_t *req,
                                        size_t len, int64_t deadline_ns, dht_control_cb cb,
                                        void *arg)
{
    return t->ops->control ? t->ops->control(t, peer, req, len, deadline_ns, cb, arg) : -1;
}

/* Server side: what a transport delivers incoming calls to. */
typedef void (*dht_done_fn)(void *done_arg, dht_status status, const dht_msg *reply,
                            const char *reason);
/* The answer to a control request: rep (len bytes, copied by the
 * transport before this returns), or, with error != NULL, a refusal whose
 * text the caller sees (rep is then ignored). */
typedef void (*dht_control_done)(void *done_arg, const uint8_t *rep, size_t len,
                                 const char *error);

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
    /* Membership changes (protocol/view.h): the node's epoch (0: unknown)
     * and view number; while changing (view odd), the next configuration
     * (members normalised and sorted, and its R); nnext 0 when stable.
     * removed: the node is no member of its latest configuration. */
    uint64_t epoch;
    uint64_t view;
    const char *const *next_members;
    int nnext;
    int next_replicas;
    bool removed;
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
    /* Whether a replica request stamped (config, view) may be served
     * (dht_msg.config/view as received; see the stamps above): 0 yes,
     * nonzero no, with the reason in why (len bytes, NUL-terminated).
     * Called for each unary replica request and each batch message before
     * its fields are validated or replica/replica_batch sees it; a refusal
     * refuses it whole (every item of a batch), and the sender sees
     * DHT_ERR_REMOTE with why in last_error.  Any thread; must not block.
     * NULL: the transport's own static check (a gRPC transport's
     * fingerprint, dht_grpc_config). */
    int (*check_config)(void *arg, uint64_t config, uint64_t view, char *why, size_t len);
    /* A control request (dht_transport_ops.control): req (len bytes,
     * valid until done runs) is answered asynchronously by done(done_arg,
     * ...) exactly once, from any thread.  NULL: refused (UNIMPLEMENTED). */
    void (*control)(void *arg, const uint8_t *req, size_t len, dht_control_done done,
                    void *done_arg);
    void *arg;
} dht_service;

#endif
