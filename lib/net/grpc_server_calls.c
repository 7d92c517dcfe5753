/* The calls we serve: the server's set-up (its arguments and registered
 * methods), requesting calls on every worker's queue, answering them, and
 * dispatching each arrival: public KeyValue requests, unary replica
 * requests and unary Batch calls here; batch streams are handed to
 * grpc_stream_server.c, health checks to grpc_health.c and Admin/Stats and
 * Admin/Control to grpc_config.c, which also checks each replica request's
 * configuration stamp. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/codec.h"
#include "net/grpc_internal.h"
#include "protocol/replica.h"

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

void dht_grpc_scall_free(scall *s)
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
        dht_grpc_scall_free(s);
    }
}

void dht_grpc_respond(scall *s, const uint8_t *msg, size_t len, grpc_status_code code,
                      const char *details)
{
    respond_bb(s, msg ? dht_grpc_bb_from(msg, len) : NULL, code, details);
}

/* Replies with m encoded, or INTERNAL if it cannot be encoded. */
static void respond_msg(scall *s, const dht_msg *m, const char *details)
{
    grpc_byte_buffer *bb = dht_grpc_bb_encode(m, true, 0, 0);
    if (bb == NULL)
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_INTERNAL, "reply too large or out of memory");
    else
        respond_bb(s, bb, GRPC_STATUS_OK, details);
}

static void public_done(void *arg, dht_status st, const dht_msg *reply, const char *reason)
{
    scall *s = arg;
    if (st != DHT_OK || reply == NULL) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_UNAVAILABLE, reason ? reason : "unavailable");
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
    grpc_byte_buffer *bb = dht_grpc_bb_encode_batch(b->reps, b->n, 0, 0, 0);
    if (bb == NULL)
        dht_grpc_respond(b->s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else
        respond_bb(b->s, bb, GRPC_STATUS_OK, NULL);
    free(b->reqs);
    free(b->reps);
    free(b);
}

static void serve_batch(dht_grpc *g, scall *s)
{
    if (s->payload == NULL) { /* cancelled before it was read */
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_CANCELLED, "no request message");
        return;
    }
    batch_job *b = calloc(1, sizeof *b);
    uint64_t config = 0, view = 0;
    if (b == NULL ||
        dht_grpc_bb_decode_batch(s->payload, &b->reqs, &b->n, NULL, &config, &view) != 0) {
        free(b);
        DHT_WARN("malformed batch request rejected");
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "malformed batch message");
        return;
    }
    char why[DHT_GRPC_REFUSAL_MAX];
    if (!dht_grpc_config_ok(g, s->call, s->method, config, view, why, sizeof why)) {
        free(b->reqs);
        free(b);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_FAILED_PRECONDITION, why);
        return;
    }
    b->s = s;
    b->reps = calloc(b->n ? b->n : 1, sizeof *b->reps);
    if (b->reps == NULL) {
        free(b->reqs);
        free(b);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
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

void dht_grpc_server_call_arrived(scall *s, int success)
{
    dht_grpc *g = s->g;
    if (!success) { /* server shutting down */
        s->call = NULL;
        dht_grpc_scall_free(s);
        return;
    }
    request_call(g, s->w, s->method); /* keep the slot count constant */
    if (!dht_grpc_call_allowed(g, s)) /* TLS: the caller's certificate (grpc_tls.c) */
        return;

    if (s->method == M_GENERIC) {
        char *m = grpc_slice_to_c_string(s->details.method);
        DHT_DEBUG("unknown method %s", m);
        char why[300];
        snprintf(why, sizeof why, "unknown method %s", m);
        gpr_free(m);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_UNIMPLEMENTED, why);
        return;
    }
    if (s->method == M_BATCH) {
        serve_batch(g, s);
        return;
    }
    if (s->method == M_STREAM) {
        dht_grpc_serve_stream(g, s);
        return;
    }
    if (s->method == M_HEALTH) {
        dht_grpc_serve_health(g, s);
        return;
    }
    if (s->method == M_STATS) {
        dht_grpc_serve_stats(g, s);
        return;
    }
    if (s->method == M_CONTROL) {
        dht_grpc_serve_control(g, s);
        return;
    }

    if (s->payload == NULL) {
        /* No message: the caller cancelled or its deadline passed before
         * the request was read (common after a stall), not bad input. */
        DHT_DEBUG("%s call without a message (cancelled)", dht_msg_type_name((dht_msg_type)s->method));
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_CANCELLED, "no request message");
        return;
    }
    dht_msg req;
    uint8_t buf[MAX_MSG];
    uint64_t config = 0;
    long len = dht_grpc_bb_read(s->payload, buf, sizeof buf);
    if (len < 0 ||
        dht_codec_decode_request((dht_msg_type)s->method, buf, (size_t)len, &req, &config)) {
        DHT_WARN("malformed %s request rejected", dht_msg_type_name((dht_msg_type)s->method));
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
        return;
    }
    if (req.type == DHT_MSG_PUT || req.type == DHT_MSG_GET) {
        DHT_DEBUG("public %s key=%lld value=%lld", dht_msg_type_name(req.type),
                  (long long)req.key, (long long)req.value);
        g->svc.client(g->svc.arg, &req, dht_grpc_call_deadline(s), public_done, s);
        return;
    }
    char why[DHT_GRPC_REFUSAL_MAX];
    if (!dht_grpc_config_ok(g, s->call, s->method, config, req.view, why, sizeof why)) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_FAILED_PRECONDITION, why);
        return;
    }
    if (dht_replica_check(&req, why, sizeof why) != 0) {
        DHT_WARN("%s request refused: %s", dht_msg_type_name(req.type), why);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, why);
        return;
    }
    dht_msg reply;
    memset(&reply, 0, sizeof reply);
    g->svc.replica(g->svc.arg, &req, &reply);
    DHT_DEBUG("%s key=%lld -> ok=%d v=(%llu,%llx)", dht_msg_type_name(req.type),
              (long long)req.key, reply.ok, (unsigned long long)reply.version.counter,
              (unsigned long long)reply.version.writer);
    if (req.type == DHT_MSG_SCAN && !reply.ok) {
        /* ScanReply has no ok field: an empty page with more=false would
         * read as "complete copy, nothing in it" (out of memory, or an
         * asker that is no member). */
        free(reply.entries);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_UNAVAILABLE, "scan could not be served");
        return;
    }
    respond_msg(s, &reply, NULL);
    free(reply.entries); /* the service's, for SCAN replies */
}

int dht_grpc_server_start(dht_grpc *g, const char *addr, char *err, size_t errlen)
{
    /* Without this gRPC sets SO_REUSEPORT and a second server on a busy
     * port would "succeed" and split the traffic. */
    grpc_arg a[4 + DHT_GRPC_LIMIT_ARGS] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
        /* accept our peers' one-second keepalive pings (see dht_grpc_channel_args) */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         .value.integer = 500},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PING_STRIKES, .value.integer = 0},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
         .value.integer = 1},
    };
    grpc_resource_quota *quota;
    grpc_channel_args sa = {4 + dht_grpc_limit_args(a + 4, &quota), a};
    g->server = grpc_server_create(&sa, NULL);
    grpc_resource_quota_unref(quota); /* the server holds its own */
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
    g->methods[M_STATS] = grpc_server_register_method(
        g->server, DHT_CODEC_STATS_METHOD, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    g->methods[M_CONTROL] = grpc_server_register_method(
        g->server, DHT_CODEC_CONTROL_METHOD, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    grpc_server_credentials *creds = dht_grpc_server_creds(g);
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
