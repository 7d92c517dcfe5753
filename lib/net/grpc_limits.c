/* What one client can make a node spend: the server's bounds on message
 * size, streams per connection, metadata, handshakes and memory.  Each is
 * far above what our own peers and clients use (the numbers say why), so
 * they only ever stop abuse: a hostile or broken caller gets an error or
 * flow control, and the other clients are served meanwhile. */
#include "net/codec.h"
#include "net/grpc_internal.h"

/* The largest batch: DHT_CODEC_BATCH_MAX items (about 40 bytes each
 * encoded; the codec refuses more than 64 each). */
#define MAX_BATCH_BYTES (DHT_CODEC_BATCH_MAX * 64)
/* The largest request we accept: a control body (DHT_CONTROL_MAX) with
 * room to spare, so that one a little over the limit reaches our code and
 * is refused as such (INVALID_ARGUMENT) rather than by gRPC.  The other
 * methods' decoders refuse far smaller messages of their own. */
#define MAX_REQUEST_BYTES ((int)DHT_CONTROL_MAX + 64 * 1024)
/* Concurrent calls on one connection: the load generator's 1,024 logical
 * clients on one channel, plus two batch streams per peer. */
#define MAX_STREAMS_PER_CONNECTION (1024 + 2 * DHT_MAX_MEMBERS)
/* Our calls carry a deadline and little else. */
#define MAX_METADATA_BYTES (16 * 1024)
/* A connection that has not finished its HTTP/2 (or TLS) handshake by then
 * is closed: idle sockets do not hold a node's resources for long. */
#define HANDSHAKE_TIMEOUT_MS 10000
/* All the memory gRPC may use for connections, calls and buffers; under
 * pressure it shrinks flow-control windows and refuses new work rather
 * than grow. */
#define MEMORY_QUOTA_BYTES ((size_t)1 << 30)

int dht_grpc_limit_args(grpc_arg *out, grpc_resource_quota **quota)
{
    static const struct {
        const char *key;
        int value;
    } ints[] = {
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, MAX_REQUEST_BYTES},
        {GRPC_ARG_MAX_CONCURRENT_STREAMS, MAX_STREAMS_PER_CONNECTION},
        {GRPC_ARG_MAX_METADATA_SIZE, MAX_METADATA_BYTES},
        {GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS},
        /* A stream's receive window stays at what one request needs: BDP
         * probing would grow it to megabytes, which gRPC then buffers for
         * a caller whose stream we stopped reading. */
        {GRPC_ARG_HTTP2_BDP_PROBE, 0},
        {GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, MAX_BATCH_BYTES},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        out[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)ints[i].key,
                              .value.integer = ints[i].value};
    *quota = grpc_resource_quota_create("dht-server");
    grpc_resource_quota_resize(*quota, MEMORY_QUOTA_BYTES);
    out[n++] = (grpc_arg){.type = GRPC_ARG_POINTER, .key = (char *)GRPC_ARG_RESOURCE_QUOTA,
                          .value.pointer = {*quota, grpc_resource_quota_arg_vtable()}};
    return n;
}
