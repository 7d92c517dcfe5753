/* TLS and who may call what: the credentials of the server and of the
 * channels, and the check every served call passes before it is
 * dispatched (dht_grpc_server_call_arrived).
 *
 * The server asks for a client certificate but does not require one at the
 * handshake: KeyValue, Admin/Stats and health stay open to any TLS client
 * (Admin/Control, which changes the cluster, needs the peer role),
 * so the decision has to be per method, on the call's auth context.  A certificate
 * that is presented is verified against the cluster CA during the
 * handshake, so a certificate of another CA never gets as far as a call.
 * What the check reads:
 *   - grpc_auth_context_peer_is_authenticated: a verified certificate with
 *     a subject (CN or SAN) was presented (make-certs.sh always sets a CN);
 *   - the "peer_uri" property (GRPC_PEER_URI_PROPERTY_NAME): gRPC 29 puts
 *     each URI SAN there, and only URI SANs, so a DNS name spelled
 *     "dht:peer" cannot pass for the role.  (The URI also appears in
 *     "x509_subject_alternative_name", mixed with DNS names and IPs, which
 *     is why that property is not used.)
 * The decision is fail-closed: a method not named below as public needs
 * the peer role. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc_internal.h"

static char *dup_or_null(const char *s, bool *failed)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *failed = true;
    return d;
}

int dht_grpc_tls_keep(dht_grpc *g, const dht_grpc_tls *tls)
{
    if (tls == NULL)
        return 0;
    bool failed = tls->ca_pem == NULL;
    g->tls_ca = dup_or_null(tls->ca_pem, &failed);
    g->tls_cert = dup_or_null(tls->cert_pem, &failed);
    g->tls_key = dup_or_null(tls->key_pem, &failed);
    g->client_cert_auth = tls->client_cert_auth != 0;
    if (failed)
        dht_grpc_tls_drop(g);
    return failed ? -1 : 0;
}

void dht_grpc_tls_drop(dht_grpc *g)
{
    free(g->tls_ca);
    free(g->tls_cert);
    free(g->tls_key);
    g->tls_ca = g->tls_cert = g->tls_key = NULL;
}

grpc_channel_credentials *dht_grpc_channel_creds(const dht_grpc_tls *tls)
{
    if (tls == NULL)
        return grpc_insecure_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {tls->key_pem, tls->cert_pem};
    bool own = tls->cert_pem != NULL && tls->key_pem != NULL;
    return grpc_ssl_credentials_create_ex(tls->ca_pem, own ? &pair : NULL, NULL, NULL);
}

static grpc_server_credentials *tls_server_creds(const char *cert, const char *key,
                                                 const char *ca)
{
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    grpc_ssl_server_certificate_config *config =
        grpc_ssl_server_certificate_config_create(ca, &pair, 1);
    grpc_ssl_server_credentials_options *opts =
        grpc_ssl_server_credentials_create_options_using_config(
            GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY, config);
    return grpc_ssl_server_credentials_create_with_options(opts);
}

grpc_server_credentials *dht_grpc_server_creds(const dht_grpc *g)
{
    if (g->tls_ca == NULL)
        return grpc_insecure_server_credentials_create();
    return tls_server_creds(g->tls_cert, g->tls_key, g->tls_ca);
}

/* Whether a server with creds (taken) can add a port on the loopback.
 * Adding a port is where gRPC builds a TLS context from the PEM text (and
 * where OpenSSL matches the key to the certificate).  The server is shut
 * down at once: gRPC insists on that before it destroys a server that has
 * a port. */
static bool loopback_port_ok(grpc_server_credentials *creds)
{
    grpc_server *srv = grpc_server_create(NULL, NULL);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_register_completion_queue(srv, cq, NULL);
    int port = creds ? grpc_server_add_http2_port(srv, "127.0.0.1:0", creds) : 0;
    if (creds)
        grpc_server_credentials_release(creds);
    grpc_server_start(srv);
    int tag;
    grpc_server_shutdown_and_notify(srv, cq, &tag);
    grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_server_destroy(srv);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    return port != 0;
}

