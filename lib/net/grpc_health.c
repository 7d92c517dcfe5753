/* Health: the answer to grpc.health.v1.Health/Check, from the serving
 * callback of the configuration.  The method is registered with the
 * others in dht_grpc_server_start. */
#include "net/grpc_internal.h"

/* Answers a health check: SERVING unless the serving callback says not. */
void dht_grpc_serve_health(dht_grpc *g, scall *s)
{
    /* grpc.health.v1.HealthCheckResponse{status: SERVING(1)|NOT_SERVING(2)} */
    int serving = g->serving ? g->serving(g->serving_arg) : 1;
    uint8_t resp[2] = {0x08, serving ? 1 : 2};
    dht_grpc_respond(s, resp, sizeof resp, GRPC_STATUS_OK, NULL);
}
