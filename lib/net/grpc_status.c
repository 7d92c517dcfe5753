/* gRPC status codes as the transport reports them: their names, and the
 * per-thread text of the last failed call's status, which the transport's
 * last_error op returns to a callback running on that thread.  Kept apart
 * because both the unary calls and the batch streams record errors here. */
#include <stdio.h>

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
