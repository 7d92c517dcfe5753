/* The per-peer queues of replica requests (two per peer: see queue_of):
 * send() adds to them, a flush hands what waits to the peer's batch stream
 * (remote peers) or to a batch for the local replica, and their items are
 * answered or failed here.  No gRPC here: the queues only decide what
 * leaves when; grpc_stream_client.c and grpc_client_calls.c send it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/transport_internal.h"

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

void dht_grpc_fail_items_now(qitem *items, size_t n, dht_status st)
{
    for (size_t i = 0; i < n; i++)
        items[i].cb(items[i].arg, st, NULL);
}

void dht_grpc_refuse_items_now(qitem *items, size_t n, const char *why)
{
    snprintf(dht_grpc_tl_last_error, sizeof dht_grpc_tl_last_error, "FAILED_PRECONDITION: %s",
             why);
    dht_grpc_fail_items_now(items, n, DHT_ERR_REMOTE);
    dht_grpc_tl_last_error[0] = '\0';
}

static void fail_items_cb(void *arg)
{
    failed_items *f = arg;
    dht_grpc_fail_items_now(f->items, f->n, f->st);
    free(f->items);
    free(f);
}

/* Fails items from a timer, never from inside send(): the transport
 * contract forbids calling back into a caller that is still sending. */
void dht_grpc_fail_items_later(dht_grpc *g, qitem *items, size_t n, dht_status st)
{
    failed_items *f = malloc(sizeof *f);
    if (f != NULL) {
        *f = (failed_items){items, n, st};
        if (dht_timers_add(g->timers, 0, fail_items_cb, f) == 0)
            return;
        free(f);
    }
    /* Only while stopping (timers refused): callers are past sending. */
    dht_grpc_fail_items_now(items, n, st);
    free(items);
}

/* Hands each item its reply (reps[i], completed with the request's type and
 * key) or, unless st is DHT_OK, the error st. */
void dht_grpc_answer_items(qitem *items, size_t n, dht_status st, dht_msg *reps)
{
    if (st != DHT_OK) {
        dht_grpc_fail_items_now(items, n, st);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        reps[i].type = items[i].req.type;
        reps[i].key = items[i].req.key;
        items[i].cb(items[i].arg, DHT_OK, &reps[i]);
    }
}

/* A batch of queue qi (local replica or unary call) is over: its slot is
 * free, and what queued meanwhile goes out. */
void dht_grpc_batch_slot_done(dht_grpc *g, int qi)
{
    pthread_mutex_lock(&g->queues[qi].mu);
    g->queues[qi].inflight--;
    pthread_mutex_unlock(&g->queues[qi].mu);
    dht_grpc_flush_queue(g, qi);
}

/* Writes wait for the replica's fsync; locks and reads need none.  Each
 * peer has a queue for each kind, so a lock never waits behind a write
 * batch that waits for a disk. */
static int queue_of(int peer, dht_msg_type t)
{
    return 2 * peer + (t == DHT_MSG_WRITE);
}

/* Takes up to BATCH_MAX_ITEMS queued items of peer, all of the first
 * one's stamp, when a batch slot is free (q->mu held); returns how many,
 * with the array in *out. */
static size_t take_batch(const dht_grpc *g, peerq *q, qitem **out)
{
    if (q->len == 0 || q->inflight >= BATCH_INFLIGHT)
        return 0;
    size_t n = dht_grpc_stamp_run(g, q->items, q->len, BATCH_MAX_ITEMS);
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

void dht_grpc_flush_queue(dht_grpc *g, int qi)
{
    if (qi / 2 != g->self) {
        dht_grpc_stream_flush(g, qi);
        return;
    }
    peerq *q = &g->queues[qi];
    for (;;) {
        qitem *items;
        pthread_mutex_lock(&q->mu);
        size_t n = take_batch(g, q, &items);
        /* A batch cut short by a change of stamp does not hold back the
         * next stamp's items until it is answered: they take the next free
         * slot now, as they would have shared the batch. */
        bool again = n > 0 && n < BATCH_MAX_ITEMS && q->len > 0;
        pthread_mutex_unlock(&q->mu);
        if (n > 0)
            dht_grpc_send_batch(g, qi, items, n);
        if (!again)
            return;
    }
}

int dht_grpc_enqueue(dht_grpc *g, int peer, const dht_msg *req, int64_t deadline,
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
     * batch when it runs out of events (dht_grpc_worker_drain). */
    dht_grpc_flush_soon(g, qi);
    return 0;
}
