#include "protocol/view.h"

#include <stdatomic.h>
#include <stdlib.h>

struct dht_view {
    atomic_int refs;
    uint64_t epoch;
    const dht_membership *cur, *next;
    bool owns;
};

dht_view *dht_view_new(uint64_t epoch, const dht_membership *cur, const dht_membership *next,
                       bool owns)
{
    dht_view *v = malloc(sizeof *v);
    if (v == NULL) {
        if (owns) {
            dht_membership_free((dht_membership *)cur);
            dht_membership_free((dht_membership *)next);
        }
        return NULL;
    }
    atomic_init(&v->refs, 1);
    v->epoch = epoch;
    v->cur = cur;
    v->next = next;
    v->owns = owns;
    return v;
}

dht_view *dht_view_ref(dht_view *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void dht_view_unref(dht_view *v)
{
    if (v == NULL || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (v->owns) {
        /* The memberships were handed over as const for the readers. */
        dht_membership_free((dht_membership *)v->cur);
        dht_membership_free((dht_membership *)v->next);
    }
    free(v);
}

uint64_t dht_view_epoch(const dht_view *v)
{
    return v->epoch;
}

bool dht_view_joint(const dht_view *v)
{
    return v->next != NULL;
}

uint64_t dht_view_number(const dht_view *v)
{
    return 2 * v->epoch + (v->next != NULL);
}

const dht_membership *dht_view_current(const dht_view *v)
{
    return v->cur;
}

const dht_membership *dht_view_next(const dht_view *v)
{
    return v->next;
}

uint64_t dht_view_fingerprint(const dht_view *v)
{
    return dht_membership_fingerprint(v->next ? v->next : v->cur);
}

int dht_view_size(const dht_view *v)
{
    int a = dht_membership_size(v->cur);
    int b = v->next ? dht_membership_size(v->next) : 0;
    return a > b ? a : b;
}

void dht_view_partition_replicas(const dht_view *v, uint32_t part, dht_key_replicas *out)
{
    out->ngroups = 1;
    out->group[0] = *dht_membership_partition_replicas(v->cur, part);
    out->quorum[0] = dht_membership_quorum(v->cur);
    out->all = out->group[0];
    if (v->next != NULL) {
        out->group[1] = *dht_membership_partition_replicas(v->next, part);
        out->quorum[1] = dht_membership_quorum(v->next);
        if (dht_peerset_equal(&out->group[0], &out->group[1]) && out->quorum[0] == out->quorum[1])
            return; /* the change leaves this partition alone: one group is both */
        out->ngroups = 2;
        for (size_t i = 0; i < sizeof out->all.w / sizeof out->all.w[0]; i++)
            out->all.w[i] |= out->group[1].w[i];
    }
}

void dht_view_key_replicas(const dht_view *v, int64_t key, dht_key_replicas *out)
{
    dht_view_partition_replicas(v, dht_partition_of(key), out);
}

bool dht_key_replicas_quorum(const dht_key_replicas *kr, const dht_peerset *set)
{
    for (int g = 0; g < kr->ngroups; g++)
        if (dht_peerset_common(&kr->group[g], set) < kr->quorum[g])
            return false;
    return true;
}

void dht_key_replicas_shortest(const dht_key_replicas *kr, const dht_peerset *set, int *have,
                               int *size, int *quorum)
{
    int best = 0;
    int margin = dht_peerset_common(&kr->group[0], set) - kr->quorum[0];
    for (int g = 1; g < kr->ngroups; g++) {
        int m = dht_peerset_common(&kr->group[g], set) - kr->quorum[g];
        if (m < margin) {
            margin = m;
            best = g;
        }
    }
    *have = dht_peerset_common(&kr->group[best], set);
    *size = dht_peerset_count(&kr->group[best]);
    *quorum = kr->quorum[best];
}
