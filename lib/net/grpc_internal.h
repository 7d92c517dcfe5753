/* Private to lib/net: what the files that talk gRPC share on top of
 * transport_internal.h: gRPC's headers, the tag of a stream operation, the
 * structures of one outgoing (ccall) and one incoming (scall) unary call,
 * and the functions with gRPC types in their signature. */
#ifndef DHT_NET_GRPC_INTERNAL_H
#define DHT_NET_GRPC_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "net/transport_internal.h"

#define REQ_SLOTS 8 /* outstanding requested server calls per method per queue */
#define MAX_MSG 4096

/* The tag of one of a stream's operations: which one, and whose. */
typedef struct {
    tag_kind kind;
    void *owner;
} otag;

typedef struct ccall {
    tag_kind kind;
    dht_grpc *g;
    int peer;
    dht_msg_type type;
    grpc_call *call;
    grpc_byte_buffer *send_bb, *recv_bb;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    dht_reply_cb cb;
    dht_grpc_raw_cb raw_cb; /* raw calls: bytes in, bytes out */
    dht_control_cb control_cb; /* control calls: ControlRequest/Reply bodies */
    void *arg;
    qitem *batch; /* batch calls: the items, owned */
    size_t nbatch;
    int64_t started; /* batch calls: for the debug log's round-trip time */
    int queue;       /* batch calls: index into g->queues */
    struct ccall *raw_prev, *raw_next; /* raw calls: g->raw_calls */
} ccall;

typedef struct scall {
    tag_kind kind;
    dht_grpc *g;
    worker *w;
    int method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array req_md;
    grpc_call_details details; /* generic slot only */
    grpc_byte_buffer *payload;
    /* response */
    grpc_byte_buffer *resp_bb;
    grpc_metadata trailing[2];
    size_t ntrailing;
    grpc_slice status_details;
    int cancelled;
} scall;

struct sstream;

/* ---- grpc_status.c: status names, the last error, refusals ---- */
void dht_grpc_note_error(grpc_status_code code, grpc_slice details);
/* The path of a served method (M_*), "?" for the generic slot. */
const char *dht_grpc_method_path(int method);
/* Logs that a call was refused and why, at most one line a second. */
void dht_grpc_log_refusal(grpc_call *call, int method, const char *why);

/* ---- grpc_buffers.c: byte buffers <-> our messages ---- */
grpc_byte_buffer *dht_grpc_bb_from(const void *buf, size_t len);
bool dht_grpc_bb_slice(grpc_byte_buffer *bb, grpc_slice *out);
long dht_grpc_bb_read(grpc_byte_buffer *bb, uint8_t *buf, size_t cap);
grpc_byte_buffer *dht_grpc_bb_encode(const dht_msg *m, bool reply, uint64_t config,
                                     uint64_t view);
grpc_byte_buffer *dht_grpc_bb_encode_batch(const dht_msg *msgs, size_t n, uint64_t id,
                                           uint64_t config, uint64_t view);
int dht_grpc_bb_decode_batch(grpc_byte_buffer *bb, dht_msg **out, size_t *n, uint64_t *id,
                             uint64_t *config, uint64_t *view);
int dht_grpc_bb_decode_batch_reply(grpc_byte_buffer *bb, dht_msg **out, size_t *n, uint64_t *id,
                                   char *refused, size_t refused_len);
grpc_byte_buffer *dht_grpc_bb_encode_items(dht_grpc *g, const qitem *items, size_t n,
                                           uint64_t id);
grpc_byte_buffer *dht_grpc_bb_encode_control(const uint8_t *body, size_t len);

/* ---- grpc_deadlines.c: our clock <-> gRPC's ---- */
gpr_timespec dht_grpc_deadline_ts(int64_t deadline_ns);
int64_t dht_grpc_call_deadline(const scall *s);

/* ---- grpc_peers.c: keepalive and reconnect ---- */
grpc_channel_args *dht_grpc_channel_args(void);

/* ---- grpc_client_calls.c ---- */
grpc_completion_queue *dht_grpc_pick_cq(dht_grpc *g);
void dht_grpc_client_call_done(ccall *c, int success);

/* ---- grpc_stream_client.c: completions of a stream's operations ---- */
void dht_grpc_cs_send_done(struct cstream *cs, int success);
void dht_grpc_cs_recv_done(struct cstream *cs, int success);
void dht_grpc_cs_status_done(struct cstream *cs, int success);

/* ---- grpc_server_calls.c ---- */
int dht_grpc_server_start(dht_grpc *g, const char *addr, char *err, size_t errlen);
/* The server's resource bounds (grpc_limits.c): fills out with at most
 * DHT_GRPC_LIMIT_ARGS arguments and returns how many.  *quota is a new
 * memory quota the arguments point to: the caller unrefs it once the
 * server holds its own reference (after grpc_server_create). */
#define DHT_GRPC_LIMIT_ARGS 7
int dht_grpc_limit_args(grpc_arg *out, grpc_resource_quota **quota);
void dht_grpc_server_call_arrived(scall *s, int success);
void dht_grpc_scall_free(scall *s);
void dht_grpc_respond(scall *s, const uint8_t *msg, size_t len, grpc_status_code code,
                      const char *details);

/* ---- grpc_stream_server.c: the server end of batch streams ---- */
void dht_grpc_serve_stream(dht_grpc *g, scall *s);
void dht_grpc_ss_send_done(struct sstream *ss, int success);
void dht_grpc_ss_recv_done(struct sstream *ss, int success);
void dht_grpc_ss_close_done(struct sstream *ss);

/* ---- grpc_health.c ---- */
void dht_grpc_serve_health(dht_grpc *g, scall *s);

/* ---- grpc_config.c: the configuration check, Admin/Stats, Admin/Control ---- */
/* The longest refusal text (the configuration line is cut to fit). */
#define DHT_GRPC_REFUSAL_MAX 2048
/* Whether a replica request stamped (config, view) may be served by g:
 * the service's check_config when it has one, else g's fingerprint
 * (always, when g has none).  If not, why holds the FAILED_PRECONDITION
 * text for the caller and the refusal has been logged (call may be NULL:
 * not logged, for the local replica's batches). */
bool dht_grpc_config_ok(dht_grpc *g, grpc_call *call, int method, uint64_t config, uint64_t view,
                        char *why, size_t len);
void dht_grpc_serve_stats(dht_grpc *g, scall *s);
void dht_grpc_serve_control(dht_grpc *g, scall *s);

/* ---- grpc_tls.c: credentials and who may call what ---- */
/* Copies tls's PEM text into g (nothing for NULL); -1 when out of memory. */
int dht_grpc_tls_keep(dht_grpc *g, const dht_grpc_tls *tls);
void dht_grpc_tls_drop(dht_grpc *g);
/* Plaintext for NULL; the caller releases the result. */
grpc_channel_credentials *dht_grpc_channel_creds(const dht_grpc_tls *tls);
grpc_server_credentials *dht_grpc_server_creds(const dht_grpc *g);
/* Whether s's caller may call s's method; if not, s has been answered
 * (UNAUTHENTICATED or PERMISSION_DENIED) and is no longer the caller's. */
bool dht_grpc_call_allowed(dht_grpc *g, scall *s);

#endif
