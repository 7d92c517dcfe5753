#include "protocol/membership.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct dht_membership {
    int n;       /* positions (slots), members or not */
    int members; /* how many of them are members */
    int self;    /* our position, or -1 */
    int r, q;
    uint64_t fingerprint;
    dht_peerset *parts; /* DHT_PARTITIONS replica sets; owned */
    int *nparts;        /* partitions per member; owned */
    struct {
        char listed[DHT_ADDR_MAX]; /* as dht_parse_hostport wrote it */
        char norm[DHT_ADDR_MAX];   /* dht_member_addr_normalise's form */
        uint64_t id;
        bool member; /* false: a position kept for a member that left */
    } m[];
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a, then mixed */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(0x100000001b3);
    }
    h = dht_mix64(h);
    return h ? h : 1;
}

uint32_t dht_partition_of(int64_t key)
{
    /* The high bits of the mixed key, scaled: uniform for any count. */
    unsigned __int128 x = (unsigned __int128)dht_mix64((uint64_t)key ^ UINT64_C(0x6a09e667f3bcc909));
    return (uint32_t)((x * DHT_PARTITIONS) >> 64);
}

/* Rendezvous hashing: each partition goes to the R members with the
 * highest scores.  A score depends only on the member's id and the
 * partition, so a member that joins takes a replica exactly where its
 * score beats the R-th, and one that leaves is replaced by the next. */
static void place(dht_membership *m)
{
    if (m->r == m->members) { /* every member stores everything: no choice to make */
        dht_peerset all = {{0}};
        for (int p = 0; p < m->n; p++) {
            if (!m->m[p].member)
                continue;
            dht_peerset_add(&all, p);
            m->nparts[p] = DHT_PARTITIONS;
        }
        for (uint32_t part = 0; part < DHT_PARTITIONS; part++)
            m->parts[part] = all;
        return;
    }
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        uint64_t salt = dht_mix64(part * DHT_GOLDEN_GAMMA + 1);
        uint64_t best[DHT_MAX_MEMBERS];
        int who[DHT_MAX_MEMBERS], k = 0;
        for (int p = 0; p < m->n; p++) {
            if (!m->m[p].member)
                continue;
            uint64_t sc = dht_mix64(m->m[p].id ^ salt);
            /* Insert into the descending top-r list; ties (never seen in
             * practice) go to the larger id so the order is still total. */
            int i = k < m->r ? k++ : m->r;
            while (i > 0 && (best[i - 1] < sc ||
                             (best[i - 1] == sc && m->m[who[i - 1]].id < m->m[p].id))) {
                if (i < m->r) {
                    best[i] = best[i - 1];
                    who[i] = who[i - 1];
                }
                i--;
            }
            if (i < m->r) {
                best[i] = sc;
                who[i] = p;
            }
        }
        dht_peerset set = {{0}};
        for (int i = 0; i < m->r; i++) {
            dht_peerset_add(&set, who[i]);
            m->nparts[who[i]]++;
        }
        m->parts[part] = set;
    }
}

