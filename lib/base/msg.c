#include "base/msg.h"

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
