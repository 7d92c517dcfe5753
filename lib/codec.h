/* Conversion between dht_msg and the protobuf wire format of proto/dht.proto,
 * plus the gRPC method path of each message type.  No gRPC here: the
 * transport hands bytes in and out. */
#ifndef DHT_CODEC_H
#define DHT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* Large enough for any message of dht.proto (a handful of varints). */
#define DHT_CODEC_MAX 128

const char *dht_codec_method(dht_msg_type t);      /* "/dht.Replica/Lock", ... */
dht_msg_type dht_codec_method_type(const char *path); /* 0 when unknown */

/* Encoders return the byte count written to buf (<= DHT_CODEC_MAX). */
size_t dht_codec_encode_request(const dht_msg *m, uint8_t *buf);
size_t dht_codec_encode_reply(const dht_msg *m, uint8_t *buf);

/* Decoders return 0, or -1 for bytes that are not a valid message of that
 * type (the caller answers INVALID_ARGUMENT). */
int dht_codec_decode_request(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out);
int dht_codec_decode_reply(dht_msg_type t, const uint8_t *buf, size_t len, dht_msg *out);

#endif
