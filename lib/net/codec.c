/* protobuf-c <-> dht_msg.  Each message type maps to one request and one
 * reply descriptor; the field copies are explicit so that a change to the
 * .proto that is not mirrored here fails to compile rather than silently
 * dropping a field. */
#include "net/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dht.pb-c.h"
#include "protocol/membership.h"

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
    [DHT_MSG_SCAN] = {"/dht.Replica/Scan", &dht__scan_request__descriptor,
                      &dht__scan_reply__descriptor},
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

/* Packs pm into buf when it fits in cap; returns its size either way. */
static size_t pack(const ProtobufCMessage *pm, uint8_t *buf, size_t cap)
{
    size_t need = protobuf_c_message_get_packed_size(pm);
    if (need <= cap)
        protobuf_c_message_pack(pm, buf);
    return need;
}

#define PACK(msg) pack(&(msg).base, buf, cap)

size_t dht_codec_encode_request(const dht_msg *m, uint64_t config, uint64_t view, uint8_t *buf,
                                size_t cap)
{
    switch (m->type) {
    case DHT_MSG_LOCK: {
        Dht__LockRequest r = DHT__LOCK_REQUEST__INIT;
        r.key = m->key;
        r.owner = m->owner;
        r.lease_ms = m->lease_ms;
        r.config = config;
        r.view = view;
        return PACK(r);
    }
    case DHT_MSG_UNLOCK: {
        Dht__UnlockRequest r = DHT__UNLOCK_REQUEST__INIT;
        r.key = m->key;
        r.owner = m->owner;
        r.config = config;
        r.view = view;
        return PACK(r);
    }
    case DHT_MSG_WRITE: {
        Dht__WriteRequest r = DHT__WRITE_REQUEST__INIT;
        r.key = m->key;
        r.value = m->value;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        r.release_owner = m->owner;
        r.config = config;
        r.view = view;
        return PACK(r);
    }
    case DHT_MSG_READ: {
        Dht__ReadRequest r = DHT__READ_REQUEST__INIT;
        r.key = m->key;
        r.config = config;
        r.view = view;
        return PACK(r);
    }
    case DHT_MSG_SCAN: {
        Dht__ScanRequest r = DHT__SCAN_REQUEST__INIT;
        r.after_key = m->key;
        r.from_start = m->from_start;
        r.limit = m->limit;
        r.stripe = m->stripe;
        r.member = m->member;
        r.incarnation = m->incarnation;
        r.config = config;
        r.view = view;
        return PACK(r);
    }
    case DHT_MSG_PUT: {
        Dht__PutRequest r = DHT__PUT_REQUEST__INIT;
        r.key = m->key;
        r.value = m->value;
        return PACK(r);
    }
    case DHT_MSG_GET: {
        Dht__GetRequest r = DHT__GET_REQUEST__INIT;
        r.key = m->key;
        return PACK(r);
    }
    default:
        return 0;
    }
}

static size_t encode_scan_reply(const dht_msg *m, uint8_t *buf, size_t cap)
{
    Dht__ScanReply r = DHT__SCAN_REPLY__INIT;
    r.more = m->more;
    r.recovering = m->recovering;
    r.next_stripe = m->stripe;
    r.next_after_key = m->key;
    r.next_from_start = m->from_start;
    r.cluster_id = m->cluster_id;
    r.incarnation = m->incarnation;
    r.founder = m->founder;
    Dht__Entry *es = m->nentries ? calloc(m->nentries, sizeof *es) : NULL;
    Dht__Entry **ps = m->nentries ? calloc(m->nentries, sizeof *ps) : NULL;
    if (m->nentries && (es == NULL || ps == NULL)) {
        free(es);
        free(ps);
        return SIZE_MAX; /* no buffer is large enough: caller fails the call */
    }
    for (uint32_t i = 0; i < m->nentries; i++) {
        Dht__Entry e = DHT__ENTRY__INIT;
        e.key = m->entries[i].key;
        e.value = m->entries[i].value;
        e.counter = m->entries[i].version.counter;
        e.writer = m->entries[i].version.writer;
        es[i] = e;
        ps[i] = &es[i];
    }
    r.n_entries = m->nentries;
    r.entries = ps;
    size_t n = PACK(r);
    free(es);
    free(ps);
    return n;
}

