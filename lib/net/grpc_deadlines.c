/* Deadlines: conversions between our monotonic clock (dht_now_ns) and
 * gRPC's timespecs for the calls we make and serve, the split of queued
 * items that are (nearly) past their deadline, and the periodic sweep that
 * fails queued and sent items once their deadline passes, so a caller's
 * deadline holds even behind an unresponsive peer. */
#include <stdlib.h>

#include "net/grpc_internal.h"

gpr_timespec dht_grpc_deadline_ts(int64_t deadline_ns)
{
    int64_t rem = deadline_ns - dht_now_ns();
    if (rem < 0)
        rem = 0;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(rem, GPR_TIMESPAN));
}

/* The caller's deadline on our monotonic clock (INT64_MAX if none), so the
 * work done on its behalf stops when it stops waiting. */
int64_t dht_grpc_call_deadline(const scall *s)
{
    gpr_timespec dl = gpr_convert_clock_type(s->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ns = (int64_t)left.tv_sec * DHT_NS_PER_SEC + left.tv_nsec;
    if (ns > 3600 * DHT_NS_PER_SEC)
        return INT64_MAX;
    return dht_now_ns() + ns;
}

/* Moves the items whose deadline is at or before horizon to *expired
 * (malloc'd, caller owns; left NULL if none): a batch about to be sent
 * drops those (nearly) past their deadline, so they neither doom the rest
 * to a timeout nor shorten its life, since their callers have given up;
 * the sweep drops those past it.  Returns how many stay at the front of
 * items, and their earliest deadline in *deadline unless it is NULL. */
size_t dht_grpc_split_expired(qitem *items, size_t n, int64_t horizon, qitem **expired,
                              size_t *nexp, int64_t *deadline)
{
    size_t live = 0;
    int64_t earliest = INT64_MAX;
    *expired = NULL;
    *nexp = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].deadline <= horizon) {
            if (*expired == NULL)
                *expired = malloc(n * sizeof **expired);
            if (*expired != NULL) {
                (*expired)[(*nexp)++] = items[i];
                continue;
            }
        }
        items[live++] = items[i];
        if (items[i].deadline < earliest)
            earliest = items[i].deadline;
    }
    if (deadline != NULL)
        *deadline = earliest;
    return live;
}

/* Every SWEEP_NS, fails queued items whose deadline passed.  Without it an
 * item queued behind batches to an unresponsive peer would learn its fate
 * only when a slot frees, which can be several batch timeouts after its
 * own deadline: the caller's deadline would not hold. */
void dht_grpc_sweep_queues(void *arg)
{
    dht_grpc *g = arg;
    int64_t now = dht_now_ns();
    for (int qi = 0; qi < 2 * g->base.npeers; qi++) {
        peerq *q = &g->queues[qi];
        qitem *expired;
        size_t nexp;
        pthread_mutex_lock(&q->mu);
        q->len = dht_grpc_split_expired(q->items, q->len, now, &expired, &nexp, NULL);
        pthread_mutex_unlock(&q->mu);
        dht_grpc_fail_items_now(expired, nexp, DHT_ERR_TIMEOUT); /* timer thread: allowed */
        free(expired);
        if (qi / 2 != g->self)
            dht_grpc_cs_sweep(g, qi, now);
    }
    if (!atomic_load(&g->stopping))
        dht_timers_add(g->timers, SWEEP_NS, dht_grpc_sweep_queues, g);
}
