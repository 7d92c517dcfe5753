/* The client end of batch streams: one long-lived Replica/Stream call per
 * remote peer and kind, on which a queue's batches leave as messages and
 * their replies come back by id.  Opening, sending, receiving, the end of
 * a stream, the sweep of batches past their deadline and the cancel at
 * shutdown.  The server end is grpc_stream_server.c. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/codec.h"
#include "net/grpc_internal.h"

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
                                        dht_grpc_pick_cq(g), m, NULL,
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
        dht_grpc_fail_items_later(g, f->expired, f->nexpired, DHT_ERR_TIMEOUT);
    else
        free(f->expired);
    if (f->nfailed > 0)
        dht_grpc_fail_items_later(g, f->failed, f->nfailed, DHT_ERR_UNAVAILABLE);
    else
        free(f->failed);
}

/* Sends up to BATCH_MAX_ITEMS queued items as the next message of cs
 * (q->mu held, no send in flight, q->len > 0): those at the front that
 * share the first one's stamp, since a message carries one; the rest leave
 * in the next message, in order. */
static void cs_send_locked(peerq *q, cstream *cs, flush_failures *f)
{
    size_t n = dht_grpc_stamp_run(cs->g, q->items, q->len, BATCH_MAX_ITEMS);
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
    size_t live = dht_grpc_split_expired(items, n, now + SEND_MARGIN_NS, &f->expired,
                                         &f->nexpired, &deadline);
    if (live == 0) {
        free(items);
        free(sb);
        return;
    }

    *sb = (sbatch){NULL, ++cs->next_id, items, live, deadline, now};
    grpc_byte_buffer *bb = dht_grpc_bb_encode_items(cs->g, items, live, sb->id);
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
void dht_grpc_stream_flush(dht_grpc *g, int qi)
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
        dht_grpc_fail_items_later(g, dead, ndead, why);
}

void dht_grpc_cs_send_done(cstream *cs, int success)
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
        dht_grpc_flush_soon(g, qi);
}

void dht_grpc_cs_recv_done(cstream *cs, int success)
{
    dht_grpc *g = cs->g;
    peerq *q = &g->queues[cs->qi];
    dht_msg *reps = NULL;
    size_t n = 0;
    uint64_t id = 0;
    bool ok = false;
    char refused[sizeof dht_grpc_tl_last_error];
    refused[0] = '\0';
    if (success && cs->recv_bb != NULL) {
        ok = dht_grpc_bb_decode_batch_reply(cs->recv_bb, &reps, &n, &id, refused,
                                            sizeof refused) == 0;
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

    if (sb != NULL && refused[0] != '\0') {
        /* The peer refused this message's stamp (and only it): its items
         * fail with the reason; the stream carries on. */
        DHT_DEBUG("batch of %zu to %s refused: %s", sb->n, g->addrs[cs->qi / 2], refused);
        dht_grpc_set_peer_state(g, cs->qi / 2, 1);
        dht_grpc_refuse_items_now(sb->items, sb->n, refused);
        free(sb->items);
        free(sb);
    } else if (sb != NULL) {
        dht_status st = n == sb->n ? DHT_OK : DHT_ERR_REMOTE;
        DHT_DEBUG("batch of %zu to %s: %s in %.2f ms", sb->n, g->addrs[cs->qi / 2],
                  dht_status_name(st), (double)(dht_now_ns() - sb->started) / 1e6);
        dht_grpc_set_peer_state(g, cs->qi / 2, 1);
        dht_grpc_answer_items(sb->items, sb->n, st, reps);
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

void dht_grpc_cs_status_done(cstream *cs, int success)
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
        dht_grpc_set_peer_state(g, qi / 2, 0);
    if (success)
        dht_grpc_note_error(cs->status, cs->details);
    DHT_DEBUG("stream to %s ended: %s", g->addrs[qi / 2], dht_grpc_tl_last_error);
    while (list != NULL) {
        sbatch *next = list->next;
        dht_grpc_fail_items_now(list->items, list->n, st);
        free(list->items);
        free(list);
        list = next;
    }
    dht_grpc_tl_last_error[0] = '\0';
    if (last)
        cs_free(cs);
    if (more) /* on a new stream, or failed if stopping */
        dht_grpc_flush_soon(g, qi);
}

/* The sweep's part for streams: fails sent batches whose earliest item
 * deadline passed (their reply, if it ever comes, is dropped). */
void dht_grpc_cs_sweep(dht_grpc *g, int qi, int64_t now)
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
        dht_grpc_set_peer_state(g, qi / 2, 0);
    while (expired != NULL) {
        sbatch *next = expired->next;
        dht_grpc_fail_items_now(expired->items, expired->n, DHT_ERR_TIMEOUT);
        free(expired->items);
        free(expired);
        expired = next;
    }
}

/* Ends the streams to remote peers (shutdown): their status events fail
 * whatever still waits. */
void dht_grpc_cs_cancel_all(dht_grpc *g)
{
    for (int qi = 0; qi < 2 * g->base.npeers; qi++) {
        peerq *q = &g->queues[qi];
        pthread_mutex_lock(&q->mu);
        if (q->st != NULL)
            grpc_call_cancel(q->st->call, NULL);
        pthread_mutex_unlock(&q->mu);
    }
}