size_t dht_codec_encode_reply(const dht_msg *m, uint8_t *buf, size_t cap)
{
    switch (m->type) {
    case DHT_MSG_LOCK: {
        Dht__LockReply r = DHT__LOCK_REPLY__INIT;
        r.granted = m->ok;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        return PACK(r);
    }
    case DHT_MSG_UNLOCK: {
        Dht__UnlockReply r = DHT__UNLOCK_REPLY__INIT;
        r.released = m->ok;
        return PACK(r);
    }
    case DHT_MSG_WRITE: {
        Dht__WriteReply r = DHT__WRITE_REPLY__INIT;
        r.ok = m->ok;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        return PACK(r);
    }
    case DHT_MSG_READ: {
        Dht__ReadReply r = DHT__READ_REPLY__INIT;
        r.ok = m->ok;
        r.value = m->value;
        r.counter = m->version.counter;
        r.writer = m->version.writer;
        return PACK(r);
    }
    case DHT_MSG_SCAN:
        return encode_scan_reply(m, buf, cap);
    case DHT_MSG_PUT: {
        Dht__PutReply r = DHT__PUT_REPLY__INIT;
        r.ok = m->ok;
        return PACK(r);
    }
    case DHT_MSG_GET: {
        Dht__GetReply r = DHT__GET_REPLY__INIT;
        r.value = m->value;
        return PACK(r);
    }
    default:
        return 0;
    }
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                                size_t len)
{
    size_t max = d == &dht__scan_reply__descriptor ? DHT_CODEC_SCAN_MAX : DHT_CODEC_MAX * 8;
    if (len > max)
        return NULL; /* no valid message is that large */
    return protobuf_c_message_unpack(d, NULL, len, buf);
}

