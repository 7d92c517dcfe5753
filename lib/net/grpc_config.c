/* The configuration on the wire: the fingerprint check that every served
 * replica request passes (unary Lock/Unlock/Write/Read/Scan, Batch, and
 * each message of a Stream), and dht.Admin/Stats, which tells any caller
 * the node's configuration and state.
 *
 * Two processes place keys alike exactly when their configurations (member
 * set, R, partition count: protocol/membership.h) are equal, which their
 * 64-bit fingerprints stand for.  Every replica request carries its
 * sender's; a node refuses one that differs (or is absent) with
 * FAILED_PRECONDITION before the request's fields are validated or the
 * replica sees it, so a member or client started with another MEMBERS or
 * --replicas changes nothing and says why.  A transport configured without
 * a fingerprint (0) checks nothing. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/codec.h"
#include "net/grpc_internal.h"

bool dht_grpc_config_ok(dht_grpc *g, grpc_call *call, int method, uint64_t config, char *why,
                        size_t len)
{
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
