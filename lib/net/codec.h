/* Conversion between dht_msg and the protobuf wire format of proto/dht.proto,
 * plus the gRPC method path of each message type.  No gRPC here: the
 * transport hands bytes in and out. */
#ifndef DHT_CODEC_H
#define DHT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"
#include "protocol/transport.h"

/* Large enough for any message of dht.proto but a SCAN reply (a handful of
 * varints); SCAN replies grow with their entries. */
#define DHT_CODEC_MAX 128
/* Largest SCAN reply accepted: bounds what a peer can make us allocate. */
#define DHT_CODEC_SCAN_MAX (8u << 20)

const char *dht_codec_method(dht_msg_type t);      /* "/dht.Replica/Lock", ... */
dht_msg_type dht_codec_method_type(const char *path); /* 0 when unknown */

/* Encoders return the encoded size; they write to buf only when that is
 * <= cap (else the caller retries with a buffer of that size).  (config,
 * view) is the stamp replica requests carry (proto/dht.proto, LockRequest:
 * configuration fingerprint and view number), given apart from m because
 * the transport decides it (protocol/transport.h); public requests and
 * replies have none. */
size_t dht_codec_encode_request(const dht_msg *m, uint64_t config, uint64_t view, uint8_t *buf,
                                size_t cap);
size_t dht_codec_encode_reply(const dht_msg *m, uint8_t *buf, size_t cap);

/* Decoders return 0, or -1 for bytes that are not a valid message of that
 * type (the caller answers INVALID_ARGUMENT).  A decoded SCAN reply's
 * entries are malloc'd: the caller frees out->entries.  A replica
 * request's stamp lands in out->config and out->view (0: none), and the
 * fingerprint in *config too unless config is NULL. */
int dht_codec_decode_request(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out,
                             uint64_t *config);
int dht_codec_decode_reply(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out);

/* Batches of replica requests (LOCK, UNLOCK, WRITE, READ) or their
 * replies: method paths (a unary call per batch, or a stream of batches),
 * encoder (same size contract as above), and a decoder that fills a
 * malloc'd array the caller frees (*out).  id matches a streamed reply to
 * its request (0 in unary calls); (config, view) is the requests' one
 * stamp (0 in replies); the decoder stores each unless its pointer is
 * NULL, and copies the stamp into every decoded item's config and view. */
#define DHT_CODEC_BATCH_METHOD "/dht.Replica/Batch"
#define DHT_CODEC_STREAM_METHOD "/dht.Replica/Stream"
/* Items a batch may carry: senders cap theirs at 512 (BATCH_MAX_ITEMS),
 * so a larger one is hostile or broken and is refused before it costs a
 * decoded array (and it bounds the message at DHT_CODEC_BATCH_MAX * 64). */
#define DHT_CODEC_BATCH_MAX 4096u
size_t dht_codec_encode_batch(const dht_msg *msgs, size_t n, uint64_t id, uint64_t config,
                              uint64_t view, uint8_t *buf, size_t cap);
int dht_codec_decode_batch(const uint8_t *buf, size_t len, dht_msg **out, size_t *n,
                           uint64_t *id, uint64_t *config, uint64_t *view);
/* A streamed batch's reply that refuses the request's stamp (BatchReply
 * with id and refused = why, no items), and the decoder of a batch reply
 * that also tells those apart: refused gets the reason ("" for an
 * ordinary reply, cut to refused_len), the items as above. */
size_t dht_codec_encode_batch_refusal(uint64_t id, const char *why, uint8_t *buf, size_t cap);
int dht_codec_decode_batch_reply(const uint8_t *buf, size_t len, dht_msg **out, size_t *n,
                                 uint64_t *id, char *refused, size_t refused_len);
/* True for the message types a batch may carry. */
int dht_codec_batchable(dht_msg_type t);

/* The config field (fingerprint) of the request message of a method path
 * ("/dht.Replica/Lock", ..., Batch, Stream), encoded: written to buf when
 * it fits in cap; returns its size, 0 for a method whose requests carry
 * none.  Prepended to a message's bytes it sets the fingerprint without
 * changing how the rest parses (a later config field would win): for tools
 * that send hand-made requests. */
size_t dht_codec_config_field(const char *method, uint64_t config, uint8_t *buf, size_t cap);

/* The administrative Stats call (dht.Admin, protocol/transport.h's
 * dht_stats).  Its request is empty: decode_stats_request only tells a
 * valid StatsRequest (0) from bytes that are none (-1).  The reply's
 * encoder has the size contract above (SIZE_MAX: out of memory); its
 * decoder fills *out with malloc'd strings that dht_codec_stats_free
 * releases (also after a failed decode). */
#define DHT_CODEC_STATS_METHOD "/dht.Admin/Stats"
int dht_codec_decode_stats_request(const uint8_t *buf, size_t len);
size_t dht_codec_encode_stats(const dht_stats *s, uint8_t *buf, size_t cap);
int dht_codec_decode_stats(const uint8_t *buf, size_t len, dht_stats *out);
void dht_codec_stats_free(dht_stats *s);

/* The control channel (dht.Admin/Control): ControlRequest and
 * ControlReply are both one bytes field, so one encoder (size contract
 * above) and one decoder serve both.  The decoder copies the body into a
 * malloc'd *body (the caller frees it; not NULL, even for 0 bytes) and
 * returns 0, -1 for bytes that are no such message (or out of memory),
 * -2 for a body over DHT_CONTROL_MAX (protocol/transport.h). */
#define DHT_CODEC_CONTROL_METHOD "/dht.Admin/Control"
size_t dht_codec_encode_control(const uint8_t *body, size_t len, uint8_t *buf, size_t cap);
int dht_codec_decode_control(const uint8_t *buf, size_t len, uint8_t **body, size_t *body_len);

#endif
