/* protobuf-c <-> dht_msg.  Each message type maps to one request and one
 * reply descriptor; the field copies are explicit so that a change to the
 * .proto that is not mirrored here fails to compile rather than silently
 * dropping a field. */
#include "codec.h"

#include <string.h>

#include "dht.pb-c.h"

static const struct {
    const char *path;
    const ProtobufCMessageDescriptor *req, *rep;
} methods[DHT_MSG_TYPE_MAX] = {
    [DHT_MSG_LOCK] = {"/dht.Replica/Lock", &dht__lock_request__descriptor,
                      &dht__lock_reply__descriptor},
    [DHT_MSG_UNLOCK] = {"/dht.Replica/Unlock", &dht__unlock_request__descriptor,
                        &dht__unlock_reply__descriptor},
    [DHT_MSG_WRITE] = {"/dht.Replica/Write", &dht__write_request__descriptor,
                       &dht__write_reply__descriptor},
    [DHT_MSG_READ] = {"/dht.Replica/Read", &dht__read_request__descriptor,
                      &dht__read_reply__descriptor},
    [DHT_MSG_PUT] = {"/dht.KeyValue/Put", &dht__put_request__descriptor,
                     &dht__put_reply__descriptor},
    [DHT_MSG_GET] = {"/dht.KeyValue/Get", &dht__get_request__descriptor,
                     &dht__get_reply__descriptor},
};

const char *dht_codec_method(dht_msg_type t)
{
    return t > 0 && t < DHT_MSG_TYPE_MAX ? methods[t].path : NULL;
}

dht_msg_type dht_codec_method_type(const char *path)
{
    for (int t = 1; t < DHT_MSG_TYPE_MAX; t++) {
        if (strcmp(methods[t].path, path) == 0)
            return (dht_msg_type)t;
    }
    return 0;
}

size_t dht_codec_encode_request(const dht_msg *m, uint8_t *buf)
{
    switch (m->type) {
    case DHT_MSG_LOCK: {
        Dht__LockRequest r = DHT__LOCK_REQUEST__INIT;
        r.key = m->key;
        r.owner = m->owner;
        r.lease_ms = m->lease_ms;
        return dht__lock_request__pack(&r, buf);
    }
    case DHT_MSG_UNLOCK: {
        Dht__UnlockRequest r = DHT__UNLOCK_REQUEST__INIT;
        r.key = m->key;
        r.owner = m->owner;
        return dht__unlock_request__pack(&r, buf);
    }
    case DHT_MSG_WRITE: {
        Dht__WriteRequest r = DHT__WRITE_REQUEST__INIT;
        r.key = m->key;
        r.value = m->value;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        r.release_owner = m->owner;
        return dht__write_request__pack(&r, buf);
    }
    case DHT_MSG_READ: {
        Dht__ReadRequest r = DHT__READ_REQUEST__INIT;
        r.key = m->key;
        return dht__read_request__pack(&r, buf);
    }
    case DHT_MSG_PUT: {
        Dht__PutRequest r = DHT__PUT_REQUEST__INIT;
        r.key = m->key;
        r.value = m->value;
        return dht__put_request__pack(&r, buf);
    }
    case DHT_MSG_GET: {
        Dht__GetRequest r = DHT__GET_REQUEST__INIT;
        r.key = m->key;
        return dht__get_request__pack(&r, buf);
    }
    default:
        return 0;
    }
}

