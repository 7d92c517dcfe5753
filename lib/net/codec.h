/* Conversion between dht_msg and the protobuf wire format of proto/dht.proto,
 * plus the gRPC method path of each message type.  No gRPC here: the
 * transport hands bytes in and out. */
#ifndef DHT_CODEC_H
#define DHT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"

/* Large enough for any message of dht.proto but a SCAN reply (a handful of
 * varints); SCAN replies grow with their entries. */
#define DHT_CODEC_MAX 128
/* Largest SCAN reply accepted: bounds what a peer can make us allocate. */
#define DHT_CODEC_SCAN_MAX (8u << 20)

const char *dht_codec_method(dht_msg_type t);      /* "/dht.Replica/Lock", ... */
dht_msg_type dht_codec_method_type(const char *path); /* 0 when unknown */

/* Encoders return the encoded size; they write to buf only when that is
 * <= cap (else the caller retries with a buffer of that size). */
size_t dht_codec_encode_request(const dht_msg *m, uint8_t *buf, size_t cap);
size_t dht_codec_encode_reply(const dht_msg *m, uint8_t *buf, size_t cap);

/* Decoders return 0, or -1 for bytes that are not a valid message of that
 * type (the caller answers INVALID_ARGUMENT).  A decoded SCAN reply's
 * entries are malloc'd: the caller frees out->entries. */
int dht_codec_decode_request(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out);
int dht_codec_decode_reply(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out);

/* Batches of replica requests (LOCK, UNLOCK, WRITE, READ) or their
 * replies: method paths (a unary call per batch, or a stream of batches),
 * encoder (same size contract as above), and a decoder that fills a
 * malloc'd array the caller frees (*out).  id matches a streamed reply to
 * its request (0 in unary calls); the decoder stores it unless id is NULL. */
#define DHT_CODEC_BATCH_METHOD "/dht.Replica/Batch"
#define DHT_CODEC_STREAM_METHOD "/dht.Replica/Stream"
/* Items a batch may carry: senders cap theirs at 512 (BATCH_MAX_ITEMS),
 * so a larger one is hostile or broken and is refused before it costs a
 * decoded array (and it bounds the message at DHT_CODEC_BATCH_MAX * 64). */
#define DHT_CODEC_BATCH_MAX 4096u
size_t dht_codec_encode_batch(const dht_msg *msgs, size_t n, uint64_t id, uint8_t *buf,
                              size_t cap);
int dht_codec_decode_batch(const uint8_t *buf, size_t len, dht_msg **out, size_t *n,
                           uint64_t *id);
/* True for the message types a batch may carry. */
int dht_codec_batchable(dht_msg_type t);

#endif
