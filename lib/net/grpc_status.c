/* gRPC status codes as the transport reports them: their names, and the
 * per-thread text of the last failed call's status, which the transport's
 * last_error op returns to a callback running on that thread.  Kept apart
 * because both the unary calls and the batch streams record errors here.
 * Also the served side's log of refused calls (grpc_tls.c, grpc_config.c). */
#include <stdio.h>

#include "base/log.h"
#include "net/codec.h"
#include "net/grpc_internal.h"

_Thread_local char dht_grpc_tl_last_error[256];

/* Records a failed call's status for grpc_last_error (the transport's
 * last_error op), read by callbacks on this thread. */
void dht_grpc_note_error(grpc_status_code code, grpc_slice details)
{
    char *d = grpc_slice_to_c_string(details);
    snprintf(dht_grpc_tl_last_error, sizeof dht_grpc_tl_last_error, "%s%s%s",
             dht_grpc_status_name((int)code), *d ? ": " : "", d);
    gpr_free(d);
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

const char *dht_grpc_method_path(int method)
{
    switch (method) {
    case M_BATCH:
        return DHT_CODEC_BATCH_METHOD;
    case M_STREAM:
        return DHT_CODEC_STREAM_METHOD;
    case M_STATS:
        return DHT_CODEC_STATS_METHOD;
    case M_CONTROL:
        return DHT_CODEC_CONTROL_METHOD;
    case M_HEALTH:
        return DHT_HEALTH_METHOD;
    default: {
        const char *p = method > 0 && method < DHT_MSG_TYPE_MAX ? dht_codec_method(method) : NULL;
        return p ? p : "?";
    }
    }
}

/* A misconfigured peer retries many times a second and a scanner may try
 * every method: one line a second says enough. */
void dht_grpc_log_refusal(grpc_call *call, int method, const char *why)
{
    static _Atomic int64_t last_ns;
    int64_t now = dht_now_ns(), prev = atomic_load(&last_ns);
    if (now - prev < DHT_NS_PER_SEC || !atomic_compare_exchange_strong(&last_ns, &prev, now))
        return;
    char *peer = grpc_call_get_peer(call);
    DHT_WARN("%s from %s refused: %s (further refusals this second not logged)",
             dht_grpc_method_path(method), peer ? peer : "?", why);
    gpr_free(peer);
}
