/* The calls we make: unary calls to a peer (public requests, raw calls for
 * other services, the unary Batch call that carries the local replica's
 * batch when it cannot be served in process), their completion, and the
 * one-off blocking call for tools.  Replica requests to remote peers do
 * not come here: they travel on batch streams (grpc_stream_client.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/codec.h"
#include "net/grpc_internal.h"

grpc_completion_queue *dht_grpc_pick_cq(dht_grpc *g)
{
    if (dht_grpc_tl_worker != NULL && dht_grpc_tl_worker->g == g)
        return dht_grpc_tl_worker->cq;
    return g->workers[atomic_fetch_add(&g->rr, 1) % (unsigned)g->nworkers].cq;
}

/* Starts one unary call carrying send_bb (taken over) on peer's channel;
 * the reply reaches dht_grpc_client_call_done. */
static int start_call(dht_grpc *g, int peer, const char *method, grpc_byte_buffer *send_bb,
                      int64_t deadline_ns, ccall *c)
{
    c->kind = TAG_CLIENT_CALL;
    c->g = g;
    c->peer = peer;
    grpc_slice mslice = grpc_slice_from_static_string(method);
    c->call = grpc_channel_create_call(g->channels[peer], NULL, GRPC_PROPAGATE_DEFAULTS,
                                       dht_grpc_pick_cq(g), mslice, NULL,
                                       dht_grpc_deadline_ts(deadline_ns), NULL);
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

/* Sends one batch call with the given items (taken over) from queue qi. */
void dht_grpc_send_batch(dht_grpc *g, int qi, qitem *items, size_t n)
{
    int peer = qi / 2;
    if (peer == g->self && !atomic_load(&g->stopping) && dht_grpc_send_local(g, qi, items, n))
        return;
    int64_t now = dht_now_ns(), deadline;
    size_t nexp;
    qitem *expired;
    size_t live =
        dht_grpc_split_expired(items, n, now + SEND_MARGIN_NS, &expired, &nexp, &deadline);
    if (nexp > 0)
        dht_grpc_fail_items_later(g, expired, nexp, DHT_ERR_TIMEOUT);

    grpc_byte_buffer *bb = NULL;
    ccall *c = NULL;
    if (live > 0 && !atomic_load(&g->stopping)) {
        bb = dht_grpc_bb_encode_items(g, items, live, 0);
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
        dht_grpc_fail_items_later(g, items, live, DHT_ERR_SHUTDOWN);
    else
        free(items);
    dht_grpc_batch_slot_done(g, qi);
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
    if (st == DHT_OK &&
        (dht_grpc_bb_decode_batch(c->recv_bb, &reps, &n, NULL, NULL, NULL) != 0 ||
         n != c->nbatch))
        st = DHT_ERR_REMOTE;
    dht_grpc_answer_items(c->batch, c->nbatch, st, reps);
    free(reps);
    free(c->batch);
    dht_grpc_batch_slot_done(g, c->queue);
}

int dht_grpc_send(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                  dht_reply_cb cb, void *arg)
{
    dht_grpc *g = (dht_grpc *)t;
    if (atomic_load(&g->stopping) || peer < 0 || peer >= t->npeers)
        return -1;
    if (dht_codec_batchable(req->type))
        return dht_grpc_enqueue(g, peer, req, deadline_ns, cb, arg);
    const char *method = dht_codec_method(req->type);
    if (method == NULL)
        return -1;
    wire_stamp st = dht_grpc_stamp_of(g, req);
    grpc_byte_buffer *send_bb = dht_grpc_bb_encode(req, false, st.config, st.view);
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

int dht_grpc_control(dht_transport *t, int peer, const uint8_t *req, size_t len,
                     int64_t deadline_ns, dht_control_cb cb, void *arg)
{
    dht_grpc *g = (dht_grpc *)t;
    /* The peer would refuse a larger body: not sent, as the contract
     * allows, rather than a call that can only fail. */
    if (atomic_load(&g->stopping) || peer < 0 || peer >= t->npeers || len > DHT_CONTROL_MAX ||
        (req == NULL && len > 0))
        return -1;
    grpc_byte_buffer *send_bb = dht_grpc_bb_encode_control(req, len);
    if (send_bb == NULL)
        return -1;
    ccall *c = calloc(1, sizeof *c);
    if (c == NULL) {
        grpc_byte_buffer_destroy(send_bb);
        return -1;
    }
    c->control_cb = cb;
    c->arg = arg;
    return start_call(g, peer, DHT_CODEC_CONTROL_METHOD, send_bb, deadline_ns, c);
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
    /* Listed (for dht_grpc_cancel_raw_calls) before it starts, since it may
     * end at once on a worker, which unlists it: the mutex is held until
     * the call has started or start_call has freed it. */
    pthread_mutex_lock(&g->raw_mu);
    ccall *next = g->raw_calls;
    c->raw_next = next;
    if (next)
        next->raw_prev = c;
    g->raw_calls = c;
    int rc = start_call(g, peer, method, dht_grpc_bb_from(req, req_len), deadline_ns, c);
    if (rc != 0) { /* c is gone; it was the head */
        g->raw_calls = next;
        if (next)
            next->raw_prev = NULL;
    }
    pthread_mutex_unlock(&g->raw_mu);
    return rc;
}

void dht_grpc_cancel_raw_calls(dht_grpc *g)
{
    pthread_mutex_lock(&g->raw_mu);
    for (ccall *c = g->raw_calls; c; c = c->raw_next)
        grpc_call_cancel(c->call, NULL);
    pthread_mutex_unlock(&g->raw_mu);
}

static void unlist_raw(ccall *c)
{
    dht_grpc *g = c->g;
    pthread_mutex_lock(&g->raw_mu);
    if (c->raw_prev)
        c->raw_prev->raw_next = c->raw_next;
    else
        g->raw_calls = c->raw_next;
    if (c->raw_next)
        c->raw_next->raw_prev = c->raw_prev;
    pthread_mutex_unlock(&g->raw_mu);
}

/* Completion of a raw call: hand over the bytes as they came (and, for a
 * failed call, its status text through last_error during the callback). */
static void raw_call_done(ccall *c, int success)
{
    grpc_slice sl = grpc_empty_slice();
    bool have = success && c->status == GRPC_STATUS_OK && dht_grpc_bb_slice(c->recv_bb, &sl);
    if (success && c->status != GRPC_STATUS_OK)
        dht_grpc_note_error(c->status, c->details);
    c->raw_cb(c->arg, success ? (int)c->status : -1, have ? GRPC_SLICE_START_PTR(sl) : NULL,
              have ? GRPC_SLICE_LENGTH(sl) : 0);
    dht_grpc_tl_last_error[0] = '\0';
    grpc_slice_unref(sl);
}

/* Completion of a control call: the reply's body, or the failure with its
 * status text through last_error during the callback. */
static void control_call_done(ccall *c, int success)
{
    dht_grpc *g = c->g;
    dht_status st;
    uint8_t *body = NULL;
    size_t len = 0;
    if (!success) {
        st = DHT_ERR_SHUTDOWN;
    } else if (c->status == GRPC_STATUS_OK) {
        grpc_slice sl;
        st = DHT_ERR_REMOTE;
        if (dht_grpc_bb_slice(c->recv_bb, &sl)) {
            if (dht_codec_decode_control(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), &body,
                                         &len) == 0)
                st = DHT_OK;
            grpc_slice_unref(sl);
        }
        if (st != DHT_OK)
            snprintf(dht_grpc_tl_last_error, sizeof dht_grpc_tl_last_error,
                     "malformed ControlReply from %s", g->addrs[c->peer]);
    } else {
        st = c->status == GRPC_STATUS_UNAVAILABLE         ? DHT_ERR_UNAVAILABLE
             : c->status == GRPC_STATUS_DEADLINE_EXCEEDED ? DHT_ERR_TIMEOUT
                                                          : DHT_ERR_REMOTE;
        dht_grpc_note_error(c->status, c->details);
    }
    /* A control service may take long to answer (it may wait for the
     * members to agree): a deadline says nothing of the peer's health. */
    if (success && c->status != GRPC_STATUS_DEADLINE_EXCEEDED)
        dht_grpc_set_peer_state(g, c->peer, c->status != GRPC_STATUS_UNAVAILABLE);
    c->control_cb(c->arg, st, st == DHT_OK ? body : NULL, st == DHT_OK ? len : 0);
    dht_grpc_tl_last_error[0] = '\0';
    free(body);
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

void dht_grpc_client_call_done(ccall *c, int success)
{
    dht_grpc *g = c->g;
    dht_msg reply;
    dht_status st;
    bool decoded = false;

    if (c->raw_cb) {
        unlist_raw(c);
        raw_call_done(c, success);
        goto release;
    }
    if (c->control_cb) {
        control_call_done(c, success);
        goto release;
    }
    if (c->batch) {
        dht_status bst = !success                                       ? DHT_ERR_SHUTDOWN
                         : c->status == GRPC_STATUS_OK                  ? DHT_OK
                         : c->status == GRPC_STATUS_UNAVAILABLE         ? DHT_ERR_UNAVAILABLE
                         : c->status == GRPC_STATUS_DEADLINE_EXCEEDED   ? DHT_ERR_TIMEOUT
                                                                        : DHT_ERR_REMOTE;
        if (success)
            dht_grpc_set_peer_state(g, c->peer, c->status != GRPC_STATUS_UNAVAILABLE &&
                                                    c->status != GRPC_STATUS_DEADLINE_EXCEEDED);
        if (success && c->status != GRPC_STATUS_OK) /* the items' callbacks may ask why */
            dht_grpc_note_error(c->status, c->details);
        batch_call_done(c, bst);
        dht_grpc_tl_last_error[0] = '\0';
        goto release;
    }
    if (!success) {
        st = DHT_ERR_SHUTDOWN;
    } else if (c->status == GRPC_STATUS_OK) {
        grpc_slice sl;
        if (dht_grpc_bb_slice(c->recv_bb, &sl)) {
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
        dht_grpc_set_peer_state(g, c->peer, up);
    }
    if (st != DHT_OK) {
        dht_grpc_note_error(c->status, c->details);
        DHT_DEBUG("%s to %s failed: %s", dht_msg_type_name(c->type), g->addrs[c->peer],
                  dht_grpc_tl_last_error);
    }
    c->cb(c->arg, st, decoded ? &reply : NULL);
    dht_grpc_tl_last_error[0] = '\0';
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

/* ---- one-off blocking call for tools --------------------------------------- */

int dht_grpc_call_raw(const char *addr, const char *method, const void *req, size_t req_len,
                      int64_t timeout_ns, int *status, char *details, size_t details_len,
                      uint8_t *resp, size_t *resp_len)
{
    return dht_grpc_call_raw_tls(NULL, addr, method, req, req_len, timeout_ns, status, details,
                                 details_len, resp, resp_len);
}

int dht_grpc_call_raw_tls(const dht_grpc_tls *tls, const char *addr, const char *method,
                          const void *req, size_t req_len, int64_t timeout_ns, int *status,
                          char *details, size_t details_len, uint8_t *resp, size_t *resp_len)
{
    if (getenv("GRPC_VERBOSITY") == NULL)
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    dht_grpc_abseil_deadlock_checks_off();
    grpc_init();
    grpc_channel_credentials *creds = dht_grpc_channel_creds(tls);
    grpc_channel *ch = grpc_channel_create(addr, creds, dht_grpc_channel_args());
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
        grpc_byte_buffer *send = dht_grpc_bb_from(req, req_len), *recv = NULL;
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
                long n = recv ? dht_grpc_bb_read(recv, resp, *resp_len) : 0;
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
