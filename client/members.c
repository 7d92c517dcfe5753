/* `client members`: see members.h. */
#include "members.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "base/util.h"

#define LIST_MAX ((size_t)DHT_MAX_MEMBERS * DHT_ADDR_MAX)

static void json_list(FILE *f, const char *const *a, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        admin_json_str(f, a[i]);
    }
    fputc(']', f);
}

static void print_json(const admin_result *res, int n, int best)
{
    const dht_stats *s = &res[best].stats;
    printf("{\"epoch\": %" PRIu64 ", \"view\": %" PRIu64 ", \"replicas\": %d, \"members\": ",
           s->epoch, s->view, s->replicas);
    json_list(stdout, s->members, s->nmembers);
    if (s->nnext > 0) {
        fputs(", \"next_members\": ", stdout);
        json_list(stdout, s->next_members, s->nnext);
        printf(", \"next_replicas\": %d", s->next_replicas);
    }
    fputs(", \"answered_by\": ", stdout);
    admin_json_str(stdout, res[best].addr);
    /* Nodes behind the answer (they catch up by themselves, or were cut
     * off), removed ones and silent ones: what an operator looks at next. */
    fputs(", \"lagging\": [", stdout);
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (!res[i].ok || res[i].stats.view >= s->view)
            continue;
        fputs(first ? "" : ", ", stdout);
        first = false;
        fputs("{\"address\": ", stdout);
        admin_json_str(stdout, res[i].addr);
        printf(", \"epoch\": %" PRIu64 ", \"view\": %" PRIu64 "}", res[i].stats.epoch,
               res[i].stats.view);
    }
    fputs("], \"removed\": [", stdout);
    first = true;
    for (int i = 0; i < n; i++) {
        if (!res[i].ok || !res[i].stats.removed)
            continue;
        fputs(first ? "" : ", ", stdout);
        first = false;
        admin_json_str(stdout, res[i].addr);
    }
    fputs("], \"unreachable\": [", stdout);
    first = true;
    for (int i = 0; i < n; i++) {
        if (res[i].ok)
            continue;
        fputs(first ? "" : ", ", stdout);
        first = false;
        fputs("{\"address\": ", stdout);
        admin_json_str(stdout, res[i].addr);
        fputs(", \"error\": ", stdout);
        admin_json_str(stdout, res[i].error);
        fputc('}', stdout);
    }
    fputs("]}\n", stdout);
}

static void print_text(const admin_result *res, int n, int best, char *list)
{
    const dht_stats *s = &res[best].stats;
    admin_join(s->members, s->nmembers, list, LIST_MAX);
    printf("epoch %" PRIu64 ": replicas=%d members=%s\n", s->epoch, s->replicas, list);
    if (s->nnext > 0) {
        admin_join(s->next_members, s->nnext, list, LIST_MAX);
        printf("changing to epoch %" PRIu64 ": replicas=%d members=%s\n", s->epoch + 1,
               s->next_replicas, list);
    }
    fflush(stdout);
    fprintf(stderr, "client: as %s reports it (view %" PRIu64 ")%s\n", res[best].addr, s->view,
            s->epoch == 0 ? "; it reports no epoch: a node of an earlier version, or one "
                            "waiting to join"
                          : "");
    for (int i = 0; i < n; i++) {
        if (!res[i].ok)
            fprintf(stderr, "client: %s did not answer: %s\n", res[i].addr, res[i].error);
        else if (res[i].stats.view < s->view && res[i].stats.epoch == 0)
            fprintf(stderr, "client: %s lags: it holds no configuration yet (waiting to be "
                            "added with --join, or of an earlier version)\n",
                    res[i].addr);
        else if (res[i].stats.view < s->view)
            fprintf(stderr, "client: %s lags: it is at view %" PRIu64 " (epoch %" PRIu64 ")\n",
                    res[i].addr, res[i].stats.view, res[i].stats.epoch);
        if (res[i].ok && res[i].stats.removed)
            fprintf(stderr, "client: %s was removed from the cluster\n", res[i].addr);
    }
}

