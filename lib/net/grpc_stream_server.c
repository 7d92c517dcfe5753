/* The server end of batch streams: a peer's Replica/Stream call, whose
 * messages are batches handed to the service as they arrive and answered
 * by id as soon as each is ready.  The client end is grpc_stream_client.c;
 * the call arrives through grpc_server_calls.c. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/codec.h"
#include "net/grpc_internal.h"

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

/* Batches a stream may hold in the service or in `out` before it stops
 * reading: a peer that sends and never reads its replies then meets HTTP/2
 * flow control instead of growing our memory.  Our own peers keep at most
 * one message in flight per stream, far below this. */
#define SS_MAX_BACKLOG 64

typedef struct sstream {
    otag recv_tag, send_tag, close_tag;
    dht_grpc *g;
    grpc_call *call;
    grpc_byte_buffer *recv_bb; /* the recv operation's, worker only */
    int cancelled;             /* written by the close operation */
    pthread_mutex_t mu;
    int refs, jobs;
    bool md_sent, sending, reading_done, status_sent, dead;
    bool recv_paused; /* backlog full: the recv operation waits to be restarted */
    int nout;         /* answers in out */
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
        ss->nout--;
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

static bool ss_start_recv(sstream *ss);
static void ss_reading_done(sstream *ss);

/* With mu held: whether a paused recv should restart now (the backlog
 * drained to half, or the stream died and the recv must fail to end it). */
static bool ss_take_resume_locked(sstream *ss)
{
    if (!ss->recv_paused || (!ss->dead && ss->jobs + ss->nout > SS_MAX_BACKLOG / 2))
        return false;
    ss->recv_paused = false;
    return true;
}

/* Ends an operation's turn (mu held, released here): restarts a paused
 * recv if the backlog allows, then drops the operation's reference, freeing
 * ss with the last one (never while paused: the recv holds one). */
static void ss_unlock_release(sstream *ss)
{
    bool resume = ss_take_resume_locked(ss);
    bool last = --ss->refs == 0;
    pthread_mutex_unlock(&ss->mu);
    if (resume && !ss_start_recv(ss))
        ss_reading_done(ss);
    if (last)
        ss_free(ss);
}

static void ss_queue_answer(sstream *ss, grpc_byte_buffer *bb);

/* The service answered a streamed batch (on any thread). */
static void ss_answered(void *arg)
{
    sjob *j = arg;
    sstream *ss = j->ss;
    grpc_byte_buffer *bb = dht_grpc_bb_encode_batch(j->reps, j->n, j->id, 0, 0);
    ss_queue_answer(ss, bb);
    free(j->reqs);
    free(j->reps);
    free(j);
}

/* Queues bb (taken; NULL: could not be made) as the stream's next answer
 * and pumps; ends the stream if it cannot.  Drops the reference of the
 * batch being answered. */
static void ss_queue_answer(sstream *ss, grpc_byte_buffer *bb)
{
    reply_out *o = bb ? malloc(sizeof *o) : NULL;
    pthread_mutex_lock(&ss->mu);
    if (o != NULL && !ss->dead) {
        *o = (reply_out){NULL, bb};
        if (ss->ot)
            ss->ot->next = o;
        else
            ss->oh = o;
        ss->ot = o;
        ss->nout++;
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
    ss_unlock_release(ss);
    if (bb)
        grpc_byte_buffer_destroy(bb);
    free(o);
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

/* A refused message of a sender that stamps views: answered by id with the
 * reason (BatchReply.refused) instead of ending the stream, so that its
 * other batches in flight, which may carry another stamp (the sender moved
 * to a new view meanwhile), are still served and not failed with a reason
 * that is not theirs. */
static void ss_refuse_message(sstream *ss, uint64_t id, const char *why)
{
    pthread_mutex_lock(&ss->mu);
    ss->jobs++;
    ss->refs++;
    pthread_mutex_unlock(&ss->mu);
    size_t need = dht_codec_encode_batch_refusal(id, why, NULL, 0);
    uint8_t *buf = malloc(need ? need : 1);
    grpc_byte_buffer *bb = NULL;
    if (buf != NULL) {
        dht_codec_encode_batch_refusal(id, why, buf, need);
        bb = dht_grpc_bb_from(buf, need);
        free(buf);
    }
    ss_queue_answer(ss, bb);
}

void dht_grpc_ss_recv_done(sstream *ss, int success)
{
    dht_grpc *g = ss->g;
    sjob *j = NULL;
    bool more = false, soft = false;
    char why[DHT_GRPC_REFUSAL_MAX];
    uint64_t refused_id = 0;
    if (success && ss->recv_bb != NULL) {
        j = calloc(1, sizeof *j);
        uint64_t config = 0, view = 0;
        bool ok = j != NULL && dht_grpc_bb_decode_batch(ss->recv_bb, &j->reqs, &j->n, &j->id,
                                                        &config, &view) == 0;
        bool refused =
            ok && !dht_grpc_config_ok(g, ss->call, M_STREAM, config, view, why, sizeof why);
        if (refused) {
            free(j->reqs);
            j->reqs = NULL;
            ok = false;
            soft = view != 0;
            refused_id = j->id;
        } else if (ok && (j->reps = calloc(j->n ? j->n : 1, sizeof *j->reps)) == NULL) {
            free(j->reqs);
            ok = false;
        }
        grpc_byte_buffer_destroy(ss->recv_bb);
        ss->recv_bb = NULL;
        if (refused) {
            free(j);
            j = NULL;
            /* A sender without views (an old one, or a tool) learns it the
             * way it always did: the stream ends, nothing of it served. */
            if (!soft)
                grpc_call_cancel_with_status(ss->call, GRPC_STATUS_FAILED_PRECONDITION, why,
                                             NULL);
        } else if (!ok) {
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
    if (!more && !soft) {
        ss_reading_done(ss);
        return;
    }
    if (soft) {
        ss_refuse_message(ss, refused_id, why);
    } else {
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
    }
    pthread_mutex_lock(&ss->mu);
    bool pause = ss->jobs + ss->nout >= SS_MAX_BACKLOG && !ss->dead;
    ss->recv_paused = pause;
    pthread_mutex_unlock(&ss->mu);
    if (!pause && !ss_start_recv(ss))
        ss_reading_done(ss);
}

void dht_grpc_ss_send_done(sstream *ss, int success)
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
    ss_unlock_release(ss);
}

void dht_grpc_ss_close_done(sstream *ss)
{
    pthread_mutex_lock(&ss->mu);
    if (ss->cancelled)
        ss->dead = true;
    ss_unlock_release(ss);
}

/* A peer opened a batch stream: the call moves from s to a new sstream. */
void dht_grpc_serve_stream(dht_grpc *g, scall *s)
{
    sstream *ss = calloc(1, sizeof *ss);
    if (ss == NULL) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
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
    dht_grpc_scall_free(s);

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
