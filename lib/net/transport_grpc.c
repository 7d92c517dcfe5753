/* gRPC C-core transport.
 *
 * Threads: `workers` threads, each blocking in grpc_completion_queue_next on
 * its own queue, plus one timer thread.  Outgoing calls are created on the
 * calling worker's queue when a worker makes them (so a coordinator's
 * fan-out usually completes on the thread that started it) and round-robin
 * otherwise.  Server calls are requested on every queue, a few at a time per
 * method, and re-requested as soon as one arrives.
 *
 * Replica requests to other nodes do not use a call each: they are batched
 * per peer and kind and sent as messages of a long-lived bidirectional
 * stream (cstream here, sstream at the peer).  The unary Batch method stays
 * for tools and for the local replica's fallback.
 *
 * Every completion-queue tag is a pointer to a struct whose first member is
 * a tag_kind, so one switch dispatches all events.
 *
 * Ownership: a ccall (outgoing call) and an scall (incoming call) are
 * malloc'd when started and freed by the worker that sees their final
 * event.  Byte buffers, slices and metadata arrays inside them are released
 * there too.  Streams (cstream, sstream) are reference-counted: each
 * operation started on the call holds one, and whoever drops the last
 * frees the stream.  A sent batch (sbatch) and its items belong to the
 * stream until its reply, its deadline or the stream's end takes it out.
 *
 * Shutdown (dht_grpc_stop): refuse new sends, cancel the streams to peers,
 * shut the server down and cancel its calls, wait until no call, stream,
 * public request or timer is in flight (each is bounded by a deadline or
 * ended by the cancel), then shut down the queues and join the workers.
 */
#include "net/transport_grpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/codec.h"
#include "base/log.h"
#include "base/timers.h"
#include "base/util.h"

#define REQ_SLOTS 8 /* outstanding requested server calls per method per queue */
#define MAX_MSG 4096

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

/* The tag of one of a stream's operations: which one, and whose. */
typedef struct {
    tag_kind kind;
    void *owner;
} otag;

/* Server methods: the dht_msg types plus health; 0 is the generic slot that
 * catches unknown methods. */
enum { M_GENERIC = 0, M_HEALTH = DHT_MSG_TYPE_MAX, M_BATCH, M_STREAM, M_COUNT };

/* Replica requests waiting for a batch call to their peer. */
typedef struct {
    dht_msg req;
    int64_t deadline;
    dht_reply_cb cb;
    void *arg;
} qitem;

struct cstream;

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

typedef struct worker {
    struct dht_grpc *g;
    grpc_completion_queue *cq;
    pthread_t thread;
    int index;
    /* Corking (see worker_drain): peer queues this worker's handlers added
     * to, flushed once no event is waiting... */
    uint64_t dirty;
    /* ...and batches for the local replica, run on this thread then. */
    struct local_job *lhead, *ltail;
} worker;

struct dht_grpc {
    dht_transport base; /* first: dht_transport* <-> dht_grpc* */
    int nworkers;
    worker *workers;
    char **addrs;
    grpc_channel **channels;
    atomic_int *peer_up;
    peerq *queues; /* two per peer: see queue_of */
    atomic_uint rr;
    grpc_server *server;
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

    atomic_bool stopping;
    atomic_int inflight; /* client calls + server calls not yet freed */

    struct {
        tag_kind kind;
        atomic_bool done;
    } shutdown_tag;

    dht_timers *timers;
};

typedef struct ccall {
    tag_kind kind;
    dht_grpc *g;
    int peer;
    dht_msg_type type;
    grpc_call *call;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    dht_reply_cb cb;
    dht_grpc_raw_cb raw_cb; /* raw calls: bytes in, bytes out */
    void *arg;
    qitem *batch; /* batch calls: the items, owned */
    size_t nbatch;
    int64_t started; /* batch calls: for the debug log's round-trip time */
    int queue;       /* batch calls: index into g->queues */
} ccall;

typedef struct scall {
    tag_kind kind;
    dht_grpc *g;
    worker *w;
    int method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array req_md;
    grpc_call_details details; /* generic slot only */
    grpc_byte_buffer *payload;
    /* response */
    grpc_byte_buffer *resp_bb;
    grpc_metadata trailing[2];
    size_t ntrailing;
    grpc_slice status_details;
    int cancelled;
} scall;

static _Thread_local worker *tl_worker;
static _Thread_local char tl_last_error[256];

/* Records a failed call's status for grpc_last_error (the transport's
 * last_error op), read by callbacks on this thread. */
static void note_error(grpc_status_code code, grpc_slice details)
{
    char *d = grpc_slice_to_c_string(details);
    snprintf(tl_last_error, sizeof tl_last_error, "%s%s%s", dht_grpc_status_name((int)code),
             *d ? ": " : "", d);
    gpr_free(d);
}

/* ---- helpers ------------------------------------------------------------- */

static gpr_timespec deadline_ts(int64_t deadline_ns)
{
    int64_t rem = deadline_ns - dht_now_ns();
    if (rem < 0)
        rem = 0;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(rem, GPR_TIMESPAN));
}

static grpc_byte_buffer *bb_from(const void *buf, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer(buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* The whole payload of a byte buffer as one slice (the caller unrefs it);
 * false if there is none. */
static bool bb_slice(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&r, bb))
        return false;
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}

/* Copies a byte buffer into buf; returns the length, or -1 if it does not
 * fit or cannot be read. */
static long bb_read(grpc_byte_buffer *bb, uint8_t *buf, size_t cap)
{
    grpc_slice s;
    if (!bb_slice(bb, &s))
        return -1;
    size_t len = GRPC_SLICE_LENGTH(s);
    long rc = -1;
    if (len <= cap) {
        memcpy(buf, GRPC_SLICE_START_PTR(s), len);
        rc = (long)len;
    }
    grpc_slice_unref(s);
    return rc;
}

/* Encodes m (request or reply) into a new byte buffer; NULL if it cannot. */
static grpc_byte_buffer *bb_encode(const dht_msg *m, bool reply)
{
    uint8_t small[DHT_CODEC_MAX];
    size_t n = reply ? dht_codec_encode_reply(m, small, sizeof small)
                     : dht_codec_encode_request(m, small, sizeof small);
    if (n <= sizeof small)
        return bb_from(small, n);
    if (n == SIZE_MAX)
        return NULL;
    uint8_t *big = malloc(n);
    if (big == NULL)
        return NULL;
    if (reply)
        dht_codec_encode_reply(m, big, n);
    else
        dht_codec_encode_request(m, big, n);
    grpc_byte_buffer *bb = bb_from(big, n);
    free(big);
    return bb;
}

/* Encodes a batch of requests or replies into a new byte buffer; NULL if it
 * cannot. */
static grpc_byte_buffer *bb_encode_batch(const dht_msg *msgs, size_t n, uint64_t id)
{
    size_t need = dht_codec_encode_batch(msgs, n, id, NULL, 0);
    uint8_t *buf = need != SIZE_MAX ? malloc(need ? need : 1) : NULL;
    if (buf == NULL)
        return NULL;
    dht_codec_encode_batch(msgs, n, id, buf, need);
    grpc_byte_buffer *bb = bb_from(buf, need);
    free(buf);
    return bb;
}

/* Decodes a batch message (see dht_codec_decode_batch: *out is malloc'd,
 * the caller frees it); -1 if bb is missing or not a valid batch. */
static int bb_decode_batch(grpc_byte_buffer *bb, dht_msg **out, size_t *n, uint64_t *id)
{
    grpc_slice sl;
    if (!bb_slice(bb, &sl))
        return -1;
    int rc = dht_codec_decode_batch(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), out, n, id);
    grpc_slice_unref(sl);
    return rc;
}

const char *dht_grpc_status_name(int code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    return code >= 0 && code < (int)(sizeof names / sizeof names[0]) ? names[code] : "?";
}

static void set_peer_state(dht_grpc *g, int peer, int up)
{
    if (peer < 0 || peer >= g->base.npeers)
        return;
    if (atomic_exchange(&g->peer_up[peer], up) == up)
        return;
    if (up)
        DHT_INFO("peer %s is back", g->addrs[peer]);
    else
        DHT_WARN("peer %s is not answering", g->addrs[peer]);
    if (g->on_peer_state)
        g->on_peer_state(g->peer_state_arg, peer, g->addrs[peer], up);
}

static int64_t grpc_now(dht_transport *t)
{
    (void)t;
    return dht_now_ns();
}

static int grpc_after(dht_transport *t, int64_t delay_ns, dht_timer_cb cb, void *arg)
{
    return dht_timers_add(((dht_grpc *)t)->timers, delay_ns, cb, arg);
}

/* ---- outgoing calls ------------------------------------------------------ */

static grpc_completion_queue *pick_cq(dht_grpc *g)
{
    if (tl_worker != NULL && tl_worker->g == g)
        return tl_worker->cq;
    return g->workers[atomic_fetch_add(&g->rr, 1) % (unsigned)g->nworkers].cq;
}

/* Starts one unary call carrying send_bb (taken over) on peer's channel;
 * the reply reaches client_call_done. */