int members_show(const dht_membership *m, int64_t deadline_ms, const dht_grpc_tls *tls, bool json)
{
    int n = dht_membership_size(m);
    const char *addrs[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        addrs[i] = dht_membership_addr(m, i);
    admin_result *res = calloc((size_t)n, sizeof *res);
    char *list = malloc(LIST_MAX);
    char err[256] = "out of memory";
    int answered = res && list ? admin_stats_all(addrs, n, tls, deadline_ms * DHT_NS_PER_MS, false,
                                                 res, err, sizeof err)
                               : -1;
    int best = answered > 0 ? admin_best(res, n) : -1;
    int rc = 0;
    if (answered < 0) {
        fprintf(stderr, "client: %s\n", err);
        rc = 1;
    } else if (best < 0) {
        fprintf(stderr, "client: no node answered Stats, so the configuration is unknown:");
        for (int i = 0; i < n; i++)
            fprintf(stderr, "%s %s: %s", i ? ";" : "", res[i].addr, res[i].error);
        fprintf(stderr, "\n");
        rc = 1;
    } else if (json) {
        print_json(res, n, best);
    } else {
        print_text(res, n, best, list);
    }
    if (res != NULL)
        admin_results_free(res, n);
    free(res);
    free(list);
    return rc;
}

/* ---- members add | remove ------------------------------------------------------- */

typedef struct {
    dht_latch latch;
    dht_transport *t;
    dht_status st;
    uint8_t *rep; /* a copy of the reply (owned) */
    size_t len;
    char error[512];
} change_wait;

static void change_done(void *arg, dht_status st, const uint8_t *rep, size_t len)
{
    change_wait *w = arg;
    w->st = st;
    if (st == DHT_OK) {
        w->rep = malloc(len > 0 ? len : 1);
        if (w->rep != NULL) {
            memcpy(w->rep, rep, len);
            w->len = len;
        } else {
            snprintf(w->error, sizeof w->error, "out of memory for the answer");
        }
    } else {
        /* The transport describes the failure only during this callback. */
        const char *why = w->t->ops->last_error ? w->t->ops->last_error(w->t) : NULL;
        snprintf(w->error, sizeof w->error, "%s", why && *why ? why : dht_status_name(st));
    }
    dht_latch_open(&w->latch);
}

/* Whether an UNAVAILABLE call surely never reached the node: the
 * connection could not be made.  Anything else (a connection that broke
 * while the node worked on the change) may have left the change done or
 * half done. */
static bool never_connected(const char *why)
{
    return strcasestr(why, "failed to connect") != NULL ||
           strcasestr(why, "connection refused") != NULL ||
           strcasestr(why, "no route to host") != NULL ||
           strcasestr(why, "name resolution") != NULL || strcasestr(why, "DNS") != NULL;
}

static const char *const UNKNOWN_HINT =
    "outcome unknown: run `members` to see the configuration; running the same command "
    "again completes or repeats it safely";

/* The node's answer: its text, and the exit status it means. */
static int answered(const char *addr, const change_wait *w)
{
    if (w->rep == NULL) {
        fprintf(stderr, "client: %s answered, but %s: %s\n", addr, w->error, UNKNOWN_HINT);
        return MEMBERS_UNKNOWN;
    }
    dht_control_msg m = {0};
    char err[200] = "";
    bool decoded = dht_control_decode(w->rep, w->len, &m, err, sizeof err) == 0;
    if (!decoded || m.type != DHT_CTL_CHANGED) {
        fprintf(stderr, "client: %s answered with %s: %s\n", addr,
                decoded ? "another message than CHANGED" : err, UNKNOWN_HINT);
        return MEMBERS_UNKNOWN;
    }
    printf("%.*s\n", (int)m.text_len, m.text);
    fflush(stdout);
    return m.ok ? MEMBERS_DONE : MEMBERS_FAILED;
}

int members_change(const dht_membership *m, dht_change_op op, const char *addr,
                   int64_t timeout_ms, const dht_grpc_tls *tls)
{
    dht_control_msg msg = {.type = DHT_CTL_CHANGE, .op = op, .addr = addr,
                           .addr_len = strlen(addr)};
    uint8_t *req = NULL;
    size_t reqlen = 0;
    if (dht_control_encode(&msg, &req, &reqlen) != 0) {
        fprintf(stderr, "client: cannot encode the change of %s\n", addr);
        return MEMBERS_FAILED;
    }
    int n = dht_membership_size(m);
    const char *addrs[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        addrs[i] = dht_membership_addr(m, i);
    dht_grpc_config gc = {.peers = addrs, .npeers = n, .workers = 1, .self = -1, .tls = tls};
    dht_grpc *g;
    char err[512];
    if (dht_grpc_start(&gc, &g, err, sizeof err) != 0) {
        fprintf(stderr, "client: %s\n", err);
        free(req);
        return MEMBERS_FAILED;
    }
    const char *verb = op == DHT_CHANGE_ADD ? "add" : "remove";
    int64_t deadline = dht_now_ns() + timeout_ms * DHT_NS_PER_MS;
    int rc = -1;
    bool maybe_sent = false; /* a node may have received it before its connection broke */
    for (int i = 0; i < n && rc < 0; i++) {
        if (dht_now_ns() >= deadline) {
            fprintf(stderr, "client: the --timeout passed before a node could be asked\n");
            break;
        }
        if (isatty(2))
            fprintf(stderr,
                    "client: asking %s to %s %s (the node answers when the change is "
                    "complete: up to about two minutes)\n",
                    addrs[i], verb, addr);
        change_wait w = {.t = dht_grpc_transport(g)};
        dht_latch_init(&w.latch);
        if (dht_transport_control(w.t, i, req, reqlen, deadline, change_done, &w) != 0) {
            dht_latch_destroy(&w.latch);
            fprintf(stderr, "client: could not send the change to %s\n", addrs[i]);
            continue;
        }
        dht_latch_wait(&w.latch);
        dht_latch_destroy(&w.latch);
        switch (w.st) {
        case DHT_OK:
            rc = answered(addrs[i], &w);
            break;
        case DHT_ERR_UNAVAILABLE:
            maybe_sent |= !never_connected(w.error);
            fprintf(stderr, "client: %s is unreachable (%s)%s\n", addrs[i], w.error,
                    i + 1 < n ? "; trying the next node" : "");
            break;
        case DHT_ERR_REMOTE:
            fprintf(stderr, "client: %s refused the change: %s\n", addrs[i], w.error);
            rc = MEMBERS_FAILED;
            break;
        case DHT_ERR_TIMEOUT:
        case DHT_ERR_SHUTDOWN:
        default:
            fprintf(stderr, "client: no answer from %s within the --timeout (%s): %s\n",
                    addrs[i], w.error, UNKNOWN_HINT);
            rc = MEMBERS_UNKNOWN;
            break;
        }
        free(w.rep);
    }
    if (rc < 0 && maybe_sent) {
        fprintf(stderr, "client: a node's connection broke while it may have been working on "
                        "the change: %s\n", UNKNOWN_HINT);
        rc = MEMBERS_UNKNOWN;
    } else if (rc < 0) {
        fprintf(stderr, "client: no node could be reached; nothing was changed\n");
        rc = MEMBERS_FAILED;
    }
    dht_grpc_stop(g);
    free(req);
    return rc;
}
