/* Private to lib/net: the state of one gRPC transport instance (dht_grpc,
 * its workers and its per-peer queues of replica requests) and the
 * functions that the files of the transport call on each other without
 * any gRPC type in their signature.
 *
 * It includes no gRPC header: the gRPC objects an instance holds are
 * pointers to gRPC's opaque structs, declared below, so the parts that only
 * queue, cork or run the local replica (replica_queues.c, cork.c,
 * local_replica.c) compile without gRPC.  The parts that talk gRPC include
 * grpc_internal.h, which adds gRPC's headers and the call structures.
 * grpc_transport.c has the overview: threads, ownership and shutdown. */
#ifndef DHT_NET_TRANSPORT_INTERNAL_H
#define DHT_NET_TRANSPORT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/timers.h"
#include "base/util.h"
#include "net/transport_grpc.h"
#include "protocol/membership.h"
#include "protocol/transport.h"

/* gRPC's objects, opaque here; grpc/grpc.h names these same structs
 * grpc_completion_queue, grpc_channel and grpc_server. */
struct grpc_completion_queue;
struct grpc_channel;
struct grpc_server;

/* Every completion-queue tag is a pointer to a struct whose first member is
 * a tag_kind, so one switch dispatches all events (grpc_worker.c). */
typedef enum {
    TAG_CLIENT_CALL = 1,
    TAG_SERVER_NEW,
    TAG_SERVER_DONE,
    TAG_SHUTDOWN,
    /* the three operations of a batch stream, each end (see cstream, sstream) */
    TAG_CS_SEND,
    TAG_CS_RECV,
    TAG_CS_STATUS,
    TAG_SS_SEND,
    TAG_SS_RECV,
    TAG_SS_CLOSE
} tag_kind;

/* Server methods: the dht_msg types plus health, the two batch methods,
 * Admin/Stats and Admin/Control; 0 is the generic slot that catches
 * unknown methods. */
enum {
    M_GENERIC = 0,
    M_HEALTH = DHT_MSG_TYPE_MAX,
    M_BATCH,
    M_STREAM,
    M_STATS,
    M_CONTROL,
    M_COUNT
};

/* The per-thread text of the last failed call's status ("STATUS: details"),
 * which the transport's last_error returns during a callback on that
 * thread (grpc_status.c); here because the parts without gRPC fail items
 * with a reason too (a refused local batch). */
extern _Thread_local char dht_grpc_tl_last_error[256];

/* Replica requests waiting for a batch call to their peer. */
typedef struct {
    dht_msg req;
    int64_t deadline;
    dht_reply_cb cb;
    void *arg;
} qitem;

struct cstream;
struct ccall;

typedef struct {
    pthread_mutex_t mu;
    qitem *items; /* owned */
    size_t len, cap;
    int inflight;       /* local replica's queues: batches being served */
    struct cstream *st; /* the stream of batches to a remote peer, if open */
} peerq;

/* Local replica batches being served per queue.  One would serialise
 * everything behind a single fsync; a few keep the replica busy while the
 * next batch fills.  The replica merges concurrent write batches into one
 * fsync anyway.  (Remote queues have one message on the wire at a time but
 * any number awaiting replies: see cstream.) */
#define BATCH_INFLIGHT 4
#define BATCH_MAX_ITEMS 512

/* An item this close to its deadline is not sent any more. */
#define SEND_MARGIN_NS (20 * DHT_NS_PER_MS)

/* A worker drains its corked work after this many events in a row even if
 * more are waiting (see dht_grpc_worker_drain). */
#define DRAIN_EVERY 64

/* The period of the sweep (see dht_grpc_sweep_queues). */
#define SWEEP_NS (20 * DHT_NS_PER_MS)

typedef struct worker {
    struct dht_grpc *g;
    struct grpc_completion_queue *cq;
    pthread_t thread;
    int index;
    /* Corking (see dht_grpc_worker_drain): peer queues this worker's
     * handlers added to (two per peer: writes, the rest), flushed once no
     * event is waiting... */
    uint64_t dirty[(2 * DHT_MAX_MEMBERS + 63) / 64];
    /* ...and batches for the local replica, run on this thread then. */
    struct local_job *lhead, *ltail;
} worker;

struct dht_grpc {
    dht_transport base; /* first: dht_transport* <-> dht_grpc* */
    int nworkers;
    worker *workers;
    /* Per peer, sized for DHT_MAX_MEMBERS at start so that add_peer never
     * moves what concurrent senders read: entries below base.npeers are
     * set once and never change; add_peer fills the next one under
     * peers_mu and only then raises base.npeers.  addrs and norms (the
     * normalised address, for add_peer's comparison) are owned strings. */
    char **addrs;
    char **norms;
    struct grpc_channel **channels;
    atomic_int *peer_up;
    peerq *queues; /* two per peer: see queue_of; every mutex initialised */
    pthread_mutex_t peers_mu;
    atomic_uint rr;
    struct grpc_server *server;
    void *methods[M_COUNT];
    dht_service svc;
    int self; /* our own peer index, or -1 */

