/* dht.Admin/Stats from the client's side: see admin.h. */
#include "admin.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "net/codec.h"

/* The calls of one admin_stats_all: how many ended, how many answered. */
typedef struct {
    dht_transport *t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ended, answered;
} stats_round;

typedef struct {
    stats_round *round;
    admin_result *r;
} stats_call;

static void stats_answered(void *arg, int status, const uint8_t *resp, size_t len)
{
    stats_call *c = arg;
    admin_result *r = c->r;
    int ok = 0;
    if (status == 0 && dht_codec_decode_stats(resp, len, &r->stats) == 0) {
        ok = 1;
    } else if (status == 0) {
        dht_codec_stats_free(&r->stats);
        snprintf(r->error, sizeof r->error, "the Stats reply does not parse");
    } else {
        const char *why = c->round->t->ops->last_error(c->round->t);
        snprintf(r->error, sizeof r->error, "%s",
                 why && *why ? why : status < 0 ? "client shutting down"
                                                : dht_grpc_status_name(status));
    }
    pthread_mutex_lock(&c->round->mu);
    r->ok = ok;
    c->round->answered += ok;
    c->round->ended++;
    pthread_cond_broadcast(&c->round->cv);
    pthread_mutex_unlock(&c->round->mu);
}

int admin_stats_all(const char *const *addrs, int n, const dht_grpc_tls *tls, int64_t timeout_ns,
                    bool first, admin_result *res, char *err, size_t errlen)
{
    memset(res, 0, (size_t)n * sizeof *res);
    for (int i = 0; i < n; i++) {
        res[i].addr = addrs[i];
        snprintf(res[i].error, sizeof res[i].error, "no answer yet");
    }
    dht_grpc_config gc = {.peers = addrs, .npeers = n, .workers = 1, .self = -1, .tls = tls};
    dht_grpc *g;
    stats_call *calls = calloc((size_t)n, sizeof *calls);
    if (calls == NULL || dht_grpc_start(&gc, &g, err, errlen) != 0) {
        if (calls == NULL)
            snprintf(err, errlen, "out of memory");
        free(calls);
        return -1;
    }
    stats_round round = {.t = dht_grpc_transport(g)};
    pthread_mutex_init(&round.mu, NULL);
    pthread_cond_init(&round.cv, NULL);
    int64_t deadline = dht_now_ns() + timeout_ns;
    int started = 0;
    for (int i = 0; i < n; i++) {
        calls[i] = (stats_call){&round, &res[i]};
        if (dht_grpc_call_async(g, i, DHT_CODEC_STATS_METHOD, "", 0, deadline, stats_answered,
                                &calls[i]) == 0)
            started++;
        else
            snprintf(res[i].error, sizeof res[i].error, "the call could not start");
    }
    pthread_mutex_lock(&round.mu);
    while (round.ended < started && !(first && round.answered > 0))
        pthread_cond_wait(&round.cv, &round.mu);
    int answered = round.answered;
    pthread_mutex_unlock(&round.mu);
    /* With the first answer in hand, the others are not worth waiting for
     * (an unreachable node would hold the stop until the deadline). */
    dht_grpc_cancel_raw_calls(g);
    dht_grpc_stop(g); /* every callback has run when it returns */
    pthread_cond_destroy(&round.cv);
    pthread_mutex_destroy(&round.mu);
    free(calls);
    return answered;
}

void admin_results_free(admin_result *res, int n)
{
    for (int i = 0; i < n; i++)
        dht_codec_stats_free(&res[i].stats);
}

/* s as a JSON string. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void admin_print_json(FILE *f, const admin_result *r)
{
    fputs("{\"address\": ", f);
    json_str(f, r->addr);
    if (!r->ok) {
        fputs(", \"reachable\": false, \"error\": ", f);
        json_str(f, r->error);
        fputs("}\n", f);
        return;
    }
    const dht_stats *s = &r->stats;
    fputs(", \"reachable\": true, \"self\": ", f);
    json_str(f, s->self);
    fprintf(f, ", \"keys\": %" PRIu64 ", \"members\": [", s->keys);
    for (int i = 0; i < s->nmembers; i++) {
        if (i)
            fputs(", ", f);
        json_str(f, s->members[i]);
    }
    fprintf(f,
            "], \"replicas\": %d, \"fingerprint\": \"%016" PRIx64
            "\", \"cluster_id\": \"%016" PRIx64 "\", \"partitions\": %d, \"partitions_recovering\": %d, \"recovering\": %s, "
            "\"log_bytes\": %" PRId64 "}\n",
            s->replicas, s->fingerprint, s->cluster_id, s->partitions, s->partitions_recovering,
            s->partitions_recovering > 0 ? "true" : "false", s->log_bytes);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The members' normalised addresses, sorted and comma-separated. */