static int find_slot(const dht_membership *m, const char *addr);

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int dht_member_addr_normalise(const char *addr, char *out, size_t outlen, char *err,
                              size_t errlen)
{
    char hp[DHT_ADDR_MAX];
    if (addr == NULL || *addr == '\0') {
        snprintf(err, errlen, "empty address");
        return -1;
    }
    if (strlen(addr) >= sizeof hp) {
        snprintf(err, errlen, "'%.40s...': address longer than %d characters", addr,
                 DHT_ADDR_MAX - 1);
        return -1;
    }
    if (dht_parse_hostport(addr, hp, sizeof hp, err, errlen) != 0)
        return -1;
    const char *colon = strrchr(hp, ':');
    size_t hostlen = (size_t)(colon - hp);
    char host[DHT_ADDR_MAX];
    memcpy(host, hp, hostlen);
    host[hostlen] = '\0';
    if (host[0] == '[') {
        /* An IPv6 literal: brackets around the whole host, kept as written. */
        if (hostlen < 3 || host[hostlen - 1] != ']' || strchr(host + 1, '[') != NULL ||
            strchr(host, ']') != host + hostlen - 1) {
            snprintf(err, errlen, "'%s': an IPv6 host must be written [ADDRESS]:PORT", addr);
            return -1;
        }
    } else {
        if (strpbrk(host, "[]:") != NULL) {
            snprintf(err, errlen, "'%s': an IPv6 host must be written [ADDRESS]:PORT", addr);
            return -1;
        }
        for (char *p = host; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (strcmp(host, "localhost") == 0 || strcmp(host, "0.0.0.0") == 0)
            strcpy(host, "127.0.0.1");
    }
    if ((size_t)snprintf(out, outlen, "%s%s", host, colon) >= outlen) {
        snprintf(err, errlen, "'%s': address too long", addr);
        return -1;
    }
    return 0;
}

static dht_membership *alloc_members(int n)
{
    dht_membership *m = calloc(1, sizeof *m + (size_t)n * sizeof m->m[0]);
    if (m != NULL) {
        m->n = n;
        m->members = n;
        m->self = -1;
        for (int p = 0; p < n; p++)
            m->m[p].member = true;
    }
    return m;
}

static int finish(dht_membership *m, int replicas, char *err, size_t errlen)
{
    if (m->members < 1) {
        snprintf(err, errlen, "a configuration needs at least one member");
        return -1;
    }
    if (replicas < 0 || replicas > m->members) {
        snprintf(err, errlen, "%d replicas per key asked for, but there are %d members "
                 "(R must be 1..%d)", replicas, m->members, m->members);
        return -1;
    }
    m->r = replicas == 0 ? (m->members < DHT_REPLICAS_DEFAULT ? m->members : DHT_REPLICAS_DEFAULT)
                         : replicas;
    m->q = m->r / 2 + 1;
    for (int p = 0; p < m->n; p++)
        m->m[p].id = hash_str(m->m[p].norm);
    for (int p = 0; p < m->n; p++)
        for (int j = 0; j < p; j++)
            if (m->m[p].id == m->m[j].id) {
                /* 2^-64 per pair; refused rather than placed ambiguously. */
                snprintf(err, errlen, "members %s and %s have the same placement hash; "
                         "change one address", m->m[j].listed, m->m[p].listed);
                return -1;
            }
    m->parts = malloc(DHT_PARTITIONS * sizeof *m->parts);
    m->nparts = calloc((size_t)m->n, sizeof *m->nparts);
    if (m->parts == NULL || m->nparts == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    place(m);
    char line[64 + DHT_MAX_MEMBERS * DHT_ADDR_MAX];
    dht_membership_describe(m, line, sizeof line);
    m->fingerprint = hash_str(line);
    return 0;
}

int dht_membership_new(const char *list, const char *self_addr, int replicas,
                       dht_membership **out, char *err, size_t errlen)
{
    *out = NULL;
    if (list == NULL || *list == '\0') {
        snprintf(err, errlen, "empty member list");
        return -1;
    }
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    if (n > DHT_MAX_MEMBERS) {
        snprintf(err, errlen, "member list has %d entries, more than the limit of %d members", n,
                 DHT_MAX_MEMBERS);
        return -1;
    }
    dht_membership *m = alloc_members(n);
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = list;
    for (int i = 0; i < n; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
        if (len == 0 || len >= sizeof item) {
            snprintf(err, errlen, "member list '%s': %s entry %d", list,
                     len == 0 ? "empty" : "overlong", i + 1);
            goto fail;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (dht_member_addr_normalise(item, m->m[i].norm, sizeof m->m[i].norm, why,
                                      sizeof why) != 0 ||
            dht_parse_hostport(item, m->m[i].listed, sizeof m->m[i].listed, why,
                               sizeof why) != 0) {
            snprintf(err, errlen, "%s", why);
            goto fail;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(m->m[j].norm, m->m[i].norm) == 0) {
                if (strcmp(m->m[j].listed, m->m[i].listed) == 0)
                    snprintf(err, errlen, "member list '%s': %s appears twice", list,
                             m->m[i].listed);
                else
                    snprintf(err, errlen,
                             "member list '%s': %s and %s are the same member (%s), "
                             "which appears twice",
                             list, m->m[j].listed, m->m[i].listed, m->m[i].norm);
                goto fail;
            }
        }
        p = comma ? comma + 1 : p + len;
    }
    if (self_addr != NULL) {
        char why[DHT_ADDR_MAX + 64], norm[DHT_ADDR_MAX];
        if (dht_member_addr_normalise(self_addr, norm, sizeof norm, why, sizeof why) != 0) {
            snprintf(err, errlen, "this node's address: %s", why);
            goto fail;
        }
        m->self = dht_membership_find(m, norm);
        if (m->self < 0) {
            snprintf(err, errlen, "this node's address %s is not in the member list '%s'",
                     self_addr, list);
            goto fail;
        }
    }
    if (finish(m, replicas, err, errlen) != 0)
        goto fail;
    *out = m;
    return 0;
fail:
    dht_membership_free(m);
    return -1;
}

int dht_membership_derive(const dht_membership *base, const char *list, int replicas,
                          dht_membership **out, char *err, size_t errlen)
{
    *out = NULL;
    dht_membership *parsed;
    if (dht_membership_new(list, NULL, replicas, &parsed, err, errlen) != 0)
        return -1;
    int extra = 0;
    for (int p = 0; p < parsed->n; p++)
        extra += find_slot(base, parsed->m[p].norm) < 0;
    if (base->n + extra > DHT_MAX_MEMBERS) {
        snprintf(err, errlen, "this process has used all %d member positions since it started "
                 "(restart it to reuse those of departed members)", DHT_MAX_MEMBERS);
        dht_membership_free(parsed);
        return -1;
    }
    dht_membership *m = alloc_members(base->n + extra);
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        dht_membership_free(parsed);
        return -1;
    }
    for (int p = 0; p < base->n; p++) {
        memcpy(m->m[p].listed, base->m[p].listed, sizeof m->m[p].listed);
        memcpy(m->m[p].norm, base->m[p].norm, sizeof m->m[p].norm);
        m->m[p].member = false;
    }
    int next = base->n;
    for (int p = 0; p < parsed->n; p++) {
        int s = find_slot(base, parsed->m[p].norm);
        if (s < 0) {
            s = next++;
            memcpy(m->m[s].listed, parsed->m[p].listed, sizeof m->m[s].listed);
            memcpy(m->m[s].norm, parsed->m[p].norm, sizeof m->m[s].norm);
        }
        m->m[s].member = true;
    }
    m->members = parsed->n;
    m->self = base->self;
    int r = parsed->r;
    dht_membership_free(parsed);
    if (finish(m, r, err, errlen) != 0) {
        dht_membership_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void dht_membership_free(dht_membership *m)
{
    if (m == NULL)
        return;
    free(m->parts);
    free(m->nparts);
    free(m);
}

int dht_membership_size(const dht_membership *m)
{
    return m->n;
}

int dht_membership_members(const dht_membership *m)
{
    return m->members;
}

bool dht_membership_is_member(const dht_membership *m, int p)
{
    return p >= 0 && p < m->n && m->m[p].member;
}

int dht_membership_self(const dht_membership *m)
{
    return m->self;
}

const char *dht_membership_addr(const dht_membership *m, int p)
{
    return p >= 0 && p < m->n ? m->m[p].listed : NULL;
}

static int find_slot(const dht_membership *m, const char *addr)
{
    char norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
    if (dht_member_addr_normalise(addr, norm, sizeof norm, why, sizeof why) != 0)
        return -1;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->m[i].norm, norm) == 0)
            return i;
    return -1;
}

int dht_membership_find(const dht_membership *m, const char *addr)
{
    int p = find_slot(m, addr);
    return p >= 0 && m->m[p].member ? p : -1;
}

int dht_membership_find_slot(const dht_membership *m, const char *addr)
{
    return find_slot(m, addr);
}

const char *dht_membership_norm(const dht_membership *m, int p)
{
    return p >= 0 && p < m->n ? m->m[p].norm : NULL;
}

uint64_t dht_membership_member_id(const dht_membership *m, int p)
{
    return p >= 0 && p < m->n ? m->m[p].id : 0;
}

int dht_membership_find_id(const dht_membership *m, uint64_t id)
{
    for (int p = 0; id != 0 && p < m->n; p++)
        if (m->m[p].id == id && m->m[p].member)
            return p;
    return -1;
}

const dht_peerset *dht_membership_partition_replicas(const dht_membership *m, uint32_t part)
{
    return &m->parts[part % DHT_PARTITIONS];
}

dht_peerset dht_membership_replicas(const dht_membership *m, int64_t key)
{
    return m->parts[dht_partition_of(key)];
}

bool dht_membership_stores(const dht_membership *m, int p, int64_t key)
{
    return p >= 0 && p < m->n && dht_peerset_has(&m->parts[dht_partition_of(key)], p);
}

int dht_membership_partition_count(const dht_membership *m, int p)
{
    return p >= 0 && p < m->n ? m->nparts[p] : 0;
}

int dht_membership_replica_count(const dht_membership *m)
{
    return m->r;
}

int dht_membership_quorum(const dht_membership *m)
{
    return m->q;
}

int dht_membership_recovery_sources(const dht_membership *m)
{
    return m->r - m->q + 1;
}

size_t dht_membership_describe(const dht_membership *m, char *buf, size_t len)
{
    const char *sorted[DHT_MAX_MEMBERS];
    int k = 0;
    for (int p = 0; p < m->n; p++)
        if (m->m[p].member)
            sorted[k++] = m->m[p].norm;
    qsort(sorted, (size_t)k, sizeof sorted[0], cmp_str);
    size_t used = (size_t)snprintf(buf, len, "replicas=%d partitions=%d members=", m->r,
                                   DHT_PARTITIONS);
    for (int p = 0; p < k; p++)
        used += (size_t)snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0,
                                 "%s%s", p ? "," : "", sorted[p]);
    return used;
}

uint64_t dht_membership_fingerprint(const dht_membership *m)
{
    return m->fingerprint;
}