/* 0 when gRPC's TLS accepts tls's certificate, key and CA as a server's,
 * or when that cannot be told (no usable loopback: then the node's own
 * listen reports the problem). */
static int tls_check(const dht_grpc_tls *tls)
{
    if (getenv("GRPC_VERBOSITY") == NULL)
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    dht_grpc_abseil_deadlock_checks_off();
    grpc_init();
    int rc = 0;
    if (!loopback_port_ok(tls_server_creds(tls->cert_pem, tls->key_pem, tls->ca_pem)) &&
        loopback_port_ok(grpc_insecure_server_credentials_create()))
        rc = -1;
    grpc_shutdown();
    return rc;
}

int dht_grpc_tls_load(const char *cert_path, const char *key_path, const char *ca_path,
                      dht_pem_set *pem, dht_grpc_tls *tls, char *err, size_t errlen)
{
    memset(tls, 0, sizeof *tls);
    if (dht_pem_set_read(pem, cert_path, key_path, ca_path, err, errlen) != 0)
        return -1;
    *tls = (dht_grpc_tls){.cert_pem = pem->cert, .key_pem = pem->key, .ca_pem = pem->ca};
    if (pem->cert == NULL || pem->key == NULL || pem->ca == NULL || tls_check(tls) == 0)
        return 0;
    snprintf(err, errlen,
             "%s, %s, %s: gRPC's TLS refused them: the key is not the certificate's, or "
             "the certificate, key or CA is not valid PEM",
             cert_path, key_path, ca_path);
    dht_pem_set_free(pem);
    memset(tls, 0, sizeof *tls);
    return -1;
}

/* ---- the per-call check ---------------------------------------------------- */

typedef enum { NEED_NOTHING, NEED_CERT, NEED_PEER_ROLE } need;

static need method_needs(const dht_grpc *g, int method)
{
    switch (method) {
    case M_GENERIC: /* answered UNIMPLEMENTED: touches nothing */
    case M_HEALTH:
        return NEED_NOTHING;
    case DHT_MSG_PUT:
    case DHT_MSG_GET:
    case M_STATS: /* read-only: open like KeyValue */
        return g->client_cert_auth ? NEED_CERT : NEED_NOTHING;
    case M_CONTROL: /* changes the cluster: members only, like dht.Replica */
    default: /* dht.Replica, and anything added later until it says otherwise */
        return NEED_PEER_ROLE;
    }
}

static bool has_peer_role(const grpc_auth_context *ctx)
{
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ctx, GRPC_PEER_URI_PROPERTY_NAME);
    const grpc_auth_property *p;
    size_t len = strlen(DHT_TLS_PEER_ROLE);
    while ((p = grpc_auth_property_iterator_next(&it)) != NULL)
        if (p->value_length == len && memcmp(p->value, DHT_TLS_PEER_ROLE, len) == 0)
            return true;
    return false;
}

bool dht_grpc_call_allowed(dht_grpc *g, scall *s)
{
    if (g->tls_ca == NULL)
        return true; /* plaintext: every caller is trusted (the start-up warning) */
    need n = method_needs(g, s->method);
    if (n == NEED_NOTHING)
        return true;
    grpc_auth_context *ctx = grpc_call_auth_context(s->call);
    bool authenticated = ctx != NULL && grpc_auth_context_peer_is_authenticated(ctx);
    bool member = authenticated && has_peer_role(ctx);
    if (ctx != NULL)
        grpc_auth_context_release(ctx);
    if (!authenticated) {
        const char *why = "no client certificate of the cluster CA";
        dht_grpc_log_refusal(s->call, s->method, why);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_UNAUTHENTICATED, why);
        return false;
    }
    if (n == NEED_PEER_ROLE && !member) {
        const char *why = s->method == M_CONTROL
                              ? "dht.Admin/Control is for members: the certificate lacks the "
                                "URI SAN " DHT_TLS_PEER_ROLE
                              : "dht.Replica is for members: the certificate lacks the URI SAN "
                                DHT_TLS_PEER_ROLE;
        dht_grpc_log_refusal(s->call, s->method, why);
        dht_grpc_respond(s, NULL, 0, GRPC_STATUS_PERMISSION_DENIED, why);
        return false;
    }
    return true;
}
