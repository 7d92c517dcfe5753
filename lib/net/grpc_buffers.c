/* Byte buffers: the glue between gRPC's grpc_byte_buffer and our messages
 * (net/codec.h).  Every file that sends or receives a message goes through
 * these, so encoding and decoding live in one place. */
#include <stdlib.h>
#include <string.h>

#include "net/codec.h"
#include "net/grpc_internal.h"

grpc_byte_buffer *dht_grpc_bb_from(const void *buf, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer(buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* The whole payload of a byte buffer as one slice (the caller unrefs it);
 * false if there is none. */
bool dht_grpc_bb_slice(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&r, bb))
        return false;
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}

/* Copies a byte buffer into buf; returns the length, or -1 if it does not
 * fit or cannot be read. */
long dht_grpc_bb_read(grpc_byte_buffer *bb, uint8_t *buf, size_t cap)
{
    grpc_slice s;
    if (!dht_grpc_bb_slice(bb, &s))
        return -1;
    size_t len = GRPC_SLICE_LENGTH(s);
    long rc = -1;
    if (len <= cap) {
        memcpy(buf, GRPC_SLICE_START_PTR(s), len);
        rc = (long)len;
    }
    grpc_slice_unref(s);
    return rc;
}

/* Encodes m (a request carrying the stamp (config, view), or a reply)
 * into a new byte buffer; NULL if it cannot. */
grpc_byte_buffer *dht_grpc_bb_encode(const dht_msg *m, bool reply, uint64_t config, uint64_t view)
{
    uint8_t small[DHT_CODEC_MAX];
    size_t n = reply ? dht_codec_encode_reply(m, small, sizeof small)
                     : dht_codec_encode_request(m, config, view, small, sizeof small);
    if (n <= sizeof small)
        return dht_grpc_bb_from(small, n);
    if (n == SIZE_MAX)
        return NULL;
    uint8_t *big = malloc(n);
    if (big == NULL)
        return NULL;
    if (reply)
        dht_codec_encode_reply(m, big, n);
    else
        dht_codec_encode_request(m, config, view, big, n);
    grpc_byte_buffer *bb = dht_grpc_bb_from(big, n);
    free(big);
    return bb;
}

/* Encodes a batch of requests (carrying the stamp (config, view)) or
 * replies (stamp 0) into a new byte buffer; NULL if it cannot. */
grpc_byte_buffer *dht_grpc_bb_encode_batch(const dht_msg *msgs, size_t n, uint64_t id,
                                           uint64_t config, uint64_t view)
{
    size_t need = dht_codec_encode_batch(msgs, n, id, config, view, NULL, 0);
    uint8_t *buf = need != SIZE_MAX ? malloc(need ? need : 1) : NULL;
    if (buf == NULL)
        return NULL;
    dht_codec_encode_batch(msgs, n, id, config, view, buf, need);
    grpc_byte_buffer *bb = dht_grpc_bb_from(buf, need);
    free(buf);
    return bb;
}

/* Decodes a batch message (see dht_codec_decode_batch: *out is malloc'd,
 * the caller frees it); -1 if bb is missing or not a valid batch. */
int dht_grpc_bb_decode_batch(grpc_byte_buffer *bb, dht_msg **out, size_t *n, uint64_t *id,
                             uint64_t *config, uint64_t *view)
{
    grpc_slice sl;
    if (!dht_grpc_bb_slice(bb, &sl))
        return -1;
    int rc = dht_codec_decode_batch(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), out, n, id,
                                    config, view);
    grpc_slice_unref(sl);
    return rc;
}

/* Decodes a streamed batch reply, telling a refusal (refused non-empty)
 * from items (see dht_codec_decode_batch_reply); -1 if bb is missing or
 * not a valid reply. */
int dht_grpc_bb_decode_batch_reply(grpc_byte_buffer *bb, dht_msg **out, size_t *n, uint64_t *id,
                                   char *refused, size_t refused_len)
{
    grpc_slice sl;
    if (!dht_grpc_bb_slice(bb, &sl))
        return -1;
    int rc = dht_codec_decode_batch_reply(GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl), out, n,
                                          id, refused, refused_len);
    grpc_slice_unref(sl);
    return rc;
}

/* A control body as a ControlRequest/ControlReply in a new byte buffer;
 * NULL if it cannot. */
grpc_byte_buffer *dht_grpc_bb_encode_control(const uint8_t *body, size_t len)
{
    size_t need = dht_codec_encode_control(body, len, NULL, 0);
    uint8_t *buf = malloc(need ? need : 1);
    if (buf == NULL)
        return NULL;
    dht_codec_encode_control(body, len, buf, need);
    grpc_byte_buffer *bb = dht_grpc_bb_from(buf, need);
    free(buf);
    return bb;
}

/* The requests of queued items (all of one stamp, dht_grpc_stamp_run) as
 * one batch message carrying that stamp; NULL if it cannot. */
grpc_byte_buffer *dht_grpc_bb_encode_items(dht_grpc *g, const qitem *items, size_t n,
                                           uint64_t id)
{
    if (n == 0)
        return NULL; /* never sent */
    dht_msg small[32], *msgs = n <= 32 ? small : malloc(n * sizeof *msgs);
    if (msgs == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        msgs[i] = items[i].req;
    wire_stamp st = dht_grpc_stamp_of(g, &items[0].req);
    grpc_byte_buffer *bb = dht_grpc_bb_encode_batch(msgs, n, id, st.config, st.view);
    if (msgs != small)
        free(msgs);
    return bb;
}