    /* Local replica batches (to `self`): handed to the service on the
     * local thread instead of a loopback gRPC call. */
    pthread_mutex_t lmu;
    pthread_cond_t lcv;
    struct local_job *lhead, *ltail;
    bool lstop;
    pthread_t lthread;
    int (*serving)(void *);
    void *serving_arg;
    void (*on_peer_state)(void *, int, const char *, int);
    void *peer_state_arg;
    /* TLS (grpc_tls.c): owned copies of the configuration's PEM text, all
     * NULL for plaintext; the server's credentials are made from them. */
    char *tls_cert, *tls_key, *tls_ca;
    bool client_cert_auth;
    /* The configuration's fingerprint (0: none, no check) and canonical
     * line (owned, or NULL): see dht_grpc_config and grpc_config.c. */
    uint64_t fingerprint;
    char *config_line;
    /* Raw calls in flight (dht_grpc_call_async), for
     * dht_grpc_cancel_raw_calls; guarded by raw_mu. */
    pthread_mutex_t raw_mu;
    struct ccall *raw_calls;

    atomic_bool stopping;
    atomic_int inflight; /* client calls + server calls not yet freed */

    struct {
        tag_kind kind;
        atomic_bool done;
    } shutdown_tag;

    dht_timers *timers;
};

/* The stamp a replica request travels with (protocol/transport.h): its own
 * when it has a config, else the transport's static fingerprint and view
 * 0.  One wire message carries one stamp. */
typedef struct {
    uint64_t config, view;
} wire_stamp;

static inline wire_stamp dht_grpc_stamp_of(const dht_grpc *g, const dht_msg *m)
{
    return m->config != 0 ? (wire_stamp){m->config, m->view} : (wire_stamp){g->fingerprint, 0};
}

/* How many of items (at most max, at least 1 when n > 0) share the first
 * one's stamp: the longest run that may leave in one message. */
static inline size_t dht_grpc_stamp_run(const dht_grpc *g, const qitem *items, size_t n,
                                        size_t max)
{
    if (n == 0)
        return 0;
    wire_stamp first = dht_grpc_stamp_of(g, &items[0].req);
    size_t k = 1;
    while (k < n && k < max) {
        wire_stamp s = dht_grpc_stamp_of(g, &items[k].req);
        if (s.config != first.config || s.view != first.view)
            break;
        k++;
    }
    return k;
}

/* The worker running on this thread, if any (set by dht_grpc_worker_main). */
extern _Thread_local worker *dht_grpc_tl_worker;

static inline worker *dht_grpc_own_worker(dht_grpc *g)
{
    return dht_grpc_tl_worker != NULL && dht_grpc_tl_worker->g == g ? dht_grpc_tl_worker : NULL;
}

/* ---- replica_queues.c: per-peer queues of replica requests ---- */
int dht_grpc_enqueue(dht_grpc *g, int peer, const dht_msg *req, int64_t deadline,
                     dht_reply_cb cb, void *arg);
void dht_grpc_flush_queue(dht_grpc *g, int qi);
void dht_grpc_batch_slot_done(dht_grpc *g, int qi);
void dht_grpc_fail_items_now(qitem *items, size_t n, dht_status st);
void dht_grpc_fail_items_later(dht_grpc *g, qitem *items, size_t n, dht_status st);
/* Fails items now with DHT_ERR_REMOTE and "FAILED_PRECONDITION: why" as
 * last_error during their callbacks (a refused stamp). */
void dht_grpc_refuse_items_now(qitem *items, size_t n, const char *why);
void dht_grpc_answer_items(qitem *items, size_t n, dht_status st, dht_msg *reps);

/* ---- cork.c: corking on worker threads ---- */
void dht_grpc_flush_soon(dht_grpc *g, int qi);
bool dht_grpc_worker_corked(const worker *w);
void dht_grpc_worker_drain(worker *w);

/* ---- local_replica.c: the in-process path to the local replica ---- */
bool dht_grpc_send_local(dht_grpc *g, int qi, qitem *items, size_t n);
void dht_grpc_local_run_next(worker *w);
int dht_grpc_local_start(dht_grpc *g);
void dht_grpc_local_stop(dht_grpc *g);

/* ---- grpc_deadlines.c: expiry and the sweep ---- */
size_t dht_grpc_split_expired(qitem *items, size_t n, int64_t horizon, qitem **expired,
                              size_t *nexp, int64_t *deadline);
void dht_grpc_sweep_queues(void *arg);

/* ---- grpc_peers.c: peer reachability, peers added at runtime ---- */
void dht_grpc_set_peer_state(dht_grpc *g, int peer, int up);
int dht_grpc_add_peer(dht_transport *t, const char *addr);
/* addr normalised (protocol/membership.h), malloc'd; addr as given when it
 * does not normalise (a name add_peer then matches only as written);
 * NULL when out of memory. */
char *dht_grpc_peer_norm(const char *addr);

/* ---- grpc_client_calls.c: the calls we make ---- */
int dht_grpc_send(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                  dht_reply_cb cb, void *arg);
int dht_grpc_control(dht_transport *t, int peer, const uint8_t *req, size_t len,
                     int64_t deadline_ns, dht_control_cb cb, void *arg);
void dht_grpc_send_batch(dht_grpc *g, int qi, qitem *items, size_t n);

/* ---- grpc_stream_client.c: batch streams to remote peers ---- */
void dht_grpc_stream_flush(dht_grpc *g, int qi);
void dht_grpc_cs_sweep(dht_grpc *g, int qi, int64_t now);
void dht_grpc_cs_cancel_all(dht_grpc *g);

/* ---- grpc_worker.c: the completion-queue threads ---- */
void *dht_grpc_worker_main(void *arg);

#endif
