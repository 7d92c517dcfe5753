#include "msg.h"
#include "transport.h"

const char *dht_msg_type_name(dht_msg_type t)
{
    static const char *const names[DHT_MSG_TYPE_MAX] = {
        [DHT_MSG_LOCK] = "lock", [DHT_MSG_UNLOCK] = "unlock", [DHT_MSG_WRITE] = "write",
        [DHT_MSG_READ] = "read", [DHT_MSG_SCAN] = "scan",     [DHT_MSG_PUT] = "put",
        [DHT_MSG_GET] = "get",
    };
    return t > 0 && t < DHT_MSG_TYPE_MAX ? names[t] : "?";
}

const char *dht_put_outcome_name(dht_put_outcome o)
{
    switch (o) {
    case DHT_PUT_APPLIED:
        return "applied";
    case DHT_PUT_NOT_APPLIED:
        return "not applied";
    case DHT_PUT_UNKNOWN:
        return "unknown";
    }
    return "?";
}

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
