/* The configuration on the wire: the check that every served replica
 * request passes (unary Lock/Unlock/Write/Read/Scan, Batch, and each
 * message of a Stream), dht.Admin/Stats, which tells any caller the node's
 * configuration and state, and dht.Admin/Control, the members' control
 * channel for changing it.
 *
 * Two processes place keys alike exactly when their configurations (member
 * set, R, partition count: protocol/membership.h) are equal, which their
 * 64-bit fingerprints stand for.  Every replica request carries its
 * sender's; a node refuses one that differs (or is absent) with
 * FAILED_PRECONDITION before the request's fields are validated or the
 * replica sees it, so a member or client started with another MEMBERS or
 * --replicas changes nothing and says why.  A transport configured without
 * a fingerprint (0) checks nothing.
 *
 * Once members change at runtime a static fingerprint no longer says it
 * all: requests carry the view number of the operation that sent them
 * too, and a service with check_config (protocol/transport.h) judges the
 * pair itself in place of the static check. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/codec.h"
#include "net/grpc_internal.h"

/* The service's judgement of a stamp (g->svc.check_config set). */
static bool service_config_ok(dht_grpc *g, grpc_call *call, int method, uint64_t config,
                              uint64_t view, char *why, size_t len)
{
    why[0] = '\0';
    if (g->svc.check_config(g->svc.arg, config, view, why, len) == 0)
        return true;
    why[len - 1] = '\0'; /* whatever the service wrote */
    if (why[0] == '\0') /* an empty status would tell the sender nothing */
        snprintf(why, len, "configuration %016" PRIx64 " view %" PRIu64 " refused", config, view);
    if (call != NULL)
        dht_grpc_log_refusal(call, method, why);
    return false;
}

bool dht_grpc_config_ok(dht_grpc *g, grpc_call *call, int method, uint64_t config, uint64_t view,
                        char *why, size_t len)
{
    if (g->svc.check_config != NULL)
        return service_config_ok(g, call, method, config, view, why, len);
    if (g->fingerprint == 0 || config == g->fingerprint)
        return true;
    char theirs[64];
    if (config == 0)
        snprintf(theirs, sizeof theirs, "carries no configuration fingerprint");
    else
        snprintf(theirs, sizeof theirs, "by %016" PRIx64, config);
    /* The essentials first (callers may keep only a line's worth), then the
     * node's configuration, cut so that the text stays one modest status
     * message whatever the cluster's size. */
    const char *line = g->config_line ? g->config_line : "?";
    int room = (int)(len > 400 ? len - 400 : 0);
    int cut = (int)strlen(line) > room;
    snprintf(why, len,
             "configuration mismatch: this node places keys by %016" PRIx64 ", the request %s; "
             "start every member and client with the same MEMBERS and --replicas (this node: "
             "%.*s%s)",
             g->fingerprint, theirs, cut ? room : (int)strlen(line), line, cut ? "..." : "");
    if (call != NULL)
        dht_grpc_log_refusal(call, method, why);
    return false;
}

void dht_grpc_serve_stats(dht_grpc *g, scall *s)
{
    grpc_slice sl;
    if (s->payload == NULL || !dht_grpc_bb_slice(s->payload, &sl)) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_CANCELLED, "no request message");
        return;
    }
    int bad = dht_codec_decode_stats_request(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    if (bad) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "malformed StatsRequest");
        return;
    }
    if (g->svc.stats == NULL) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_UNIMPLEMENTED, "this node answers no Stats");
        return;
    }
    dht_stats st = {.log_bytes = -1};
    g->svc.stats(g->svc.arg, &st);
    size_t need = dht_codec_encode_stats(&st, NULL, 0);
    uint8_t *buf = need != SIZE_MAX ? malloc(need ? need : 1) : NULL;
    if (buf == NULL) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    dht_codec_encode_stats(&st, buf, need);
    dht_grpc_respond(s, buf, need, GRPC_STATUS_OK, NULL);
    free(buf);
}

/* ---- dht.Admin/Control -------------------------------------------------------
 * The request's body goes to the service, which answers when it will
 * (done, from any thread); the call stays open until then, bounded like
 * any served call by the caller's deadline and the server's shutdown. */

typedef struct {
    scall *s;
    uint8_t *body; /* the request's body, owned until done */
} control_job;

static void control_done(void *arg, const uint8_t *rep, size_t len, const char *error)
{
    control_job *j = arg;
    if (error != NULL) {
        dht_grpc_respond(j->s, NULL, 0, GRPC_STATUS_FAILED_PRECONDITION,
                         *error ? error : "control request refused");
    } else if (len > DHT_CONTROL_MAX) {
        /* The caller would refuse it anyway (dht_codec_decode_control). */
        dht_grpc_respond(j->s, NULL, 0, GRPC_STATUS_INTERNAL, "control reply over 1 MiB");
    } else {
        size_t need = dht_codec_encode_control(rep, rep ? len : 0, NULL, 0);
        uint8_t *buf = malloc(need ? need : 1);
        if (buf == NULL) {
            dht_grpc_respond(j->s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            dht_codec_encode_control(rep, rep ? len : 0, buf, need);
            dht_grpc_respond(j->s, buf, need, GRPC_STATUS_OK, NULL); /* copies buf */
            free(buf);
        }
    }
    free(j->body);
    free(j);
}

void dht_grpc_serve_control(dht_grpc *g, scall *s)
{
    grpc_slice sl;
    if (s->payload == NULL || !dht_grpc_bb_slice(s->payload, &sl)) {
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_CANCELLED, "no request message");
        return;
    }
    /* Limits first: nothing the service does is paid for by bytes it
     * would refuse. */
    uint8_t *body;
    size_t len;
    int rc = dht_codec_decode_control(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), &body,
                                      &len);
    grpc_slice_unref(sl);
    if (rc != 0) {
        const char *why = rc == -2 ? "control body over 1 MiB" : "malformed ControlRequest";
        dht_grpc_log_refusal(s->call, s->method, why);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, why);
        return;
    }
    if (g->svc.control == NULL) {
        free(body);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_UNIMPLEMENTED, "this node has no control service");
        return;
    }
    control_job *j = malloc(sizeof *j);
    if (j == NULL) {
        free(body);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *j = (control_job){s, body};
    g->svc.control(g->svc.arg, body, len, control_done, j);
}
