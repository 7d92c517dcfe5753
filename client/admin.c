/* dht.Admin/Stats from the client's side: see admin.h. */
#include "admin.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "net/codec.h"

/* Beyond the calls' own deadline, how long a round waits for callbacks the
 * transport owes it: the transport's sweep ends every call at its
 * deadline, so this only guards against a transport that breaks that. */
#define ROUND_SLACK_NS DHT_NS_PER_SEC

typedef struct stats_round stats_round;

typedef struct {
    stats_round *round;
    int i;
} stats_call;

/* The calls of one round.  The caller may stop waiting before every call
 * has ended (grace), so the round is shared: each call still running and
 * the caller hold a reference, and whoever leaves last frees it. */
struct stats_round {
    dht_transport *t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int ended, answered;
    int64_t first_ns; /* when the first answer came; 0: none yet */
    bool closed;      /* the caller took the results: later answers are dropped */
    admin_result *res;
    stats_call *calls;
};

static void round_free(stats_round *rd)
{
    pthread_cond_destroy(&rd->cv);
    pthread_mutex_destroy(&rd->mu);
    free(rd->res);
    free(rd->calls);
    free(rd);
}

/* Drops one reference (mu held; it is released here). */
static void round_leave_locked(stats_round *rd)
{
    bool last = --rd->refs == 0;
    pthread_mutex_unlock(&rd->mu);
    if (last)
        round_free(rd);
}

static void stats_answered(void *arg, int status, const uint8_t *resp, size_t len)
{
    stats_call *c = arg;
    stats_round *rd = c->round;
    dht_stats s;
    memset(&s, 0, sizeof s);
    char error[sizeof rd->res[0].error] = "";
    int ok = 0;
    if (status == 0 && dht_codec_decode_stats(resp, len, &s) == 0) {
        ok = 1;
    } else if (status == 0) {
        dht_codec_stats_free(&s);
        snprintf(error, sizeof error, "the Stats reply does not parse");
    } else {
        /* The transport describes the failure only during this callback. */
        const char *why = rd->t->ops->last_error ? rd->t->ops->last_error(rd->t) : NULL;
        snprintf(error, sizeof error, "%s",
                 why && *why ? why : status < 0 ? "client shutting down"
                                                : dht_grpc_status_name(status));
    }
    pthread_mutex_lock(&rd->mu);
    bool keep = !rd->closed;
    if (keep) {
        admin_result *r = &rd->res[c->i];
        r->ok = ok;
        if (ok)
            r->stats = s;
        else
            memcpy(r->error, error, sizeof r->error);
    }
    if (ok && rd->first_ns == 0)
        rd->first_ns = dht_now_ns();
    rd->answered += ok;
    rd->ended++;
    pthread_cond_broadcast(&rd->cv);
    round_leave_locked(rd);
    if (ok && !keep) /* nobody reads it any more */
        dht_codec_stats_free(&s);
}

static void abs_time(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / DHT_NS_PER_SEC);
    ts->tv_nsec = (long)(ns % DHT_NS_PER_SEC);
}

int admin_stats_on(dht_grpc *g, const int *peers, const char *const *addrs, int n,
                   int64_t timeout_ns, int64_t grace_ns, admin_result *res)
{
    memset(res, 0, (size_t)n * sizeof *res);
    for (int i = 0; i < n; i++) {
        res[i].addr = addrs[i];
        snprintf(res[i].error, sizeof res[i].error, "no answer in time");
    }
    stats_round *rd = calloc(1, sizeof *rd);
    if (rd != NULL) {
        rd->res = calloc((size_t)(n > 0 ? n : 1), sizeof *rd->res);
        rd->calls = calloc((size_t)(n > 0 ? n : 1), sizeof *rd->calls);
    }
    if (rd == NULL || rd->res == NULL || rd->calls == NULL) {
        if (rd != NULL) {
            free(rd->res);
            free(rd->calls);
            free(rd);
        }
        for (int i = 0; i < n; i++)
            snprintf(res[i].error, sizeof res[i].error, "out of memory");
        return -1;
    }
    memcpy(rd->res, res, (size_t)n * sizeof *res);
    rd->t = dht_grpc_transport(g);
    rd->refs = 1;
    pthread_mutex_init(&rd->mu, NULL);
    /* Deadlines are on the monotonic clock (dht_now_ns). */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rd->cv, &ca);
    pthread_condattr_destroy(&ca);

    int64_t deadline = dht_now_ns() + timeout_ns;
    int started = 0;
    for (int i = 0; i < n; i++) {
        rd->calls[i] = (stats_call){rd, i};
        /* The reference first: the answer may come on a worker at once. */
        pthread_mutex_lock(&rd->mu);
        rd->refs++;
        pthread_mutex_unlock(&rd->mu);
        if (dht_grpc_call_async(g, peers[i], DHT_CODEC_STATS_METHOD, "", 0, deadline,
                                stats_answered, &rd->calls[i]) == 0) {
            started++;
            continue;
        }
        pthread_mutex_lock(&rd->mu);
        rd->refs--;
        snprintf(rd->res[i].error, sizeof rd->res[i].error, "the call could not start");
        pthread_mutex_unlock(&rd->mu);
    }
    pthread_mutex_lock(&rd->mu);
    while (rd->ended < started) {
        int64_t until = deadline + ROUND_SLACK_NS;
        if (rd->first_ns != 0 && grace_ns >= 0 && rd->first_ns + grace_ns < until)
            until = rd->first_ns + grace_ns;
        if (dht_now_ns() >= until)
            break;
        struct timespec ts;
        abs_time(until, &ts);
        pthread_cond_timedwait(&rd->cv, &rd->mu, &ts);
    }
    /* The results move to the caller, decoded strings included. */
    rd->closed = true;
    memcpy(res, rd->res, (size_t)n * sizeof *res);
    int answered = 0;
    for (int i = 0; i < n; i++)
        answered += res[i].ok;
    round_leave_locked(rd);
    return answered;
}