size_t dht_codec_encode_reply(const dht_msg *m, uint8_t *buf)
{
    switch (m->type) {
    case DHT_MSG_LOCK: {
        Dht__LockReply r = DHT__LOCK_REPLY__INIT;
        r.granted = m->ok;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        return dht__lock_reply__pack(&r, buf);
    }
    case DHT_MSG_UNLOCK: {
        Dht__UnlockReply r = DHT__UNLOCK_REPLY__INIT;
        r.released = m->ok;
        return dht__unlock_reply__pack(&r, buf);
    }
    case DHT_MSG_WRITE: {
        Dht__WriteReply r = DHT__WRITE_REPLY__INIT;
        r.ok = m->ok;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        return dht__write_reply__pack(&r, buf);
    }
    case DHT_MSG_READ: {
        Dht__ReadReply r = DHT__READ_REPLY__INIT;
        r.ok = m->ok;
        r.value = m->value;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        return dht__read_reply__pack(&r, buf);
    }
    case DHT_MSG_PUT: {
        Dht__PutReply r = DHT__PUT_REPLY__INIT;
        r.ok = m->ok;
        return dht__put_reply__pack(&r, buf);
    }
    case DHT_MSG_GET: {
        Dht__GetReply r = DHT__GET_REPLY__INIT;
        r.value = m->value;
        return dht__get_reply__pack(&r, buf);
    }
    default:
        return 0;
    }
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                                size_t len)
{
    if (len > DHT_CODEC_MAX * 8)
        return NULL; /* no valid message is that large */
    return protobuf_c_message_unpack(d, NULL, len, buf);
}

int dht_codec_decode_request(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out)
{
    if (t <= 0 || t >= DHT_MSG_TYPE_MAX)
        return -1;
    ProtobufCMessage *pm = unpack(methods[t].req, buf, len);
    if (pm == NULL)
        return -1;
    memset(out, 0, sizeof *out);
    out->type = t;
    switch (t) {
    case DHT_MSG_LOCK: {
        Dht__LockRequest *r = (Dht__LockRequest *)pm;
        out->key = r->key;
        out->owner = r->owner;
        out->lease_ms = r->lease_ms;
        break;
    }
    case DHT_MSG_UNLOCK: {
        Dht__UnlockRequest *r = (Dht__UnlockRequest *)pm;
        out->key = r->key;
        out->owner = r->owner;
        break;
    }
    case DHT_MSG_WRITE: {
        Dht__WriteRequest *r = (Dht__WriteRequest *)pm;
        out->key = r->key;
        out->value = r->value;
        out->version.counter = r->counter;
        out->version.writer = r->writer;
        out->owner = r->release_owner;
        break;
    }
    case DHT_MSG_READ:
        out->key = ((Dht__ReadRequest *)pm)->key;
        break;
    case DHT_MSG_PUT:
        out->key = ((Dht__PutRequest *)pm)->key;
        out->value = ((Dht__PutRequest *)pm)->value;
        break;
    case DHT_MSG_GET:
        out->key = ((Dht__GetRequest *)pm)->key;
        break;
    default:
        break;
    }
    protobuf_c_message_free_unpacked(pm, NULL);
    return 0;
}

int dht_codec_decode_reply(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out)
{
    if (t <= 0 || t >= DHT_MSG_TYPE_MAX)
        return -1;
    ProtobufCMessage *pm = unpack(methods[t].rep, buf, len);
    if (pm == NULL)
        return -1;
    memset(out, 0, sizeof *out);
    out->type = t;
    switch (t) {
    case DHT_MSG_LOCK: {
        Dht__LockReply *r = (Dht__LockReply *)pm;
        out->ok = r->granted;
        out->version.counter = r->counter;
        out->version.writer = r->writer;
        break;
    }
    case DHT_MSG_UNLOCK:
        out->ok = ((Dht__UnlockReply *)pm)->released;
        break;
    case DHT_MSG_WRITE: {
        Dht__WriteReply *r = (Dht__WriteReply *)pm;
        out->ok = r->ok;
        out->version.counter = r->counter;
        out->version.writer = r->writer;
        break;
    }
    case DHT_MSG_READ: {
        Dht__ReadReply *r = (Dht__ReadReply *)pm;
        out->ok = r->ok;
        out->value = r->value;
        out->version.counter = r->counter;
        out->version.writer = r->writer;
        break;
    }
    case DHT_MSG_PUT:
        out->ok = ((Dht__PutReply *)pm)->ok;
        break;
    case DHT_MSG_GET:
        out->value = ((Dht__GetReply *)pm)->value;
        out->ok = true;
        break;
    default:
        break;
    }
    protobuf_c_message_free_unpacked(pm, NULL);
    return 0;
}
