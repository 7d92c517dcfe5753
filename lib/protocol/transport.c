/* Names of the transport statuses, for messages. */
#include "protocol/transport.h"

const char *dht_status_name(dht_status s)
{
    switch (s) {
    case DHT_OK:
        return "ok";
    case DHT_ERR_UNAVAILABLE:
        return "unavailable";
    case DHT_ERR_TIMEOUT:
        return "timeout";
    case DHT_ERR_REMOTE:
        return "remote error";
    case DHT_ERR_SHUTDOWN:
        return "shutdown";
    }
    return "?";
}