int admin_stats_all(const char *const *addrs, int n, const dht_grpc_tls *tls, int64_t timeout_ns,
                    bool first, admin_result *res, char *err, size_t errlen)
{
    memset(res, 0, (size_t)n * sizeof *res);
    for (int i = 0; i < n; i++) {
        res[i].addr = addrs[i];
        snprintf(res[i].error, sizeof res[i].error, "no call made");
    }
    if (n > DHT_MAX_MEMBERS) {
        snprintf(err, errlen, "more than %d nodes", DHT_MAX_MEMBERS);
        return -1;
    }
    dht_grpc_config gc = {.peers = addrs, .npeers = n, .workers = 1, .self = -1, .tls = tls};
    dht_grpc *g;
    if (dht_grpc_start(&gc, &g, err, errlen) != 0)
        return -1;
    int peers[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        peers[i] = i;
    int answered = admin_stats_on(g, peers, addrs, n, timeout_ns, first ? 0 : -1, res);
    if (answered < 0)
        snprintf(err, errlen, "out of memory");
    /* With the answers in hand, the others are not worth waiting for (an
     * unreachable node would hold the stop until the deadline). */
    dht_grpc_cancel_raw_calls(g);
    dht_grpc_stop(g); /* every callback has run when it returns */
    return answered;
}

void admin_results_free(admin_result *res, int n)
{
    for (int i = 0; i < n; i++)
        dht_codec_stats_free(&res[i].stats);
}

int admin_best(const admin_result *res, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (res[i].ok && (best < 0 || res[i].stats.view > res[best].stats.view))
            best = i;
    return best;
}

void admin_join(const char *const *addrs, int n, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? "," : "", addrs[i]);
}

void admin_json_str(FILE *f, const char *s)
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
    admin_json_str(f, r->addr);
    if (!r->ok) {
        fputs(", \"reachable\": false, \"error\": ", f);
        admin_json_str(f, r->error);
        fputs("}\n", f);
        return;
    }
    const dht_stats *s = &r->stats;
    fputs(", \"reachable\": true, \"self\": ", f);
    admin_json_str(f, s->self);
    fprintf(f, ", \"keys\": %" PRIu64 ", \"members\": [", s->keys);
    for (int i = 0; i < s->nmembers; i++) {
        if (i)
            fputs(", ", f);
        admin_json_str(f, s->members[i]);
    }
    fprintf(f,
            "], \"replicas\": %d, \"fingerprint\": \"%016" PRIx64
            "\", \"cluster_id\": \"%016" PRIx64 "\", \"partitions\": %d, \"partitions_recovering\": %d, \"recovering\": %s, "
            "\"log_bytes\": %" PRId64,
            s->replicas, s->fingerprint, s->cluster_id, s->partitions, s->partitions_recovering,
            s->partitions_recovering > 0 ? "true" : "false", s->log_bytes);
    /* Membership changes: the view, and the configuration being moved to
     * ([] and 0 when stable). */
    fprintf(f, ", \"epoch\": %" PRIu64 ", \"view\": %" PRIu64 ", \"next_members\": [", s->epoch,
            s->view);
    for (int i = 0; i < s->nnext; i++) {
        if (i)
            fputs(", ", f);
        admin_json_str(f, s->next_members[i]);
    }
    fprintf(f, "], \"next_replicas\": %d, \"removed\": %s}\n", s->next_replicas,
            s->removed ? "true" : "false");
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

int admin_legacy_replicas(const dht_membership *m, const admin_result *res, int *replicas,
                          uint64_t *fingerprint, char *err, size_t errlen)
{
    *fingerprint = 0;
    int n = dht_membership_size(m);
    const char *norms[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        norms[i] = dht_membership_norm(m, i);
    const size_t linelen = DHT_MAX_MEMBERS * DHT_ADDR_MAX;
    char *ours = malloc(linelen), *theirs = malloc(linelen);
    int rc = 0;
    if (ours == NULL || theirs == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
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
