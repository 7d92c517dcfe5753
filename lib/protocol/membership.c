#include "protocol/membership.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct dht_membership {
    int n;
    int self; /* -1: not a member */
    struct {
        char listed[DHT_ADDR_MAX]; /* as dht_parse_hostport wrote it */
        char norm[DHT_ADDR_MAX];   /* dht_member_addr_normalise's form */
    } m[];
};

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
        m->self = -1;
    }
    return m;
}

int dht_membership_new(const char *list, const char *self_addr, dht_membership **out,
                       char *err, size_t errlen)
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
    *out = m;
    return 0;
fail:
    free(m);
    return -1;
}

void dht_membership_free(dht_membership *m)
{
    free(m);
}

int dht_membership_size(const dht_membership *m)
{
    return m->n;
}

int dht_membership_self(const dht_membership *m)
{
    return m->self;
}

const char *dht_membership_addr(const dht_membership *m, int p)
{
    return p >= 0 && p < m->n ? m->m[p].listed : NULL;
}

int dht_membership_find(const dht_membership *m, const char *addr)
{
    char norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
    if (dht_member_addr_normalise(addr, norm, sizeof norm, why, sizeof why) != 0)
        return -1;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->m[i].norm, norm) == 0)
            return i;
    return -1;
}

dht_peerset dht_membership_replicas(const dht_membership *m, int64_t key)
{
    (void)key; /* every member replicates every key, for now */
    dht_peerset s = {{0}};
    for (int p = 0; p < m->n; p++)
        dht_peerset_add(&s, p);
    return s;
}

int dht_membership_replica_count(const dht_membership *m)
{
    return m->n;
}

int dht_membership_quorum(const dht_membership *m)
{
    return dht_membership_replica_count(m) / 2 + 1;
}

int dht_membership_recovery_sources(const dht_membership *m)
{
    return dht_membership_replica_count(m) - dht_membership_quorum(m) + 1;
}