int dht_codec_decode_request(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out,
                             uint64_t *config)
{
    if (t <= 0 || t >= DHT_MSG_TYPE_MAX)
        return -1;
    ProtobufCMessage *pm = unpack(methods[t].req, buf, len);
    if (pm == NULL)
        return -1;
    memset(out, 0, sizeof *out);
    out->type = t;
    uint64_t cfg = 0;
    switch (t) {
    case DHT_MSG_LOCK: {
        Dht__LockRequest *r = (Dht__LockRequest *)pm;
        out->key = r->key;
        out->owner = r->owner;
        out->lease_ms = r->lease_ms;
        cfg = r->config;
        out->view = r->view;
        break;
    }
    case DHT_MSG_UNLOCK: {
        Dht__UnlockRequest *r = (Dht__UnlockRequest *)pm;
        out->key = r->key;
        out->owner = r->owner;
        cfg = r->config;
        out->view = r->view;
        break;
    }
    case DHT_MSG_WRITE: {
        Dht__WriteRequest *r = (Dht__WriteRequest *)pm;
        out->key = r->key;
        out->value = r->value;
        out->version.counter = r->counter;
        out->version.writer = r->writer;
        out->owner = r->release_owner;
        cfg = r->config;
        out->view = r->view;
        break;
    }
    case DHT_MSG_READ:
        out->key = ((Dht__ReadRequest *)pm)->key;
        cfg = ((Dht__ReadRequest *)pm)->config;
        out->view = ((Dht__ReadRequest *)pm)->view;
        break;
    case DHT_MSG_SCAN: {
        Dht__ScanRequest *r = (Dht__ScanRequest *)pm;
        out->key = r->after_key;
        out->from_start = r->from_start;
        out->limit = r->limit;
        out->stripe = r->stripe;
        out->member = r->member;
        out->incarnation = r->incarnation;
        cfg = r->config;
        out->view = r->view;
        break;
    }
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
    out->config = cfg;
    if (config != NULL)
        *config = cfg;
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
    case DHT_MSG_SCAN: {
        Dht__ScanReply *r = (Dht__ScanReply *)pm;
        out->more = r->more;
        out->recovering = r->recovering;
        out->stripe = r->next_stripe;
        out->key = r->next_after_key;
        out->from_start = r->next_from_start;
        out->cluster_id = r->cluster_id;
        out->incarnation = r->incarnation;
        out->founder = r->founder;
        out->ok = true;
        if (r->n_entries > 0) {
            out->entries = malloc(r->n_entries * sizeof *out->entries);
            if (out->entries == NULL) {
                protobuf_c_message_free_unpacked(pm, NULL);
                return -1;
            }
            out->nentries = (uint32_t)r->n_entries;
            for (size_t i = 0; i < r->n_entries; i++) {
                out->entries[i].key = r->entries[i]->key;
                out->entries[i].value = r->entries[i]->value;
                out->entries[i].version.counter = r->entries[i]->counter;
                out->entries[i].version.writer = r->entries[i]->writer;
            }
        }
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

int dht_codec_batchable(dht_msg_type t)
{
    return t == DHT_MSG_LOCK || t == DHT_MSG_UNLOCK || t == DHT_MSG_WRITE || t == DHT_MSG_READ;
}

/* Requests and replies share the item layout: unused fields stay 0 and
 * cost nothing on the wire. */
size_t dht_codec_encode_batch(const dht_msg *msgs, size_t n, uint64_t id, uint64_t config,
                              uint64_t view, uint8_t *buf, size_t cap)
{
    Dht__BatchItem small[32], *items = n <= 32 ? small : malloc(n * sizeof *items);
    Dht__BatchItem *psmall[32], **ptrs = n <= 32 ? psmall : malloc(n * sizeof *ptrs);
    if (items == NULL || ptrs == NULL) {
        if (items != small)
            free(items);
        if (ptrs != psmall)
            free(ptrs);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        Dht__BatchItem it = DHT__BATCH_ITEM__INIT;
        it.type = (uint32_t)msgs[i].type;
        it.key = msgs[i].key;
        it.value = msgs[i].value;
        it.counter = msgs[i].version.counter;
        it.writer = msgs[i].version.writer;
        it.owner = msgs[i].owner;
        it.lease_ms = msgs[i].lease_ms;
        it.ok = msgs[i].ok;
        items[i] = it;
        ptrs[i] = &items[i];
    }
    Dht__BatchRequest r = DHT__BATCH_REQUEST__INIT; /* same wire form as BatchReply */
    r.n_items = n;
    r.items = ptrs;
    r.id = id;
    r.config = config;
    r.view = view;
    size_t need = PACK(r);
    if (items != small)
        free(items);
    if (ptrs != psmall)
        free(ptrs);
    return need;
}

/* The items of a batch message as a malloc'd array (*out); -1 when one
 * is of a type a batch may not carry, or out of memory. */
static int decode_items(Dht__BatchItem *const *items, size_t n, dht_msg **out)
{
    if (n > DHT_CODEC_BATCH_MAX)
        return -1;
    dht_msg *m = calloc(n ? n : 1, sizeof *m);
    if (m == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const Dht__BatchItem *it = items[i];
        if (!dht_codec_batchable((dht_msg_type)it->type)) {
            free(m);
            return -1;
        }
        m[i].type = (dht_msg_type)it->type;
        m[i].key = it->key;
        m[i].value = it->value;
        m[i].version.counter = it->counter;
        m[i].version.writer = it->writer;
        m[i].owner = it->owner;
        m[i].lease_ms = it->lease_ms;
        m[i].ok = it->ok;
    }
    *out = m;
    return 0;
}

int dht_codec_decode_batch(const uint8_t *buf, size_t len, dht_msg **out, size_t *n,
                           uint64_t *id, uint64_t *config, uint64_t *view)
{
    if (len > DHT_CODEC_BATCH_MAX * 64)
        return -1;
    Dht__BatchRequest *r = dht__batch_request__unpack(NULL, len, buf);
    if (r == NULL)
        return -1;
    dht_msg *m;
    if (decode_items(r->items, r->n_items, &m) != 0) {
        dht__batch_request__free_unpacked(r, NULL);
        return -1;
    }
    /* Every item carries the message's stamp, as a unary request would,
     * so a service reads it from the request it is given. */
    for (size_t i = 0; i < r->n_items; i++) {
        m[i].config = r->config;
        m[i].view = r->view;
    }
    *out = m;
    *n = r->n_items;
    if (id != NULL)
        *id = r->id;
    if (config != NULL)
        *config = r->config;
    if (view != NULL)
        *view = r->view;
    dht__batch_request__free_unpacked(r, NULL);
    return 0;
}

size_t dht_codec_encode_batch_refusal(uint64_t id, const char *why, uint8_t *buf, size_t cap)
{
    Dht__BatchReply r = DHT__BATCH_REPLY__INIT;
    r.id = id;
    r.refused = (char *)(why && *why ? why : "refused"); /* only read by the packer */
    return PACK(r);
}

int dht_codec_decode_batch_reply(const uint8_t *buf, size_t len, dht_msg **out, size_t *n,
                                 uint64_t *id, char *refused, size_t refused_len)
{
    if (len > DHT_CODEC_BATCH_MAX * 64)
        return -1;
    Dht__BatchReply *r = dht__batch_reply__unpack(NULL, len, buf);
    if (r == NULL)
        return -1;
    dht_msg *m;
    if (decode_items(r->items, r->n_items, &m) != 0) {
        dht__batch_reply__free_unpacked(r, NULL);
        return -1;
    }
    *out = m;
    *n = r->n_items;
    if (id != NULL)
        *id = r->id;
    if (refused != NULL && refused_len > 0)
        snprintf(refused, refused_len, "%s", r->refused ? r->refused : "");
    dht__batch_reply__free_unpacked(r, NULL);
    return 0;
}

static size_t put_varint(uint64_t v, uint8_t *buf, size_t cap, size_t at)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (at < cap)
            buf[at] = (uint8_t)(b | (v ? 0x80 : 0));
        at++;
    } while (v);
    return at;
}

size_t dht_codec_config_field(const char *method, uint64_t config, uint8_t *buf, size_t cap)
{
    dht_msg_type t = dht_codec_method_type(method);
    const ProtobufCMessageDescriptor *d =
        strcmp(method, DHT_CODEC_BATCH_METHOD) == 0 || strcmp(method, DHT_CODEC_STREAM_METHOD) == 0
            ? &dht__batch_request__descriptor
            : t > 0 ? methods[t].req : NULL;
    const ProtobufCFieldDescriptor *f =
        d ? protobuf_c_message_descriptor_get_field_by_name(d, "config") : NULL;
    if (f == NULL)
        return 0;
    uint8_t tmp[24];
    size_t n = put_varint((uint64_t)f->id << 3, tmp, sizeof tmp, 0); /* wire type 0 */
    n = put_varint(config, tmp, sizeof tmp, n);
    if (n <= cap)
        memcpy(buf, tmp, n);
    return n;
}

/* ---- dht.Admin/Stats ---------------------------------------------------- */

int dht_codec_decode_stats_request(const uint8_t *buf, size_t len)
{
    if (len > DHT_CODEC_MAX * 8)
        return -1;
    Dht__StatsRequest *r = dht__stats_request__unpack(NULL, len, buf);
    if (r == NULL)
        return -1;
    dht__stats_request__free_unpacked(r, NULL);
    return 0;
}

size_t dht_codec_encode_stats(const dht_stats *s, uint8_t *buf, size_t cap)
{
    Dht__StatsReply r = DHT__STATS_REPLY__INIT;
    r.self = (char *)(s->self ? s->self : "");
    r.n_members = s->nmembers > 0 ? (size_t)s->nmembers : 0;
    r.members = (char **)s->members; /* only read by the packer */
    r.replicas = s->replicas > 0 ? (uint32_t)s->replicas : 0;
    r.fingerprint = s->fingerprint;
    r.cluster_id = s->cluster_id;
    r.keys = s->keys;
    r.partitions = s->partitions > 0 ? (uint32_t)s->partitions : 0;
    r.partitions_recovering = s->partitions_recovering > 0 ? (uint32_t)s->partitions_recovering : 0;
    r.log_bytes = s->log_bytes;
    r.epoch = s->epoch;
    r.view = s->view;
    r.n_next_members = s->nnext > 0 ? (size_t)s->nnext : 0;
    r.next_members = (char **)s->next_members; /* only read by the packer */
    r.next_replicas = s->next_replicas > 0 ? (uint32_t)s->next_replicas : 0;
    r.removed = s->removed;
    return PACK(r);
}

void dht_codec_stats_free(dht_stats *s)
{
    for (int i = 0; s->members != NULL && i < s->nmembers; i++)
        free((char *)s->members[i]);
    free((char **)s->members);
    for (int i = 0; s->next_members != NULL && i < s->nnext; i++)
        free((char *)s->next_members[i]);
    free((char **)s->next_members);
    free((char *)s->self);
    memset(s, 0, sizeof *s);
}

/* The largest Stats reply accepted: every member's address at its
 * longest, in both configurations while the members change. */
#define STATS_MAX (2 * DHT_MAX_MEMBERS * (DHT_ADDR_MAX + 4) + DHT_ADDR_MAX + 160)

/* Copies n strings into a new array *out (the caller frees it and each
 * string copied so far, *copied of them, also after a failure); -1 when
 * out of memory. */
static int copy_strings(char *const *in, size_t n, char ***out, int *copied)
{
    char **a = calloc(n ? n : 1, sizeof *a);
    *out = a;
    if (a == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((a[i] = strdup(in[i])) == NULL)
            return -1;
        *copied = (int)i + 1;
    }
    return 0;
}

int dht_codec_decode_stats(const uint8_t *buf, size_t len, dht_stats *out)
{
    memset(out, 0, sizeof *out);
    if (len > STATS_MAX)
        return -1;
    Dht__StatsReply *r = dht__stats_reply__unpack(NULL, len, buf);
    if (r == NULL)
        return -1;
    int rc = -1;
    char **members = NULL, **next = NULL;
    if (r->n_members > DHT_MAX_MEMBERS || r->replicas > DHT_MAX_MEMBERS ||
        r->n_next_members > DHT_MAX_MEMBERS || r->next_replicas > DHT_MAX_MEMBERS ||
        r->partitions > INT32_MAX || r->partitions_recovering > INT32_MAX)
        goto done;
    out->self = strdup(r->self ? r->self : "");
    /* Each array is out's as soon as it exists, so dht_codec_stats_free
     * frees whatever was copied when a later step fails. */
    int bad = copy_strings(r->members, r->n_members, &members, &out->nmembers);
    out->members = (const char *const *)members;
    if (bad == 0 && r->n_next_members > 0) {
        bad = copy_strings(r->next_members, r->n_next_members, &next, &out->nnext);
        out->next_members = (const char *const *)next;
    }
    if (bad != 0 || out->self == NULL)
        goto done;
    out->epoch = r->epoch;
    out->view = r->view;
    out->next_replicas = (int)r->next_replicas;
    out->removed = r->removed;
    out->replicas = (int)r->replicas;
    out->fingerprint = r->fingerprint;
    out->cluster_id = r->cluster_id;
    out->keys = r->keys;
    out->partitions = (int)r->partitions;
    out->partitions_recovering = (int)r->partitions_recovering;
    out->log_bytes = r->log_bytes;
    rc = 0;
done:
    dht__stats_reply__free_unpacked(r, NULL);
    return rc;
}

/* ---- dht.Admin/Control ---------------------------------------------------- */

size_t dht_codec_encode_control(const uint8_t *body, size_t len, uint8_t *buf, size_t cap)
{
    Dht__ControlRequest r = DHT__CONTROL_REQUEST__INIT; /* same wire form as ControlReply */
    r.body.data = (uint8_t *)body; /* only read by the packer */
    r.body.len = body ? len : 0;
    return PACK(r);
}

int dht_codec_decode_control(const uint8_t *buf, size_t len, uint8_t **body, size_t *body_len)
{
    *body = NULL;
    *body_len = 0;
    /* A body over the limit is refused as such without parsing it (its
     * framing is at most a tag and a 10-byte length). */
    if (len > DHT_CONTROL_MAX + 16)
        return -2;
    Dht__ControlRequest *r = dht__control_request__unpack(NULL, len, buf);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->body.len > DHT_CONTROL_MAX) {
        rc = -2;
    } else if ((*body = malloc(r->body.len ? r->body.len : 1)) == NULL) {
        rc = -1;
    } else {
        if (r->body.len > 0)
            memcpy(*body, r->body.data, r->body.len);
        *body_len = r->body.len;
    }
    dht__control_request__free_unpacked(r, NULL);
    return rc;
}