static void member_line(const char *const *addrs, int n, char *out, size_t len)
{
    const char *sorted[DHT_MAX_MEMBERS];
    memcpy(sorted, addrs, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? "," : "", sorted[i]);
}

int admin_learn_replicas(const dht_membership *m, const dht_grpc_tls *tls, int64_t timeout_ns,
                         int *replicas, uint64_t *fingerprint, char *err, size_t errlen)
{
    *fingerprint = 0;
    int n = dht_membership_size(m);
    const char *addrs[DHT_MAX_MEMBERS], *norms[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++) {
        addrs[i] = dht_membership_addr(m, i);
        norms[i] = dht_membership_norm(m, i);
    }
    admin_result *res = calloc((size_t)n, sizeof *res);
    const size_t linelen = DHT_MAX_MEMBERS * DHT_ADDR_MAX;
    char *ours = malloc(linelen), *theirs = malloc(linelen);
    int answered = res && ours && theirs
                       ? admin_stats_all(addrs, n, tls, timeout_ns, true, res, err, errlen)
                       : -1;
    int rc = 0;
    if (answered < 0) {
        rc = -1;
        if (res == NULL || ours == NULL || theirs == NULL)
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    member_line(norms, n, ours, linelen);
    const admin_result *first = NULL;
    for (int i = 0; i < n && rc == 0; i++) {
        const admin_result *r = &res[i];
        if (!r->ok)
            continue;
        member_line(r->stats.members, r->stats.nmembers, theirs, linelen);
        if (strcmp(ours, theirs) != 0) {
            snprintf(err, errlen,
                     "the servers' member set is not this client's: %s has members=%s, the "
                     "client was given %s (--servers or MEMBERS); give the client the nodes' list",
                     r->addr, theirs, ours);
            rc = -1;
        } else if (r->stats.replicas < 1 || r->stats.replicas > n) {
            snprintf(err, errlen, "%s reports replicas=%d, which %d members cannot have",
                     r->addr, r->stats.replicas, n);
            rc = -1;
        } else if (first != NULL && r->stats.replicas != first->stats.replicas) {
            snprintf(err, errlen,
                     "the servers disagree on R: %s has replicas=%d, %s replicas=%d; restart "
                     "them with the same --replicas",
                     first->addr, first->stats.replicas, r->addr, r->stats.replicas);
            rc = -1;
        } else if (first == NULL) {
            first = r;
        }
    }
    if (rc == 0 && first != NULL) {
        *replicas = first->stats.replicas;
        *fingerprint = first->stats.fingerprint;
    } else if (rc == 0) {
        *replicas = n < DHT_REPLICAS_DEFAULT ? n : DHT_REPLICAS_DEFAULT;
        const char *why = n > 0 ? res[0].error : "";
        fprintf(stderr,
                "client: warning: no server answered Stats (%s: %s); assuming %d replicas per "
                "key (the default, min(3, N)): pass --replicas or REPLICAS if the nodes run "
                "with another\n",
                n > 0 ? res[0].addr : "", why, *replicas);
    }
out:
    if (res != NULL)
        admin_results_free(res, n);
    free(res);
    free(ours);
    free(theirs);
    return rc;
}

int admin_check_fingerprint(const dht_membership *m, uint64_t theirs, const char *who, char *err,
                            size_t errlen)
{
    uint64_t ours = dht_membership_fingerprint(m);
    if (theirs == 0 || theirs == ours)
        return 0;
    char line[512];
    size_t need = dht_membership_describe(m, line, sizeof line);
    snprintf(err, errlen,
             "%s places keys by configuration %016" PRIx64 ", this client by %016" PRIx64
             " (%s%s): another partitioning of the same members and R (another version of "
             "the store?)",
             who, theirs, ours, line, need >= sizeof line ? "..." : "");
    return -1;
}
