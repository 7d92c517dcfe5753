/* The gRPC C-core transport: the only module that includes grpc headers.
 *
 * One instance owns: a channel per peer, `workers` threads each draining its
 * own completion queue, an optional server (public KeyValue + internal
 * Replica + grpc.health.v1.Health services) and a timer thread.  Outgoing
 * calls are asynchronous, without wait-for-ready, so a dead peer fails fast
 * with UNAVAILABLE: unary calls with a deadline, except replica requests,
 * which travel batched on one long-lived stream per peer and kind, each
 * request bounded by its own deadline.
 */
#ifndef DHT_TRANSPORT_GRPC_H
#define DHT_TRANSPORT_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "base/pem.h"
#include "protocol/transport.h"

typedef struct dht_grpc dht_grpc;

/* TLS (grpc_tls.c), PEM text the caller has loaded.  With it the server
 * accepts only TLS and asks callers for an optional certificate it
 * verifies against ca_pem; the dht.Replica service and dht.Admin/Control
 * then answer only a caller whose certificate carries the peer role (the
 * URI SAN DHT_TLS_PEER_ROLE), and KeyValue and Admin/Stats (read-only) any
 * TLS caller, or, with client_cert_auth, any caller with a certificate of
 * ca_pem.  Outgoing
 * channels verify the peer's certificate against ca_pem and its name
 * against the host they dial, and present cert_pem when given. */
typedef struct dht_grpc_tls {
    const char *cert_pem; /* chain; NULL with key_pem: present none (a client only) */
    const char *key_pem;
    const char *ca_pem;   /* required */
    int client_cert_auth; /* server: KeyValue callers need a certificate too */
} dht_grpc_tls;

#define DHT_TLS_PEER_ROLE "dht:peer"

typedef struct dht_grpc_config {
    const char *const *peers; /* HOST:PORT of each replica; copied */
    int npeers;
    int workers;              /* completion-queue threads; <=0: number of cores */
    int self;                 /* peer index served by `service` in this process, or -1:
                                 its replica requests skip gRPC (see local_main) */
    const char *listen_addr;  /* NULL: client only */
    const dht_service *service;   /* required with listen_addr; copied */
    /* Health check answer: 1 serving, 0 not serving.  NULL: always serving. */
    int (*serving)(void *arg);
    void *serving_arg;
    /* Called on each peer reachability change (also from worker threads). */
    void (*on_peer_state)(void *arg, int peer, const char *addr, int up);
    void *peer_state_arg;
    const dht_grpc_tls *tls;  /* NULL: plaintext, every caller trusted; copied */
    /* The configuration (protocol/membership.h): its fingerprint, which
     * every replica request this transport sends without a stamp of its
     * own (dht_msg.config 0) carries, with view 0 (unary, batch and each
     * stream message), and its canonical line, for the refusal text.
     * Unless the service has check_config (which then decides alone), the
     * server refuses every replica request whose fingerprint is not this
     * one with FAILED_PRECONDITION, changing nothing; 0: no check (and
     * such requests carry none).  config_line may be NULL; copied. */
    uint64_t fingerprint;
    const char *config_line;
} dht_grpc_config;

/* Starts the transport (and server, if listen_addr is set).  On failure
 * returns -1 with a one-line reason in err.  npeers may be 0: the
 * transport's add_peer adds peers later (up to DHT_MAX_MEMBERS). */
int dht_grpc_start(const dht_grpc_config *cfg, dht_grpc **out, char *err, size_t errlen);

dht_transport *dht_grpc_transport(dht_grpc *g);

/* Stops accepting, lets in-flight work finish (bounded by its deadlines),
 * then tears everything down and frees g. */
void dht_grpc_stop(dht_grpc *g);

/* An asynchronous unary call with raw request bytes to peer, for clients of
 * other services (the benchmark's etcd client).  cb runs exactly once on a
 * worker thread with the gRPC status code (or -1 when the transport is
 * shutting down) and the reply bytes (valid during the callback); for a
 * failed call the transport's last_error gives "STATUS: details" during the
 * callback.  Returns
 * nonzero if the call could not be started (cb will not run). */
typedef void (*dht_grpc_raw_cb)(void *arg, int status, const uint8_t *resp, size_t len);
int dht_grpc_call_async(dht_grpc *g, int peer, const char *method, const void *req,
                        size_t req_len, int64_t deadline_ns, dht_grpc_raw_cb cb, void *arg);

/* Cancels the raw calls (dht_grpc_call_async) still in flight: each ends
 * at once with CANCELLED, its callback still runs.  For a caller that has
 * the answer it needed and would otherwise wait, in dht_grpc_stop, for the
 * calls to unreachable peers to reach their deadlines. */
void dht_grpc_cancel_raw_calls(dht_grpc *g);

/* One blocking unary call with raw request bytes: for tools and tests (bad
 * input, health probes).  Returns 0 when a gRPC status was received (in
 * *status, with details and the reply bytes, truncated to *resp_len), or -1
 * on a local error. */
int dht_grpc_call_raw(const char *addr, const char *method, const void *req, size_t req_len,
                      int64_t timeout_ns, int *status, char *details, size_t details_len,
                      uint8_t *resp, size_t *resp_len);
/* The same over TLS when tls is not NULL.  A failed handshake is a status
 * (UNAVAILABLE), as for any connection that cannot be made. */
int dht_grpc_call_raw_tls(const dht_grpc_tls *tls, const char *addr, const char *method,
                          const void *req, size_t req_len, int64_t timeout_ns, int *status,
                          char *details, size_t details_len, uint8_t *resp, size_t *resp_len);

/* For the binaries' TLS flags: reads the PEM files whose path is not NULL
 * into pem (base/pem.h) and points tls at the text (client_cert_auth 0);
 * with a certificate, also lets gRPC's TLS parse certificate, key and CA as
 * a server would (nothing listens), so that a key that is not the
 * certificate's, or PEM text that is no certificate, stops the process at
 * start instead of failing every handshake.  0, or -1 with a one-line
 * reason naming the file(s) in err; the caller frees pem. */
int dht_grpc_tls_load(const char *cert_path, const char *key_path, const char *ca_path,
                      dht_pem_set *pem, dht_grpc_tls *tls, char *err, size_t errlen);

/* Switches off abseil's per-lock deadlock detection (on in Debian's
 * abseil build, which gRPC's mutexes use) before gRPC starts; both start
 * functions above call it.  Returns 1 if abseil's setter was found and
 * called, 0 if this abseil build does not have it under a known name. */
int dht_grpc_abseil_deadlock_checks_off(void);

/* Name of a numeric gRPC status code, e.g. "UNAVAILABLE". */
const char *dht_grpc_status_name(int code);

#define DHT_HEALTH_METHOD "/grpc.health.v1.Health/Check"

#endif
