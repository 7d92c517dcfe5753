/* Keepalive and reconnect: the channel arguments that make a channel notice
 * a lost or silent connection and reconnect quickly, and the up/down state
 * of each peer that calls and streams report (logged, and passed on to
 * on_peer_state).  The server's side of keepalive (accepting our pings) is
 * with the server's arguments in grpc_server_calls.c.  Also peers added at
 * runtime (add_peer), for membership changes. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "net/grpc_internal.h"

char *dht_grpc_peer_norm(const char *addr)
{
    char norm[DHT_ADDR_MAX], err[128];
    return strdup(dht_member_addr_normalise(addr, norm, sizeof norm, err, sizeof err) == 0 ? norm
                                                                                          : addr);
}

/* A new peer gets what the initial ones got at start: its channel, with
 * the same TLS credentials, and an up state; its queues exist already
 * (struct dht_grpc).  Published by raising npeers last, so a sender that
 * sees the new index finds everything in place. */
int dht_grpc_add_peer(dht_transport *t, const char *addr)
{
    dht_grpc *g = (dht_grpc *)t;
    char norm[DHT_ADDR_MAX], err[128];
    if (addr == NULL ||
        dht_member_addr_normalise(addr, norm, sizeof norm, err, sizeof err) != 0)
        return -1;
    pthread_mutex_lock(&g->peers_mu);
    int n = g->base.npeers, found = -1;
    for (int i = 0; i < n && found < 0; i++)
        if (g->norms[i] != NULL && strcmp(g->norms[i], norm) == 0)
            found = i;
    if (found >= 0 || n >= DHT_MAX_MEMBERS || atomic_load(&g->stopping)) {
        pthread_mutex_unlock(&g->peers_mu);
        return found;
    }
    char *a = strdup(addr), *nm = strdup(norm);
    dht_grpc_tls tls = {.cert_pem = g->tls_cert, .key_pem = g->tls_key, .ca_pem = g->tls_ca};
    grpc_channel_credentials *creds = dht_grpc_channel_creds(g->tls_ca ? &tls : NULL);
    grpc_channel *ch = a && nm && creds ? grpc_channel_create(addr, creds, dht_grpc_channel_args())
                                        : NULL;
    if (creds != NULL)
        grpc_channel_credentials_release(creds);
    if (ch == NULL) {
        pthread_mutex_unlock(&g->peers_mu);
        free(a);
        free(nm);
        return -1;
    }
    g->addrs[n] = a;
    g->norms[n] = nm;
    g->channels[n] = ch;
    atomic_store(&g->peer_up[n], 1);
    atomic_store(&g->base.npeers, n + 1); /* publishes the entries above */
    pthread_mutex_unlock(&g->peers_mu);
    DHT_INFO("peer %s added (index %d)", addr, n);
    return n;
}

void dht_grpc_set_peer_state(dht_grpc *g, int peer, int up)
{
    if (peer < 0 || peer >= g->base.npeers)
        return;
    if (atomic_exchange(&g->peer_up[peer], up) == up)
        return;
    if (up)
        DHT_INFO("peer %s is back", g->addrs[peer]);
    else
        DHT_WARN("peer %s is not answering", g->addrs[peer]);
    if (g->on_peer_state)
        g->on_peer_state(g->peer_state_arg, peer, g->addrs[peer], up);
}

grpc_channel_args *dht_grpc_channel_args(void)
{
    /* Reconnect quickly after a peer restarts: while a channel is in
     * backoff, calls fail fast with UNAVAILABLE.  The "min reconnect
     * backoff" is really gRPC's minimum connect timeout: set low, a
     * handshake slowed by a busy machine is aborted ("tcp handshaker
     * shutdown") and a live peer looks dead; 2 s is ample on a LAN.
     * Keepalive pings every second detect a connection whose packets are
     * silently dropped (a partition, a stalled peer) within about two
     * seconds and reconnect, instead of waiting out TCP's retransmission
     * backoff, which after a long partition took ~50 s to notice the heal. */
    static grpc_arg args[7];
    static grpc_channel_args ca = {7, args};
    static const struct {
        const char *key;
        int value;
    } ints[7] = {
        {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100},
        {GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2000},
        {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500},
        {GRPC_ARG_ENABLE_RETRIES, 0},
        {GRPC_ARG_KEEPALIVE_TIME_MS, 1000},
        {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000},
        {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
    };
    for (int i = 0; i < 7; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)ints[i].key;
        args[i].value.integer = ints[i].value;
    }
    return &ca;
}