static int start_call(dht_grpc *g, int peer, const char *method, grpc_byte_buffer *send_bb,
                      int64_t deadline_ns, ccall *c)
{
    c->kind = TAG_CLIENT_CALL;
    c->g = g;
    c->peer = peer;
    grpc_slice mslice = grpc_slice_from_static_string(method);
    c->call = grpc_channel_create_call(g->channels[peer], NULL, GRPC_PROPAGATE_DEFAULTS,
                                       pick_cq(g), mslice, NULL, deadline_ts(deadline_ns), NULL);
    if (c->call == NULL) {
        grpc_byte_buffer_destroy(send_bb);
        free(c);
        return -1;
    }
    c->send_bb = send_bb;
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trail_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    atomic_fetch_add(&g->inflight, 1);
    if (grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&g->inflight, 1);
        grpc_byte_buffer_destroy(c->send_bb);
        grpc_metadata_array_destroy(&c->init_md);
        grpc_metadata_array_destroy(&c->trail_md);
        grpc_call_unref(c->call);
        free(c);
        return -1;
    }
    return 0;
}

/* ---- batching of replica requests -------------------------------------------
 *
 * send() queues LOCK/UNLOCK/WRITE/READ per peer and kind.  A remote peer's
 * queue leaves as one message on its stream as soon as the stream has no
 * message on the wire (see cstream); the local replica's as one batch if
 * fewer than BATCH_INFLIGHT are being served.  Otherwise the items wait for
 * the next completion, which sends everything queued at once.  Idle: no
 * added delay.  Loaded: one message (and, on the replica, one log write
 * and fsync) for many operations. */

typedef struct {
    qitem *items;
    size_t n;
    dht_status st;
} failed_items;

static void fail_items_now(qitem *items, size_t n, dht_status st)
{
    for (size_t i = 0; i < n; i++)
        items[i].cb(items[i].arg, st, NULL);
}

static void fail_items_cb(void *arg)
{
    failed_items *f = arg;
    fail_items_now(f->items, f->n, f->st);
    free(f->items);
    free(f);
}

/* Fails items from a timer, never from inside send(): the transport
 * contract forbids calling back into a caller that is still sending. */
static void fail_items_later(dht_grpc *g, qitem *items, size_t n, dht_status st)
{
    failed_items *f = malloc(sizeof *f);
    if (f != NULL) {
        *f = (failed_items){items, n, st};
        if (dht_timers_add(g->timers, 0, fail_items_cb, f) == 0)
            return;
        free(f);
    }
    /* Only while stopping (timers refused): callers are past sending. */
    fail_items_now(items, n, st);
    free(items);
}

/* Hands each item its reply (reps[i], completed with the request's type and
 * key) or, unless st is DHT_OK, the error st. */
static void answer_items(qitem *items, size_t n, dht_status st, dht_msg *reps)
{
    if (st != DHT_OK) {
        fail_items_now(items, n, st);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        reps[i].type = items[i].req.type;
        reps[i].key = items[i].req.key;
        items[i].cb(items[i].arg, DHT_OK, &reps[i]);
    }
}

static void flush_queue(dht_grpc *g, int qi);

/* A batch of queue qi (local replica or unary call) is over: its slot is
 * free, and what queued meanwhile goes out. */
static void batch_slot_done(dht_grpc *g, int qi)
{
    pthread_mutex_lock(&g->queues[qi].mu);
    g->queues[qi].inflight--;
    pthread_mutex_unlock(&g->queues[qi].mu);
    flush_queue(g, qi);
}

/* Writes wait for the replica's fsync; locks and reads need none.  Each
 * peer has a queue for each kind, so a lock never waits behind a write
 * batch that waits for a disk. */
static int queue_of(int peer, dht_msg_type t)
{
    return 2 * peer + (t == DHT_MSG_WRITE);
}

/* An item this close to its deadline is not sent any more. */
#define SEND_MARGIN_NS (20 * DHT_NS_PER_MS)

/* Moves the items whose deadline is at or before horizon to *expired
 * (malloc'd, caller owns; left NULL if none): a batch about to be sent
 * drops those (nearly) past their deadline, so they neither doom the rest
 * to a timeout nor shorten its life, since their callers have given up;
 * the sweep drops those past it.  Returns how many stay at the front of
 * items, and their earliest deadline in *deadline unless it is NULL. */
static size_t split_expired(qitem *items, size_t n, int64_t horizon, qitem **expired,
                            size_t *nexp, int64_t *deadline)
{
    size_t live = 0;
    int64_t earliest = INT64_MAX;
    *expired = NULL;
    *nexp = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].deadline <= horizon) {
            if (*expired == NULL)
                *expired = malloc(n * sizeof **expired);
            if (*expired != NULL) {
                (*expired)[(*nexp)++] = items[i];
                continue;
            }
        }
        items[live++] = items[i];
        if (items[i].deadline < earliest)
            earliest = items[i].deadline;
    }
    if (deadline != NULL)
        *deadline = earliest;
    return live;
}

/* The requests of queued items as one batch message; NULL if it cannot. */
static grpc_byte_buffer *bb_encode_items(const qitem *items, size_t n, uint64_t id)
{
    if (n == 0)
        return NULL; /* never sent */
    dht_msg small[32], *msgs = n <= 32 ? small : malloc(n * sizeof *msgs);
    if (msgs == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        msgs[i] = items[i].req;
    grpc_byte_buffer *bb = bb_encode_batch(msgs, n, id);
    if (msgs != small)
        free(msgs);
    return bb;
}

/* Takes up to BATCH_MAX_ITEMS queued items of peer when a batch slot is
 * free (q->mu held); returns how many, with the array in *out. */
static size_t take_batch(peerq *q, qitem **out)
{
    if (q->len == 0 || q->inflight >= BATCH_INFLIGHT)
        return 0;
    size_t n = q->len < BATCH_MAX_ITEMS ? q->len : BATCH_MAX_ITEMS;
    qitem *items = malloc(n * sizeof *items);
    if (items == NULL)
        return 0;
    memcpy(items, q->items, n * sizeof *items);
    memmove(q->items, q->items + n, (q->len - n) * sizeof *items);
    q->len -= n;
    q->inflight++;
    *out = items;
    return n;
}

/* ---- the local replica ------------------------------------------------------
 * A server's coordinator sends a third of its replica requests to itself.
 * Over loopback gRPC that costs two calls' worth of CPU for nothing; here
 * the batch goes straight to the service.  send() must never call back
 * into its caller, so the batch runs later: on the sending worker's own
 * thread once its current event is handled (worker_drain), or, when a
 * non-worker thread sent it, on the local thread. */

typedef struct local_job {
    struct local_job *next;
    dht_grpc *g;
    int qi;
    qitem *items;
    size_t n;
    dht_msg *reqs, *reps;
} local_job;

static void local_done(void *arg)
{
    local_job *j = arg;
    dht_grpc *g = j->g;
    answer_items(j->items, j->n, DHT_OK, j->reps);
    int qi = j->qi;
    free(j->items);
    free(j->reqs);
    free(j->reps);
    free(j);
    batch_slot_done(g, qi);
    atomic_fetch_sub(&g->inflight, 1);
}

static void *local_main(void *arg)
{
    dht_grpc *g = arg;
    pthread_setname_np(pthread_self(), "dht-local");
    pthread_mutex_lock(&g->lmu);
    for (;;) {
        while (g->lhead == NULL && !g->lstop)
            pthread_cond_wait(&g->lcv, &g->lmu);
        local_job *j = g->lhead;
        if (j == NULL)
            break;
        g->lhead = j->next;
        if (g->lhead == NULL)
            g->ltail = NULL;
        pthread_mutex_unlock(&g->lmu);
        g->svc.replica_batch(g->svc.arg, j->reqs, j->reps, j->n, local_done, j);
        pthread_mutex_lock(&g->lmu);
    }
    pthread_mutex_unlock(&g->lmu);
    return NULL;
}

static worker *own_worker(dht_grpc *g)
{
    return tl_worker != NULL && tl_worker->g == g ? tl_worker : NULL;
}

/* Queues items for this worker's drain or the local thread; false if it
 * cannot (then the caller uses gRPC as for any peer). */
static bool send_local(dht_grpc *g, int qi, qitem *items, size_t n)
{
    local_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return false;
    j->reqs = malloc(n * sizeof *j->reqs);
    j->reps = calloc(n, sizeof *j->reps);
    if (j->reqs == NULL || j->reps == NULL) {
        free(j->reqs);
        free(j->reps);
        free(j);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        j->reqs[i] = items[i].req;
    j->g = g;
    j->qi = qi;
    j->items = items;
    j->n = n;
    atomic_fetch_add(&g->inflight, 1);
    worker *w = own_worker(g);
    if (w != NULL) {
        if (w->ltail)
            w->ltail->next = j;
        else
            w->lhead = j;
        w->ltail = j;
        return true;
    }
    pthread_mutex_lock(&g->lmu);
    if (g->ltail)
        g->ltail->next = j;
    else
        g->lhead = j;
    g->ltail = j;
    pthread_cond_signal(&g->lcv);
    pthread_mutex_unlock(&g->lmu);
    return true;
}

/* Sends one batch call with the given items (taken over) from queue qi. */
static void send_batch(dht_grpc *g, int qi, qitem *items, size_t n)
{
    int peer = qi / 2;
    if (peer == g->self && !atomic_load(&g->stopping) && send_local(g, qi, items, n))
        return;
    int64_t now = dht_now_ns(), deadline;
    size_t nexp;
    qitem *expired;
    size_t live = split_expired(items, n, now + SEND_MARGIN_NS, &expired, &nexp, &deadline);
    if (nexp > 0)
        fail_items_later(g, expired, nexp, DHT_ERR_TIMEOUT);

    grpc_byte_buffer *bb = NULL;
    ccall *c = NULL;
    if (live > 0 && !atomic_load(&g->stopping)) {
        bb = bb_encode_items(items, live, 0);
        c = bb ? calloc(1, sizeof *c) : NULL;
    }
    if (c != NULL) {
        c->batch = items;
        c->nbatch = live;
        c->started = now;
        c->queue = qi;
        if (start_call(g, peer, DHT_CODEC_BATCH_METHOD, bb, deadline, c) == 0)
            return;
        bb = NULL; /* start_call released it and c */
    }
    if (bb)
        grpc_byte_buffer_destroy(bb);
    if (live > 0)
        fail_items_later(g, items, live, DHT_ERR_SHUTDOWN);
    else
        free(items);
    batch_slot_done(g, qi);
}

/* ---- streams of batches to remote peers -------------------------------------
 *
 * Each remote queue (peer x kind) sends its batches on one long-lived
 * bidirectional call, so a batch costs one message each way instead of a
 * call's set-up, metadata and status at both ends.  One message is on the
 * wire at a time; what queues meanwhile leaves in the next one, when the
 * send completes (corked like any other work of the worker).  Sent batches
 * wait in `sent` for the reply carrying their id; the sweep fails those
 * past their earliest item deadline (a late reply for them is dropped), as
 * a unary call's deadline did.  When the stream ends (peer gone, connection
 * lost, malformed reply, shutdown) every batch still waiting fails with the
 * call's status, and the next flush opens a new stream: without
 * wait-for-ready that fails at once while the peer is unreachable.
 *
 * Locking: the queue's mutex guards its stream's fields.  Lifetime: refs
 * counts the operations started on the call plus one while the queue
 * points at the stream; whoever drops it to zero frees it. */

typedef struct sbatch {
    struct sbatch *next;
    uint64_t id;
    qitem *items; /* owned */
    size_t n;
    int64_t deadline; /* the earliest of its items' */
    int64_t started;  /* for the debug log's round-trip time */
} sbatch;

typedef struct cstream {
    otag send_tag, recv_tag, status_tag;
    dht_grpc *g;
    int qi;
    grpc_call *call;
    int refs;
    bool sending, ended;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    sbatch *sent, *sent_tail; /* awaiting replies, oldest first */
    uint64_t next_id;
} cstream;

static void cs_free(cstream *cs)
{
    dht_grpc *g = cs->g;
    if (cs->send_bb)
        grpc_byte_buffer_destroy(cs->send_bb);
    if (cs->recv_bb)
        grpc_byte_buffer_destroy(cs->recv_bb);
    grpc_metadata_array_destroy(&cs->init_md);
    grpc_metadata_array_destroy(&cs->trail_md);
    grpc_slice_unref(cs->details);
    grpc_call_unref(cs->call);
    free(cs);
    atomic_fetch_sub(&g->inflight, 1);
}

/* Drops one reference (q->mu held); true if the caller must cs_free. */
static bool cs_unref_locked(cstream *cs)
{
    return --cs->refs == 0;
}

static bool cs_start_recv(cstream *cs)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &cs->recv_bb;
    return grpc_call_start_batch(cs->call, &op, 1, &cs->recv_tag, NULL) == GRPC_CALL_OK;
}

/* Opens a stream for queue qi (its mutex held); NULL if gRPC refuses. */
static cstream *cs_open(dht_grpc *g, int qi)
{
    cstream *cs = calloc(1, sizeof *cs);
    if (cs == NULL)
        return NULL;
    cs->send_tag = (otag){TAG_CS_SEND, cs};
    cs->recv_tag = (otag){TAG_CS_RECV, cs};
    cs->status_tag = (otag){TAG_CS_STATUS, cs};
    cs->g = g;
    cs->qi = qi;
    grpc_slice m = grpc_slice_from_static_string(DHT_CODEC_STREAM_METHOD);
    cs->call = grpc_channel_create_call(g->channels[qi / 2], NULL, GRPC_PROPAGATE_DEFAULTS,
                                        pick_cq(g), m, NULL,
                                        gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (cs->call == NULL) {
        free(cs);
        return NULL;
    }
    grpc_metadata_array_init(&cs->init_md);
    grpc_metadata_array_init(&cs->trail_md);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &cs->init_md;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &cs->trail_md;
    ops[2].data.recv_status_on_client.status = &cs->status;
    ops[2].data.recv_status_on_client.status_details = &cs->details;
    atomic_fetch_add(&g->inflight, 1);
    cs->refs = 1; /* the queue's */
    if (grpc_call_start_batch(cs->call, ops, 3, &cs->status_tag, NULL) != GRPC_CALL_OK) {
        cs_free(cs);
        return NULL;
    }
    cs->refs++;
    if (cs_start_recv(cs)) {
        cs->refs++;
    } else {
        grpc_call_cancel(cs->call, NULL); /* the status event ends it */
        cs->ended = true;
    }
    return cs;
}

/* Items a flush must fail once it has let go of the queue's mutex (their
 * callbacks may queue more). */
typedef struct {
    qitem *expired, *failed;
    size_t nexpired, nfailed;
} flush_failures;

static void flush_failures_fire(dht_grpc *g, flush_failures *f)
{
    if (f->nexpired > 0)
        fail_items_later(g, f->expired, f->nexpired, DHT_ERR_TIMEOUT);
    else
        free(f->expired);
    if (f->nfailed > 0)
        fail_items_later(g, f->failed, f->nfailed, DHT_ERR_UNAVAILABLE);
    else
        free(f->failed);
}

/* Sends up to BATCH_MAX_ITEMS queued items as the next message of cs
 * (q->mu held, no send in flight, q->len > 0). */
static void cs_send_locked(peerq *q, cstream *cs, flush_failures *f)
{
    size_t n = q->len < BATCH_MAX_ITEMS ? q->len : BATCH_MAX_ITEMS;
    qitem *items = malloc(n * sizeof *items);
    sbatch *sb = calloc(1, sizeof *sb);
    if (items == NULL || sb == NULL) {
        free(items);
        free(sb);
        return; /* they stay queued: the sweep fails them at their deadline */
    }
    memcpy(items, q->items, n * sizeof *items);
    memmove(q->items, q->items + n, (q->len - n) * sizeof *items);
    q->len -= n;

    int64_t now = dht_now_ns(), deadline;
    size_t live =
        split_expired(items, n, now + SEND_MARGIN_NS, &f->expired, &f->nexpired, &deadline);
    if (live == 0) {
        free(items);
        free(sb);
        return;
    }

    *sb = (sbatch){NULL, ++cs->next_id, items, live, deadline, now};
    grpc_byte_buffer *bb = bb_encode_items(items, live, sb->id);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    if (bb == NULL || grpc_call_start_batch(cs->call, &op, 1, &cs->send_tag, NULL) != GRPC_CALL_OK) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        f->failed = items;
        f->nfailed = live;
        free(sb);
        return;
    }
    cs->send_bb = bb;
    cs->sending = true;
    cs->refs++;
    if (cs->sent_tail)
        cs->sent_tail->next = sb;
    else
        cs->sent = sb;
    cs->sent_tail = sb;
}

/* Sends what queue qi holds for a remote peer, opening its stream if
 * needed, unless a message of it is already on the wire. */
static void stream_flush(dht_grpc *g, int qi)
{
    peerq *q = &g->queues[qi];
    qitem *dead = NULL;
    size_t ndead = 0;
    dht_status why = DHT_ERR_SHUTDOWN;
    pthread_mutex_lock(&q->mu);
    if (q->len > 0 && q->st == NULL) {
        if (!atomic_load(&g->stopping))
            q->st = cs_open(g, qi);
        if (q->st == NULL) {
            /* Nothing to send them on: fail what waits, later (we may be
             * inside send()). */
            why = atomic_load(&g->stopping) ? DHT_ERR_SHUTDOWN : DHT_ERR_UNAVAILABLE;
            dead = q->items;
            ndead = q->len;
            q->items = NULL;
            q->len = q->cap = 0;
        }
    }
    flush_failures f = {0};
    if (q->len > 0 && q->st != NULL && !q->st->sending && !q->st->ended)
        cs_send_locked(q, q->st, &f);
    pthread_mutex_unlock(&q->mu);
    flush_failures_fire(g, &f);
    if (ndead > 0)
        fail_items_later(g, dead, ndead, why);
}

static void flush_queue(dht_grpc *g, int qi)
{
    if (qi / 2 != g->self) {
        stream_flush(g, qi);
        return;
    }
    peerq *q = &g->queues[qi];
    qitem *items;
    pthread_mutex_lock(&q->mu);
    size_t n = take_batch(q, &items);
    pthread_mutex_unlock(&q->mu);
    if (n > 0)
        send_batch(g, qi, items, n);
}

/* Flushes queue qi at this worker's drain when called on a worker (the
 * corking of worker_drain), at once otherwise. */
static void flush_soon(dht_grpc *g, int qi)
{
    worker *w = own_worker(g);
    if (w != NULL && qi < 64)
        w->dirty |= 1ull << qi;
    else
        flush_queue(g, qi);
}

static void cs_send_done(cstream *cs, int success)
{
    dht_grpc *g = cs->g;
    peerq *q = &g->queues[cs->qi];
    (void)success; /* a failed send ends the call: the status event follows */
    pthread_mutex_lock(&q->mu);
    grpc_byte_buffer_destroy(cs->send_bb);
    cs->send_bb = NULL;
    cs->sending = false;
    bool more = q->len > 0;
    bool last = cs_unref_locked(cs);
    pthread_mutex_unlock(&q->mu);
    int qi = cs->qi;
    if (last)
        cs_free(cs);
    if (more)
        flush_soon(g, qi);
}

static void cs_recv_done(cstream *cs, int success)
{
    dht_grpc *g = cs->g;
    peerq *q = &g->queues[cs->qi];
    dht_msg *reps = NULL;
    size_t n = 0;
    uint64_t id = 0;
    bool ok = false;
    if (success && cs->recv_bb != NULL) {
        ok = bb_decode_batch(cs->recv_bb, &reps, &n, &id) == 0;
        grpc_byte_buffer_destroy(cs->recv_bb);
        cs->recv_bb = NULL;
        if (!ok) {
            DHT_WARN("malformed batch reply from %s: closing its stream", g->addrs[cs->qi / 2]);
            grpc_call_cancel_with_status(cs->call, GRPC_STATUS_INTERNAL, "malformed batch reply",
                                         NULL);
        }
    } else if (cs->recv_bb != NULL) {
        grpc_byte_buffer_destroy(cs->recv_bb);
        cs->recv_bb = NULL;
    }

    sbatch *sb = NULL;
    bool again = false, last = false;
    pthread_mutex_lock(&q->mu);
    if (ok) {
        for (sbatch **pp = &cs->sent; *pp; pp = &(*pp)->next) {
            if ((*pp)->id == id) {
                sb = *pp;
                *pp = sb->next;
                if (cs->sent_tail == sb) {
                    cs->sent_tail = NULL;
                    for (sbatch *t = cs->sent; t; t = t->next)
                        cs->sent_tail = t;
                }
                break;
            }
        }
        again = !cs->ended;
    }
    if (!again)
        last = cs_unref_locked(cs);
    pthread_mutex_unlock(&q->mu);

    if (sb != NULL) {
        dht_status st = n == sb->n ? DHT_OK : DHT_ERR_REMOTE;
        DHT_DEBUG("batch of %zu to %s: %s in %.2f ms", sb->n, g->addrs[cs->qi / 2],
                  dht_status_name(st), (double)(dht_now_ns() - sb->started) / 1e6);
        set_peer_state(g, cs->qi / 2, 1);
        answer_items(sb->items, sb->n, st, reps);
        free(sb->items);
        free(sb);
    }
    free(reps);
    if (again && !cs_start_recv(cs)) {
        pthread_mutex_lock(&q->mu);
        last = cs_unref_locked(cs);
        pthread_mutex_unlock(&q->mu);
    }
    if (last)
        cs_free(cs);
}

static void cs_status_done(cstream *cs, int success)
{
    dht_grpc *g = cs->g;
    int qi = cs->qi;
    peerq *q = &g->queues[qi];
    pthread_mutex_lock(&q->mu);
    cs->ended = true;
    bool last = false;
    if (q->st == cs) {
        q->st = NULL;
        last = cs_unref_locked(cs);
    }
    last = cs_unref_locked(cs) || last;
    sbatch *list = cs->sent;
    cs->sent = cs->sent_tail = NULL;
    bool more = q->len > 0;
    pthread_mutex_unlock(&q->mu);

    dht_status st = !success || atomic_load(&g->stopping)        ? DHT_ERR_SHUTDOWN
                    : cs->status == GRPC_STATUS_UNAVAILABLE       ? DHT_ERR_UNAVAILABLE
                    : cs->status == GRPC_STATUS_DEADLINE_EXCEEDED ? DHT_ERR_TIMEOUT
                    : cs->status == GRPC_STATUS_OK                ? DHT_ERR_UNAVAILABLE
                                                                  : DHT_ERR_REMOTE;
    if (success && (cs->status == GRPC_STATUS_UNAVAILABLE ||
                    cs->status == GRPC_STATUS_DEADLINE_EXCEEDED))
        set_peer_state(g, qi / 2, 0);
    if (success)
        note_error(cs->status, cs->details);
    DHT_DEBUG("stream to %s ended: %s", g->addrs[qi / 2], tl_last_error);
    while (list != NULL) {
        sbatch *next = list->next;
        fail_items_now(list->items, list->n, st);
        free(list->items);
        free(list);
        list = next;
    }
    tl_last_error[0] = '\0';
    if (last)
        cs_free(cs);
    if (more) /* on a new stream, or failed if stopping */
        flush_soon(g, qi);
}

/* The sweep's part for streams: fails sent batches whose earliest item
 * deadline passed (their reply, if it ever comes, is dropped). */
static void cs_sweep(dht_grpc *g, int qi, int64_t now)
{
    peerq *q = &g->queues[qi];
    sbatch *expired = NULL, **tail = &expired;
    pthread_mutex_lock(&q->mu);
    cstream *cs = q->st;
    if (cs != NULL) {
        sbatch **pp = &cs->sent;
        cs->sent_tail = NULL;
        while (*pp) {
            sbatch *sb = *pp;
            if (sb->deadline <= now) {
                *pp = sb->next;
                sb->next = NULL;
                *tail = sb;
                tail = &sb->next;
            } else {
                cs->sent_tail = sb;
                pp = &sb->next;
            }
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (expired != NULL)
        set_peer_state(g, qi / 2, 0);
    while (expired != NULL) {
        sbatch *next = expired->next;
        fail_items_now(expired->items, expired->n, DHT_ERR_TIMEOUT);
        free(expired->items);
        free(expired);
        expired = next;
    }
}

/* Ends the streams to remote peers (shutdown): their status events fail
 * whatever still waits. */
static void cs_cancel_all(dht_grpc *g)
{
    for (int qi = 0; qi < 2 * g->base.npeers; qi++) {
        peerq *q = &g->queues[qi];
        pthread_mutex_lock(&q->mu);
        if (q->st != NULL)
            grpc_call_cancel(q->st->call, NULL);
        pthread_mutex_unlock(&q->mu);
    }
}

/* Every SWEEP_NS, fails queued items whose deadline passed.  Without it an
 * item queued behind batches to an unresponsive peer would learn its fate
 * only when a slot frees, which can be several batch timeouts after its
 * own deadline: the caller's deadline would not hold. */
#define SWEEP_NS (20 * DHT_NS_PER_MS)

static void sweep_queues(void *arg)
{
    dht_grpc *g = arg;
    int64_t now = dht_now_ns();
    for (int qi = 0; qi < 2 * g->base.npeers; qi++) {
        peerq *q = &g->queues[qi];
        qitem *expired;
        size_t nexp;
        pthread_mutex_lock(&q->mu);
        q->len = split_expired(q->items, q->len, now, &expired, &nexp, NULL);
        pthread_mutex_unlock(&q->mu);
        fail_items_now(expired, nexp, DHT_ERR_TIMEOUT); /* timer thread: allowed */
        free(expired);
        if (qi / 2 != g->self)
            cs_sweep(g, qi, now);
    }
    if (!atomic_load(&g->stopping))
        dht_timers_add(g->timers, SWEEP_NS, sweep_queues, g);
}

static int enqueue(dht_grpc *g, int peer, const dht_msg *req, int64_t deadline,
                   dht_reply_cb cb, void *arg)
{
    int qi = queue_of(peer, req->type);
    peerq *q = &g->queues[qi];
    pthread_mutex_lock(&q->mu);
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 64;
        qitem *n = realloc(q->items, ncap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&q->mu);
            return -1;
        }
        q->items = n;
        q->cap = ncap;
    }
    q->items[q->len++] = (qitem){*req, deadline, cb, arg};
    pthread_mutex_unlock(&q->mu);
    /* Corked on a worker: what its events queue for the peer leaves in one
     * batch when it runs out of events (worker_drain). */
    flush_soon(g, qi);
    return 0;
}

/* Completion of a batch call: every item gets its reply or the call's
 * error, then whatever queued meanwhile goes out. */
static void batch_call_done(ccall *c, dht_status st)
{
    dht_grpc *g = c->g;
    dht_msg *reps = NULL;
    size_t n = 0;
    DHT_DEBUG("batch of %zu to %s: %s in %.2f ms", c->nbatch, g->addrs[c->peer],
              dht_status_name(st), (double)(dht_now_ns() - c->started) / 1e6);
    if (st == DHT_OK && (bb_decode_batch(c->recv_bb, &reps, &n, NULL) != 0 || n != c->nbatch))
        st = DHT_ERR_REMOTE;
    answer_items(c->batch, c->nbatch, st, reps);
    free(reps);
    free(c->batch);
    batch_slot_done(g, c->queue);
}

static int grpc_send(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                     dht_reply_cb cb, void *arg)
{
    dht_grpc *g = (dht_grpc *)t;
    if (atomic_load(&g->stopping) || peer < 0 || peer >= t->npeers)
        return -1;
    if (dht_codec_batchable(req->type))
        return enqueue(g, peer, req, deadline_ns, cb, arg);
    const char *method = dht_codec_method(req->type);
    if (method == NULL)
        return -1;
    grpc_byte_buffer *send_bb = bb_encode(req, false);
    if (send_bb == NULL)
        return -1;
    ccall *c = calloc(1, sizeof *c);
    if (c == NULL) {
        grpc_byte_buffer_destroy(send_bb);
        return -1;
    }
    c->type = req->type;
    c->cb = cb;
    c->arg = arg;
    return start_call(g, peer, method, send_bb, deadline_ns, c);
}

int dht_grpc_call_async(dht_grpc *g, int peer, const char *method, const void *req,
                        size_t req_len, int64_t deadline_ns, dht_grpc_raw_cb cb, void *arg)
{
    if (atomic_load(&g->stopping) || peer < 0 || peer >= g->base.npeers)
        return -1;
    ccall *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    c->raw_cb = cb;
    c->arg = arg;
    return start_call(g, peer, method, bb_from(req, req_len), deadline_ns, c);
}

/* Completion of a raw call: hand over the bytes as they came. */
static void raw_call_done(ccall *c, int success)
{
    grpc_slice sl = grpc_empty_slice();
    bool have = success && c->status == GRPC_STATUS_OK && bb_slice(c->recv_bb, &sl);
    c->raw_cb(c->arg, success ? (int)c->status : -1, have ? GRPC_SLICE_START_PTR(sl) : NULL,
              have ? GRPC_SLICE_LENGTH(sl) : 0);
    grpc_slice_unref(sl);
}

static const char *md_find(const grpc_metadata_array *a, const char *key)
{
    static _Thread_local char val[64];
    for (size_t i = 0; i < a->count; i++) {
        if (grpc_slice_str_cmp(a->metadata[i].key, key) == 0) {
            size_t n = GRPC_SLICE_LENGTH(a->metadata[i].value);
            if (n >= sizeof val)
                n = sizeof val - 1;
            memcpy(val, GRPC_SLICE_START_PTR(a->metadata[i].value), n);
            val[n] = '\0';
            return val;
        }
    }
    return NULL;
}

static void client_call_done(ccall *c, int success)
{
    dht_grpc *g = c->g;
    dht_msg reply;
    dht_status st;
    bool decoded = false;

    if (c->raw_cb) {
        raw_call_done(c, success);
        goto release;
    }
    if (c->batch) {
        dht_status bst = !success                                       ? DHT_ERR_SHUTDOWN
                         : c->status == GRPC_STATUS_OK                  ? DHT_OK
                         : c->status == GRPC_STATUS_UNAVAILABLE         ? DHT_ERR_UNAVAILABLE
                         : c->status == GRPC_STATUS_DEADLINE_EXCEEDED   ? DHT_ERR_TIMEOUT
                                                                        : DHT_ERR_REMOTE;
        if (success)
            set_peer_state(g, c->peer, c->status != GRPC_STATUS_UNAVAILABLE &&
                                           c->status != GRPC_STATUS_DEADLINE_EXCEEDED);
        batch_call_done(c, bst);
        goto release;
    }
    if (!success) {
        st = DHT_ERR_SHUTDOWN;
    } else if (c->status == GRPC_STATUS_OK) {
        grpc_slice sl;
        if (bb_slice(c->recv_bb, &sl)) {
            decoded = dht_codec_decode_reply(c->type, GRPC_SLICE_START_PTR(sl),
                                             GRPC_SLICE_LENGTH(sl), &reply) == 0;
            grpc_slice_unref(sl);
        }
        st = decoded ? DHT_OK : DHT_ERR_REMOTE;
        if (decoded && c->type == DHT_MSG_PUT) {
            const char *o = md_find(&c->trail_md, "dht-outcome");
            reply.outcome = reply.ok ? DHT_PUT_APPLIED
                            : (o && strcmp(o, "unknown") == 0) ? DHT_PUT_UNKNOWN
                                                                : DHT_PUT_NOT_APPLIED;
        }
    } else if (c->status == GRPC_STATUS_UNAVAILABLE) {
        st = DHT_ERR_UNAVAILABLE;
    } else if (c->status == GRPC_STATUS_DEADLINE_EXCEEDED) {
        st = DHT_ERR_TIMEOUT;
    } else {
        st = DHT_ERR_REMOTE;
    }
    if (success) {
        /* The peer spoke gRPC to us unless the call failed to connect or
         * ran out of time. */
        bool up = c->status != GRPC_STATUS_UNAVAILABLE &&
                  c->status != GRPC_STATUS_DEADLINE_EXCEEDED;
        set_peer_state(g, c->peer, up);
    }
    if (st != DHT_OK) {
        note_error(c->status, c->details);
        DHT_DEBUG("%s to %s failed: %s", dht_msg_type_name(c->type), g->addrs[c->peer],
                  tl_last_error);
    }
    c->cb(c->arg, st, decoded ? &reply : NULL);
    tl_last_error[0] = '\0';
    if (decoded)
        free(reply.entries);
release:
    grpc_byte_buffer_destroy(c->send_bb);
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    grpc_slice_unref(c->details);
    grpc_call_unref(c->call);
    free(c);
    atomic_fetch_sub(&g->inflight, 1);
}

/* ---- incoming calls ------------------------------------------------------ */

static void request_call(dht_grpc *g, worker *w, int method)
{
    if (atomic_load(&g->stopping))
        return;
    scall *s = calloc(1, sizeof *s);
    if (s == NULL) {
        DHT_ERROR("out of memory: cannot accept more calls");
        return;
    }
    s->kind = TAG_SERVER_NEW;
    s->g = g;
    s->w = w;
    s->method = method;
    grpc_metadata_array_init(&s->req_md);
    grpc_call_error e;
    atomic_fetch_add(&g->inflight, 1);
    if (method == M_GENERIC) {
        grpc_call_details_init(&s->details);
        e = grpc_server_request_call(g->server, &s->call, &s->details, &s->req_md, w->cq, w->cq,
                                     s);
    } else {
        e = grpc_server_request_registered_call(g->server, g->methods[method], &s->call,
                                                &s->deadline, &s->req_md,
                                                method == M_STREAM ? NULL : &s->payload, w->cq,
                                                w->cq, s);
    }
    if (e != GRPC_CALL_OK) {
        atomic_fetch_sub(&g->inflight, 1);
        grpc_metadata_array_destroy(&s->req_md);
        if (method == M_GENERIC)
            grpc_call_details_destroy(&s->details);
        free(s);
    }
}

static void scall_free(scall *s)
{
    dht_grpc *g = s->g;
    grpc_metadata_array_destroy(&s->req_md);
    if (s->method == M_GENERIC)
        grpc_call_details_destroy(&s->details);
    if (s->payload)
        grpc_byte_buffer_destroy(s->payload);
    if (s->resp_bb)
        grpc_byte_buffer_destroy(s->resp_bb);
    if (s->call)
        grpc_call_unref(s->call);
    free(s);
    atomic_fetch_sub(&g->inflight, 1);
}

/* Sends the response (message unless NULL, then status) and arranges for s
 * to be freed when the batch completes; takes ownership of msg. */
static void respond_bb(scall *s, grpc_byte_buffer *msg, grpc_status_code code,
                       const char *details)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    int n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (msg != NULL) {
        s->resp_bb = msg;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = s->resp_bb;
    }
    s->status_details = grpc_slice_from_copied_string(details ? details : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = &s->status_details;
    ops[n].data.send_status_from_server.trailing_metadata_count = s->ntrailing;
    ops[n++].data.send_status_from_server.trailing_metadata = s->trailing;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &s->cancelled;
    s->kind = TAG_SERVER_DONE;
    if (grpc_call_start_batch(s->call, ops, (size_t)n, s, NULL) != GRPC_CALL_OK) {
        grpc_slice_unref(s->status_details);
        scall_free(s);
    }
}

static void respond(scall *s, const uint8_t *msg, size_t len, grpc_status_code code,
                    const char *details)
{
    respond_bb(s, msg ? bb_from(msg, len) : NULL, code, details);
}

/* Replies with m encoded, or INTERNAL if it cannot be encoded. */
static void respond_msg(scall *s, const dht_msg *m, const char *details)
{
    grpc_byte_buffer *bb = bb_encode(m, true);
    if (bb == NULL)
        respond(s, NULL, 0, GRPC_STATUS_INTERNAL, "reply too large or out of memory");
    else
        respond_bb(s, bb, GRPC_STATUS_OK, details);
}

/* The caller's deadline on our monotonic clock (INT64_MAX if none), so the
 * work done on its behalf stops when it stops waiting. */
static int64_t call_deadline(const scall *s)
{
    gpr_timespec dl = gpr_convert_clock_type(s->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ns = (int64_t)left.tv_sec * DHT_NS_PER_SEC + left.tv_nsec;
    if (ns > 3600 * DHT_NS_PER_SEC)
        return INT64_MAX;
    return dht_now_ns() + ns;
}

static void public_done(void *arg, dht_status st, const dht_msg *reply, const char *reason)
{
    scall *s = arg;
    if (st != DHT_OK || reply == NULL) {
        respond(s, NULL, 0, GRPC_STATUS_UNAVAILABLE, reason ? reason : "unavailable");
        return;
    }
    if (reply->type == DHT_MSG_PUT) {
        static const char *const outcome[] = {"applied", "not-applied", "unknown"};
        s->trailing[0].key = grpc_slice_from_static_string("dht-outcome");
        s->trailing[0].value = grpc_slice_from_static_string(outcome[reply->outcome % 3]);
        s->ntrailing = 1;
    }
    respond_msg(s, reply, reason);
}

typedef struct {
    scall *s;
    dht_msg *reqs, *reps;
    size_t n;
} batch_job;

/* The service answered a batch (on any thread): encode and respond. */
static void batch_answered(void *arg)
{
    batch_job *b = arg;
    grpc_byte_buffer *bb = bb_encode_batch(b->reps, b->n, 0);
    if (bb == NULL)
        respond(b->s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else
        respond_bb(b->s, bb, GRPC_STATUS_OK, NULL);
    free(b->reqs);
    free(b->reps);
    free(b);
}

static void serve_batch(dht_grpc *g, scall *s)
{
    if (s->payload == NULL) { /* cancelled before it was read */
        respond(s, NULL, 0, GRPC_STATUS_CANCELLED, "no request message");
        return;
    }
    batch_job *b = calloc(1, sizeof *b);
    if (b == NULL || bb_decode_batch(s->payload, &b->reqs, &b->n, NULL) != 0) {
        free(b);
        DHT_WARN("malformed batch request rejected");
        respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "malformed batch message");
        return;
    }
    b->s = s;
    b->reps = calloc(b->n ? b->n : 1, sizeof *b->reps);
    if (b->reps == NULL) {
        free(b->reqs);
        free(b);
        respond(s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    DHT_DEBUG("batch of %zu replica requests", b->n);
    if (g->svc.replica_batch) {
        g->svc.replica_batch(g->svc.arg, b->reqs, b->reps, b->n, batch_answered, b);
    } else {
        for (size_t i = 0; i < b->n; i++)
            g->svc.replica(g->svc.arg, &b->reqs[i], &b->reps[i]);
        batch_answered(b);
    }
}

/* ---- incoming batch streams -------------------------------------------------
 *
 * The server end of a peer's batch stream (see cstream): every message is
 * a batch handed to the service as it arrives, and each answer goes back
 * tagged with its request's id as soon as it is ready, so a lock batch
 * never waits behind a write batch's fsync.  One send is in flight at a
 * time; answers ready meanwhile wait in `out`.  When the peer stops
 * sending (it cancelled, or the connection died) and every batch is
 * answered, the status is sent.  The mutex guards the fields below it;
 * refs counts started operations and batches in the service. */

typedef struct reply_out {
    struct reply_out *next;
    grpc_byte_buffer *bb;
} reply_out;

typedef struct sstream {
    otag recv_tag, send_tag, close_tag;
    dht_grpc *g;
    grpc_call *call;
    grpc_byte_buffer *recv_bb; /* the recv operation's, worker only */
    int cancelled;             /* written by the close operation */
    pthread_mutex_t mu;
    int refs, jobs;
    bool md_sent, sending, reading_done, status_sent, dead;
    grpc_byte_buffer *send_bb;
    reply_out *oh, *ot;
    grpc_slice status_details;
} sstream;

typedef struct {
    sstream *ss;
    uint64_t id;
    dht_msg *reqs, *reps;
    size_t n;
} sjob;

static void ss_free(sstream *ss)
{
    dht_grpc *g = ss->g;
    while (ss->oh != NULL) {
        reply_out *o = ss->oh;
        ss->oh = o->next;
        grpc_byte_buffer_destroy(o->bb);
        free(o);
    }
    if (ss->send_bb)
        grpc_byte_buffer_destroy(ss->send_bb);
    if (ss->recv_bb)
        grpc_byte_buffer_destroy(ss->recv_bb);
    if (ss->status_sent)
        grpc_slice_unref(ss->status_details);
    grpc_call_unref(ss->call);
    pthread_mutex_destroy(&ss->mu);
    free(ss);
    atomic_fetch_sub(&g->inflight, 1);
}

/* Starts the next send (mu held, none in flight): a queued answer, or the
 * status once the peer stopped sending and nothing is left to answer. */
static void ss_pump_locked(sstream *ss)
{
    if (ss->sending || ss->status_sent)
        return;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!ss->md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (ss->oh != NULL && !ss->dead) {
        reply_out *o = ss->oh;
        ss->oh = o->next;
        if (ss->oh == NULL)
            ss->ot = NULL;
        ss->send_bb = o->bb;
        free(o);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = ss->send_bb;
    } else if (ss->reading_done && ss->jobs == 0) {
        ss->status_details = grpc_slice_from_static_string("");
        ss->status_sent = true;
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[n++].data.send_status_from_server.status_details = &ss->status_details;
    } else {
        return;
    }
    ss->md_sent = true;
    if (grpc_call_start_batch(ss->call, ops, n, &ss->send_tag, NULL) == GRPC_CALL_OK) {
        ss->sending = true;
        ss->refs++;
    } else {
        ss->dead = true; /* nothing more can be sent on this call */
        if (ss->send_bb) {
            grpc_byte_buffer_destroy(ss->send_bb);
            ss->send_bb = NULL;
        }
    }
}

/* The service answered a streamed batch (on any thread). */
static void ss_answered(void *arg)
{
    sjob *j = arg;
    sstream *ss = j->ss;
    grpc_byte_buffer *bb = bb_encode_batch(j->reps, j->n, j->id);
    reply_out *o = bb ? malloc(sizeof *o) : NULL;
    pthread_mutex_lock(&ss->mu);
    if (o != NULL && !ss->dead) {
        *o = (reply_out){NULL, bb};
        if (ss->ot)
            ss->ot->next = o;
        else
            ss->oh = o;
        ss->ot = o;
        bb = NULL;
        o = NULL;
    } else if (!ss->dead) {
        /* Cannot answer: the peer's batch would wait until its deadline;
         * end the stream so it fails at once. */
        grpc_call_cancel_with_status(ss->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory",
                                     NULL);
    }
    ss->jobs--;
    ss_pump_locked(ss);
    bool last = --ss->refs == 0;
    pthread_mutex_unlock(&ss->mu);
    if (bb)
        grpc_byte_buffer_destroy(bb);
    free(o);
    free(j->reqs);
    free(j->reps);
    free(j);
    if (last)
        ss_free(ss);
}

static bool ss_start_recv(sstream *ss)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &ss->recv_bb;
    return grpc_call_start_batch(ss->call, &op, 1, &ss->recv_tag, NULL) == GRPC_CALL_OK;
}

/* No more messages will be read: drops the recv operation's reference and
 * sends the status once every batch is answered. */
static void ss_reading_done(sstream *ss)
{
    pthread_mutex_lock(&ss->mu);
    ss->reading_done = true;
    ss_pump_locked(ss);
    bool last = --ss->refs == 0;
    pthread_mutex_unlock(&ss->mu);
    if (last)
        ss_free(ss);
}

static void ss_recv_done(sstream *ss, int success)
{
    dht_grpc *g = ss->g;
    sjob *j = NULL;
    bool more = false;
    if (success && ss->recv_bb != NULL) {
        j = calloc(1, sizeof *j);
        bool ok = j != NULL && bb_decode_batch(ss->recv_bb, &j->reqs, &j->n, &j->id) == 0;
        if (ok && (j->reps = calloc(j->n ? j->n : 1, sizeof *j->reps)) == NULL) {
            free(j->reqs);
            ok = false;
        }
        grpc_byte_buffer_destroy(ss->recv_bb);
        ss->recv_bb = NULL;
        if (!ok) {
            bool oom = j == NULL || j->reqs != NULL;
            free(j);
            j = NULL;
            if (!oom)
                DHT_WARN("malformed batch message on a stream rejected");
            grpc_call_cancel_with_status(ss->call,
                                         oom ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                             : GRPC_STATUS_INVALID_ARGUMENT,
                                         oom ? "out of memory" : "malformed batch message", NULL);
        } else {
            j->ss = ss;
            more = true;
        }
    } else if (ss->recv_bb != NULL) {
        grpc_byte_buffer_destroy(ss->recv_bb);
        ss->recv_bb = NULL;
    }
    if (!more) {
        ss_reading_done(ss);
        return;
    }
    pthread_mutex_lock(&ss->mu);
    ss->jobs++;
    ss->refs++;
    pthread_mutex_unlock(&ss->mu);
    DHT_DEBUG("streamed batch of %zu replica requests", j->n);
    if (g->svc.replica_batch) {
        g->svc.replica_batch(g->svc.arg, j->reqs, j->reps, j->n, ss_answered, j);
    } else {
        for (size_t i = 0; i < j->n; i++)
            g->svc.replica(g->svc.arg, &j->reqs[i], &j->reps[i]);
        ss_answered(j);
    }
    if (!ss_start_recv(ss))
        ss_reading_done(ss);
}

static void ss_send_done(sstream *ss, int success)
{
    pthread_mutex_lock(&ss->mu);
    if (ss->send_bb) {
        grpc_byte_buffer_destroy(ss->send_bb);
        ss->send_bb = NULL;
    }
    ss->sending = false;
    if (!success)
        ss->dead = true;
    ss_pump_locked(ss);
    bool last = --ss->refs == 0;
    pthread_mutex_unlock(&ss->mu);
    if (last)
        ss_free(ss);
}

static void ss_close_done(sstream *ss)
{
    pthread_mutex_lock(&ss->mu);
    if (ss->cancelled)
        ss->dead = true;
    bool last = --ss->refs == 0;
    pthread_mutex_unlock(&ss->mu);
    if (last)
        ss_free(ss);
}

/* A peer opened a batch stream: the call moves from s to a new sstream. */
static void serve_stream(dht_grpc *g, scall *s)
{
    sstream *ss = calloc(1, sizeof *ss);
    if (ss == NULL) {
        respond(s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ss->recv_tag = (otag){TAG_SS_RECV, ss};
    ss->send_tag = (otag){TAG_SS_SEND, ss};
    ss->close_tag = (otag){TAG_SS_CLOSE, ss};
    ss->g = g;
    ss->call = s->call;
    s->call = NULL;
    pthread_mutex_init(&ss->mu, NULL);
    atomic_fetch_add(&g->inflight, 1);
    scall_free(s);

    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ss->cancelled;
    if (grpc_call_start_batch(ss->call, &op, 1, &ss->close_tag, NULL) != GRPC_CALL_OK) {
        ss_free(ss);
        return;
    }
    ss->refs = 2; /* the close operation, the recv operation */
    if (!ss_start_recv(ss))
        ss_reading_done(ss);
}

static void server_call_arrived(scall *s, int success)
{
    dht_grpc *g = s->g;
    if (!success) { /* server shutting down */
        s->call = NULL;
        scall_free(s);
        return;
    }
    request_call(g, s->w, s->method); /* keep the slot count constant */

    if (s->method == M_GENERIC) {
        char *m = grpc_slice_to_c_string(s->details.method);
        DHT_DEBUG("unknown method %s", m);
        char why[300];
        snprintf(why, sizeof why, "unknown method %s", m);
        gpr_free(m);
        respond(s, NULL, 0, GRPC_STATUS_UNIMPLEMENTED, why);
        return;
    }
    if (s->method == M_BATCH) {
        serve_batch(g, s);
        return;
    }
    if (s->method == M_STREAM) {
        serve_stream(g, s);
        return;
    }
    if (s->method == M_HEALTH) {
        /* grpc.health.v1.HealthCheckResponse{status: SERVING(1)|NOT_SERVING(2)} */
        int serving = g->serving ? g->serving(g->serving_arg) : 1;
        uint8_t resp[2] = {0x08, serving ? 1 : 2};
        respond(s, resp, sizeof resp, GRPC_STATUS_OK, NULL);
        return;
    }

    if (s->payload == NULL) {
        /* No message: the caller cancelled or its deadline passed before
         * the request was read (common after a stall), not bad input. */
        DHT_DEBUG("%s call without a message (cancelled)", dht_msg_type_name((dht_msg_type)s->method));
        respond(s, NULL, 0, GRPC_STATUS_CANCELLED, "no request message");
        return;
    }
    dht_msg req;
    uint8_t buf[MAX_MSG];
    long len = bb_read(s->payload, buf, sizeof buf);
    if (len < 0 || dht_codec_decode_request((dht_msg_type)s->method, buf, (size_t)len, &req)) {
        DHT_WARN("malformed %s request rejected", dht_msg_type_name((dht_msg_type)s->method));
        respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
        return;
    }
    if (req.type == DHT_MSG_PUT || req.type == DHT_MSG_GET) {
        DHT_DEBUG("public %s key=%lld value=%lld", dht_msg_type_name(req.type),
                  (long long)req.key, (long long)req.value);
        g->svc.client(g->svc.arg, &req, call_deadline(s), public_done, s);
        return;
    }
    dht_msg reply;
    memset(&reply, 0, sizeof reply);
    g->svc.replica(g->svc.arg, &req, &reply);
    DHT_DEBUG("%s key=%lld -> ok=%d v=(%llu,%llx)", dht_msg_type_name(req.type),
              (long long)req.key, reply.ok, (unsigned long long)reply.version.counter,
              (unsigned long long)reply.version.writer);
    respond_msg(s, &reply, NULL);
    free(reply.entries); /* the service's, for SCAN replies */
}

/* ---- workers --------------------------------------------------------------- */

/* Runs once the worker finds no completion-queue event waiting (or after
 * DRAIN_EVERY events in a row): sends the batches the handlers corked and
 * runs the local replica's batches, repeatedly, since their replies may
 * queue more.  Twenty public calls that arrive together thus cost one batch
 * call per peer instead of twenty, with no added delay: the worker was busy
 * with those events anyway, and it drains before it would sleep. */
#define DRAIN_EVERY 64

static void worker_drain(worker *w)
{
    dht_grpc *g = w->g;
    while (w->dirty != 0 || w->lhead != NULL) {
        while (w->dirty != 0) {
            int qi = __builtin_ctzll(w->dirty);
            w->dirty &= w->dirty - 1;
            flush_queue(g, qi);
        }
        local_job *j = w->lhead;
        if (j != NULL) {
            w->lhead = j->next;
            if (w->lhead == NULL)
                w->ltail = NULL;
            g->svc.replica_batch(g->svc.arg, j->reqs, j->reps, j->n, local_done, j);
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int since_drain = 0;
    tl_worker = w;
    pthread_setname_np(pthread_self(), "dht-worker");
    for (;;) {
        /* With work corked, only look for events already there; when none
         * is (or after DRAIN_EVERY of them), send it. */
        bool corked = w->dirty != 0 || w->lhead != NULL;
        grpc_event ev = grpc_completion_queue_next(
            w->cq, corked ? gpr_time_0(GPR_CLOCK_MONOTONIC) : gpr_inf_future(GPR_CLOCK_MONOTONIC),
            NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE || ++since_drain >= DRAIN_EVERY) {
            worker_drain(w);
            since_drain = 0;
        }
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        tag_kind *k = ev.tag;
        switch (*k) {
        case TAG_CLIENT_CALL:
            client_call_done((ccall *)k, ev.success);
            break;
        case TAG_SERVER_NEW:
            server_call_arrived((scall *)k, ev.success);
            break;
        case TAG_SERVER_DONE: {
            scall *s = (scall *)k;
            grpc_slice_unref(s->status_details);
            scall_free(s);
            break;
        }
        case TAG_SHUTDOWN:
            atomic_store(&w->g->shutdown_tag.done, true);
            break;
        case TAG_CS_SEND:
            cs_send_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_CS_RECV:
            cs_recv_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_CS_STATUS:
            cs_status_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_SS_SEND:
            ss_send_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_SS_RECV:
            ss_recv_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_SS_CLOSE:
            ss_close_done(((otag *)k)->owner);
            break;
        }
    }
    return NULL;
}

static void *grpc_after_cancelable(dht_transport *t, int64_t delay_ns, dht_timer_cb cb,
                                   void *arg)
{
    return dht_timers_add_cancelable(((dht_grpc *)t)->timers, delay_ns, cb, arg);
}

static int grpc_cancel(dht_transport *t, void *handle)
{
    return dht_timers_cancel(((dht_grpc *)t)->timers, handle);
}

static const char *grpc_last_error(dht_transport *t)
{
    (void)t;
    return tl_last_error;
}

static const dht_transport_ops grpc_ops = {grpc_send,   grpc_after,  grpc_now,
                                           grpc_after_cancelable, grpc_cancel,
                                           grpc_last_error};

static grpc_channel_args *channel_args(void)
{
    /* Reconnect quickly after a peer restarts: while a channel is in
     * backoff, calls fail fast with UNAVAILABLE.  The "min reconnect
     * backoff" is really gRPC's minimum connect timeout: set low, a
     * handshake slowed by a busy machine is aborted ("tcp handshaker
     * shutdown") and a live peer looks dead; 2 s is ample on a LAN.
     * Keepalive pings every second detect a connection whose packets are
     * silently dropped (a partition, a stalled peer) within about two
     * seconds and reconnect, instead of waiting out TCP's retransmission
     * backoff, which after a long partition took ~50 s to notice the heal. */
    static grpc_arg args[7];
    static grpc_channel_args ca = {7, args};
    static const struct {
        const char *key;
        int value;
    } ints[7] = {
        {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100},
        {GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2000},
        {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500},
        {GRPC_ARG_ENABLE_RETRIES, 0},
        {GRPC_ARG_KEEPALIVE_TIME_MS, 1000},
        {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000},
        {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
    };
    for (int i = 0; i < 7; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)ints[i].key;
        args[i].value.integer = ints[i].value;
    }
    return &ca;
}

static int start_server(dht_grpc *g, const char *addr, char *err, size_t errlen)
{
    /* Without this gRPC sets SO_REUSEPORT and a second server on a busy
     * port would "succeed" and split the traffic. */
    grpc_arg a[4] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
        /* accept our peers' one-second keepalive pings (see channel_args) */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         .value.integer = 500},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PING_STRIKES, .value.integer = 0},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
         .value.integer = 1},
    };
    grpc_channel_args sa = {4, a};
    g->server = grpc_server_create(&sa, NULL);
    for (int i = 0; i < g->nworkers; i++)
        grpc_server_register_completion_queue(g->server, g->workers[i].cq, NULL);
    for (int m = 1; m < DHT_MSG_TYPE_MAX; m++)
        g->methods[m] = grpc_server_register_method(g->server, dht_codec_method((dht_msg_type)m),
                                                    NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                                    0);
    g->methods[M_BATCH] = grpc_server_register_method(
        g->server, DHT_CODEC_BATCH_METHOD, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    g->methods[M_STREAM] = grpc_server_register_method(g->server, DHT_CODEC_STREAM_METHOD, NULL,
                                                       GRPC_SRM_PAYLOAD_NONE, 0);
    g->methods[M_HEALTH] = grpc_server_register_method(
        g->server, DHT_HEALTH_METHOD, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(g->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        snprintf(err, errlen, "cannot listen on %s (address not local or port busy)", addr);
        grpc_server_destroy(g->server);
        g->server = NULL;
        return -1;
    }
    grpc_server_start(g->server);
    for (int i = 0; i < g->nworkers; i++)
        for (int m = 0; m < M_COUNT; m++)
            for (int k = 0; k < REQ_SLOTS; k++)
                request_call(g, &g->workers[i], m);
    return 0;
}

static void free_queues(dht_grpc *g)
{
    for (int i = 0; i < 2 * g->base.npeers; i++) {
        pthread_mutex_destroy(&g->queues[i].mu);
        free(g->queues[i].items);
    }
    free(g->queues);
}

/* ---- abseil's deadlock detector ---------------------------------------------
 * Debian builds abseil without NDEBUG, so every absl::Mutex::Lock inside
 * gRPC also runs abseil's deadlock detector: it takes one process-wide spin
 * lock, updates a graph of lock orders, and on a cycle aborts the process.
 * It costs every gRPC thread on every lock, and threads that call into
 * gRPC at once (a worker and the group-commit thread answering streamed
 * writes) contend on that spin lock; off, CPU per put fell about 4% at the
 * servers and 7% at the load generator (docs/bench.md).  abseil's release
 * builds have it off; here abseil's own setter,
 * absl::SetMutexDeadlockDetectionMode(OnDeadlockCycle::kIgnore), switches it
 * off before gRPC starts.  It is C++, so it is looked up by its mangled name
 * (Debian's inline namespace first, then upstream's for the same release);
 * not found means another abseil build, which is left as it is. */

static const char *const absl_setter_names[] = {
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
    "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
};
#define ABSL_ON_DEADLOCK_CYCLE_IGNORE 0 /* absl::OnDeadlockCycle::kIgnore */

static pthread_once_t absl_once = PTHREAD_ONCE_INIT;
static bool absl_checks_off;

static void absl_checks_off_once(void)
{
    for (size_t i = 0; i < sizeof absl_setter_names / sizeof *absl_setter_names; i++) {
        void (*set)(int);
        /* POSIX's way to turn dlsym's result into a function pointer. */
        *(void **)&set = dlsym(RTLD_DEFAULT, absl_setter_names[i]);
        if (set != NULL) {
            set(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
            absl_checks_off = true;
            return;
        }
    }
}

int dht_grpc_abseil_deadlock_checks_off(void)
{
    pthread_once(&absl_once, absl_checks_off_once);
    return absl_checks_off;
}

int dht_grpc_start(const dht_grpc_config *cfg, dht_grpc **out, char *err, size_t errlen)
{
    if (getenv("GRPC_VERBOSITY") == NULL)
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    dht_grpc_abseil_deadlock_checks_off();
    grpc_init();

    dht_grpc *g = calloc(1, sizeof *g);
    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        grpc_shutdown();
        return -1;
    }
    g->base.ops = &grpc_ops;
    g->base.npeers = cfg->npeers;
    g->nworkers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (g->nworkers < 1)
        g->nworkers = 1;
    if (cfg->service)
        g->svc = *cfg->service;
    g->self = cfg->service && cfg->service->replica_batch && cfg->self >= 0 &&
                      cfg->self < cfg->npeers
                  ? cfg->self
                  : -1;
    pthread_mutex_init(&g->lmu, NULL);
    pthread_cond_init(&g->lcv, NULL);
    g->serving = cfg->serving;
    g->serving_arg = cfg->serving_arg;
    g->on_peer_state = cfg->on_peer_state;
    g->peer_state_arg = cfg->peer_state_arg;
    atomic_init(&g->stopping, false);
    atomic_init(&g->inflight, 0);
    atomic_init(&g->rr, 0);
    g->shutdown_tag.kind = TAG_SHUTDOWN;

    g->addrs = calloc((size_t)cfg->npeers + 1, sizeof *g->addrs);
    g->channels = calloc((size_t)cfg->npeers + 1, sizeof *g->channels);
    g->peer_up = calloc((size_t)cfg->npeers + 1, sizeof *g->peer_up);
    g->queues = calloc(2 * (size_t)cfg->npeers + 1, sizeof *g->queues);
    for (int i = 0; i < 2 * cfg->npeers; i++)
        pthread_mutex_init(&g->queues[i].mu, NULL);
    g->workers = calloc((size_t)g->nworkers, sizeof *g->workers);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    for (int i = 0; i < cfg->npeers; i++) {
        g->addrs[i] = strdup(cfg->peers[i]);
        g->channels[i] = grpc_channel_create(cfg->peers[i], creds, channel_args());
        atomic_init(&g->peer_up[i], 1);
    }
    grpc_channel_credentials_release(creds);
    for (int i = 0; i < g->nworkers; i++) {
        g->workers[i].g = g;
        g->workers[i].index = i;
        g->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
    }
    g->timers = dht_timers_start();
    if (g->timers == NULL)
        snprintf(err, errlen, "cannot start the timer thread");
    if (g->timers == NULL ||
        (cfg->listen_addr && start_server(g, cfg->listen_addr, err, errlen) != 0)) {
        dht_timers_stop(g->timers);
        for (int i = 0; i < g->nworkers; i++) {
            grpc_completion_queue_shutdown(g->workers[i].cq);
            while (grpc_completion_queue_next(g->workers[i].cq,
                                              gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
            grpc_completion_queue_destroy(g->workers[i].cq);
        }
        for (int i = 0; i < cfg->npeers; i++) {
            grpc_channel_destroy(g->channels[i]);
            free(g->addrs[i]);
        }
        free(g->addrs);
        free(g->channels);
        free((void *)g->peer_up);
        free_queues(g);
        free(g->workers);
        free(g);
        grpc_shutdown();
        return -1;
    }
    for (int i = 0; i < g->nworkers; i++)
        pthread_create(&g->workers[i].thread, NULL, worker_main, &g->workers[i]);
    if (g->base.npeers > 0)
        dht_timers_add(g->timers, SWEEP_NS, sweep_queues, g);
    if (g->self >= 0 && pthread_create(&g->lthread, NULL, local_main, g) != 0)
        g->self = -1; /* no thread: the local replica is reached over gRPC */
    *out = g;
    return 0;
}

dht_transport *dht_grpc_transport(dht_grpc *g)
{
    return &g->base;
}

void dht_grpc_stop(dht_grpc *g)
{
    if (g == NULL)
        return;
    atomic_store(&g->stopping, true);
    cs_cancel_all(g);
    if (g->server) {
        grpc_server_shutdown_and_notify(g->server, g->workers[0].cq, &g->shutdown_tag);
        grpc_server_cancel_all_calls(g->server);
        for (int i = 0; i < 3000 && !atomic_load(&g->shutdown_tag.done); i++)
            usleep(1000);
    }
    /* In-flight calls and public requests end by their deadlines; wait for
     * them (bounded) so their callbacks never touch freed memory. */
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&g->inflight) == 0 && dht_timers_pending(g->timers) == 0)
            break;
        usleep(1000);
    }
    if (g->self >= 0) {
        pthread_mutex_lock(&g->lmu);
        g->lstop = true;
        pthread_cond_signal(&g->lcv);
        pthread_mutex_unlock(&g->lmu);
        pthread_join(g->lthread, NULL);
    }
    dht_timers_stop(g->timers);
    if (g->server)
        grpc_server_destroy(g->server);
    for (int i = 0; i < g->base.npeers; i++) {
        grpc_channel_destroy(g->channels[i]);
        free(g->addrs[i]);
    }
    for (int i = 0; i < g->nworkers; i++)
        grpc_completion_queue_shutdown(g->workers[i].cq);
    for (int i = 0; i < g->nworkers; i++) {
        pthread_join(g->workers[i].thread, NULL);
        grpc_completion_queue_destroy(g->workers[i].cq);
    }
    free(g->addrs);
    free(g->channels);
    free((void *)g->peer_up);
    free_queues(g);
    free(g->workers);
    pthread_mutex_destroy(&g->lmu);
    pthread_cond_destroy(&g->lcv);
    free(g);
    grpc_shutdown();
}

/* ---- one-off blocking call for tools --------------------------------------- */

int dht_grpc_call_raw(const char *addr, const char *method, const void *req, size_t req_len,
                      int64_t timeout_ns, int *status, char *details, size_t details_len,
                      uint8_t *resp, size_t *resp_len)
{
    if (getenv("GRPC_VERBOSITY") == NULL)
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    dht_grpc_abseil_deadlock_checks_off();
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(addr, creds, channel_args());
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                   gpr_time_from_nanos(timeout_ns, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, dl,
                                               NULL);
    grpc_slice_unref(m);
    int rc = -1;
    if (call != NULL) {
        grpc_byte_buffer *send = bb_from(req, req_len), *recv = NULL;
        grpc_metadata_array imd, tmd;
        grpc_metadata_array_init(&imd);
        grpc_metadata_array_init(&tmd);
        grpc_status_code code = GRPC_STATUS_UNKNOWN;
        grpc_slice det = grpc_empty_slice();
        grpc_op ops[6];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &recv;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
        ops[5].data.recv_status_on_client.status = &code;
        ops[5].data.recv_status_on_client.status_details = &det;
        int tag;
        if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
            grpc_event ev = grpc_completion_queue_pluck(cq, &tag,
                                                        gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (ev.type == GRPC_OP_COMPLETE && ev.success) {
                *status = (int)code;
                char *d = grpc_slice_to_c_string(det);
                snprintf(details, details_len, "%s", d);
                gpr_free(d);
                long n = recv ? bb_read(recv, resp, *resp_len) : 0;
                *resp_len = n > 0 ? (size_t)n : 0;
                rc = 0;
            }
        }
        grpc_byte_buffer_destroy(send);
        if (recv)
            grpc_byte_buffer_destroy(recv);
        grpc_metadata_array_destroy(&imd);
        grpc_metadata_array_destroy(&tmd);
        grpc_slice_unref(det);
        grpc_call_unref(call);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    grpc_shutdown();
    return rc;
}
