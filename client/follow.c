/* Following the nodes' configuration: see follow.h. */
#include "follow.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "base/log.h"
#include "base/util.h"

/* How long a Stats round waits for the other nodes once one has answered:
 * all of them usually answer within a millisecond or two, and one that
 * does not (stopped, partitioned) must not hold up every start-up and
 * reload until the deadline.  Picking a lagging node's view costs little:
 * a refusal brings the next reload. */
#define GRACE_NS (100 * DHT_NS_PER_MS)
#define RELOAD_TIMEOUT_NS DHT_NS_PER_SEC
#define RELOAD_MIN_GAP_NS (100 * DHT_NS_PER_MS)
#define RELOAD_PERIOD_NS (2 * DHT_NS_PER_SEC)
/* A member list as text: every member at its longest. */
#define LIST_MAX ((size_t)DHT_MAX_MEMBERS * DHT_ADDR_MAX)

/* What a node's public service answers (UNAVAILABLE) when it serves
 * nothing: lib/node/node.c's words, found in the transport's
 * "UNAVAILABLE: ..." text.  Such a node is no use to a --via client until
 * its own Stats say it is a member again. */
static const char *const SERVES_NOTHING[] = {"this node was removed from the cluster",
                                             "this node is joining the cluster"};

/* The --via follower's state (see follow.h). */
typedef struct {
    int nlisted; /* transport peers 0..nlisted-1: the listed nodes */
    /* Everything below is under mu: calls read and mark it on transport
     * threads while the reload thread rewrites it. */
    pthread_mutex_t mu;
    int npeers;                   /* transport peers known: listed, then added */
    char *added[DHT_MAX_MEMBERS]; /* owned: the address of each added peer (>= nlisted) */
    /* owned: each listed node's own address as its Stats last gave it
     * (self): the members' names, which the listed one need not be (a
     * host name for an address), so a listed member is known as one. */
    char *self[DHT_MAX_MEMBERS];
    bool known;                   /* a node reported an epoch: members is the cluster's */
    uint64_t epoch, view;         /* of the newest configuration learned */
    dht_peerset members;          /* peers in it (both configurations while changing) */
    dht_peerset refused;          /* peers that said they serve nothing (removed, joining) */
    dht_peerset told;             /* listed peers said to be skipped, on stderr */
    int ring[DHT_MAX_MEMBERS];    /* the peers calls may go to, in peer order */
    int nring;                    /* >= 1 once made (follow_via_new) */
} via_state;

struct follow {
    follow_config cfg;
    dht_transport *t;
    dht_membership *base; /* owned: the seeds, the transport's first peers */
    via_state *via;       /* owned; NULL for the fan-out client's follower */
    /* The newest view built (a reference of ours).  Its newest membership
     * holds every position handed out so far, so the next configuration
     * is derived from it.  Only the reload thread touches it once started
     * (before, the caller of follow_new). */
    dht_view *view;
    dht_coord *coord;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, requested; /* under mu */
    /* A refusal asked for a reload the thread has not taken yet: refusals
     * come in bursts (every request of a stale view), and only the first
     * of a burst needs the lock. */
    atomic_bool pending;
    uint64_t warned_view; /* the last view whose build (--via: adding) failure was reported */
    char *list;           /* LIST_MAX bytes of scratch for the thread */
};

static const dht_membership *newest(const dht_view *v)
{
    return dht_view_next(v) ? dht_view_next(v) : dht_view_current(v);
}

/* The view the Stats answer s describes, over the positions of book (the
 * newest membership so far), with new members added to the transport at
 * the positions the derivation gave them.  0 with *out, or -1 with err. */
static int build_view(follow *f, const dht_membership *book, const dht_stats *s, dht_view **out,
                      char *err, size_t errlen)
{
    dht_membership *cur = NULL, *next = NULL;
    *out = NULL;
    if (s->replicas < 1 || s->nmembers < 1 || (s->nnext > 0 && s->next_replicas < 1)) {
        snprintf(err, errlen, "its answer names no valid configuration (replicas=%d, %d members)",
                 s->replicas, s->nmembers);
        return -1;
    }
    admin_join(s->members, s->nmembers, f->list, LIST_MAX);
    if (dht_membership_derive(book, f->list, s->replicas, &cur, err, errlen) != 0)
        return -1;
    if (s->nnext > 0) {
        admin_join(s->next_members, s->nnext, f->list, LIST_MAX);
        if (dht_membership_derive(cur, f->list, s->next_replicas, &next, err, errlen) != 0) {
            dht_membership_free(cur);
            return -1;
        }
    }
    /* Positions below book's size are the transport's already; add_peer
     * returns the existing index for an address it has (e.g. from an
     * earlier attempt that failed half-way), so every new one is checked. */
    const dht_membership *nm = next ? next : cur;
    for (int p = dht_membership_size(book); p < dht_membership_size(nm); p++) {
        int q = dht_transport_add_peer(f->t, dht_membership_addr(nm, p));
        if (q != p) {
            snprintf(err, errlen,
                     "new member %s got transport position %d, its configuration position %d",
                     dht_membership_addr(nm, p), q, p);
            dht_membership_free(cur);
            dht_membership_free(next);
            return -1;
        }
    }
    dht_view *v = dht_view_new(s->epoch, cur, next, true); /* owns both, even on failure */
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (dht_view_number(v) != s->view) {
        snprintf(err, errlen, "its answer is inconsistent: view %" PRIu64 " at epoch %" PRIu64
                 " %s a next configuration", s->view, s->epoch, s->nnext ? "with" : "without");
        dht_view_unref(v);
        return -1;
    }
    /* Both sides must place keys alike, or every request is refused. */
    if (s->fingerprint != 0 && s->fingerprint != dht_view_fingerprint(v)) {
        char line[512];
        size_t need = dht_membership_describe(newest(v), line, sizeof line);
        snprintf(err, errlen,
                 "it places keys by configuration %016" PRIx64 ", this client by %016" PRIx64
                 " (%s%s): another partitioning of the same members and R (another version "
                 "of the store?)",
                 s->fingerprint, dht_view_fingerprint(v), line, need >= sizeof line ? "..." : "");
        dht_view_unref(v);
        return -1;
    }
    *out = v;
    return 0;
}

/* "epoch E: replicas=R members=..." (and the next configuration while
 * joint), for the notices. */
static void describe_view(const dht_view *v, char *out, size_t len)
{
    char cur[512], next[512] = "";
    dht_membership_describe(dht_view_current(v), cur, sizeof cur);
    if (dht_view_next(v) != NULL)
        dht_membership_describe(dht_view_next(v), next, sizeof next);
    if (dht_view_joint(v))
        snprintf(out, len, "epoch %" PRIu64 ": %s; changing to epoch %" PRIu64 ": %s",
                 dht_view_epoch(v), cur, dht_view_epoch(v) + 1, next);
    else
        snprintf(out, len, "epoch %" PRIu64 ": %s", dht_view_epoch(v), cur);
}

static void announce(follow *f, const dht_view *v)
{
    char what[1100];
    describe_view(v, what, sizeof what);
    if (!f->cfg.announce) {
        DHT_INFO("configuration now %s", what);
        return;
    }
    char ts[40];
    dht_log_timestamp(ts, sizeof ts);
    fprintf(stderr, "%s [client %d] notice: the nodes' configuration is now %s\n", ts,
            (int)getpid(), what);
}

static void follow_free_parts(follow *f)
{
    if (f->via != NULL) {
        for (int p = 0; p < DHT_MAX_MEMBERS; p++) {
            free(f->via->added[p]);
            free(f->via->self[p]);
        }
        pthread_mutex_destroy(&f->via->mu);
        free(f->via);
    }
    dht_view_unref(f->view);
    dht_membership_free(f->base);
    free(f->list);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* The first view when the nodes report no epoch (or none answered): the
 * list with R (given, or learned as before configurations changed). */
static int legacy_view(follow *f, const admin_result *res, dht_view **out)
{
    char err[1024];
    int n = dht_membership_size(f->base);
    if (f->cfg.replicas > n) {
        fprintf(stderr, "client: --replicas/REPLICAS %d is more than the %d servers listed\n",
                f->cfg.replicas, n);
        return 2;
    }
    int r = f->cfg.replicas;
    uint64_t theirs = 0;
    if (r == 0 && admin_legacy_replicas(f->base, res, &r, &theirs, err, sizeof err) != 0) {
        fprintf(stderr, "client: %s\n", err);
        return 1;
    }
    const char *addrs[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        addrs[i] = dht_membership_addr(f->base, i);
    admin_join(addrs, n, f->list, LIST_MAX);
    dht_membership *m;
    if (dht_membership_derive(f->base, f->list, r, &m, err, sizeof err) != 0) {
        fprintf(stderr, "client: %s\n", err);
        return 1;
    }
    if (admin_check_fingerprint(m, theirs, "the servers", err, sizeof err) != 0) {
        fprintf(stderr, "client: %s\n", err);
        dht_membership_free(m);
        return 1;
    }
    *out = dht_view_new(1, m, NULL, true);
    if (*out == NULL) {
        fprintf(stderr, "client: out of memory\n");
        return 1;
    }
    return 0;
}

/* The parts both kinds of follower have (f zeroed, list LIST_MAX bytes;
 * f takes both and base). */
static void follow_init(follow *f, const follow_config *cfg, dht_membership *base, char *list)
{
    f->cfg = *cfg;
    f->t = dht_grpc_transport(cfg->g);
    f->base = base;
    f->list = list;
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are dht_now_ns */
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&f->pending, false);
}

int follow_new(const follow_config *cfg, dht_membership *base, follow **out)
{
    *out = NULL;
    follow *f = calloc(1, sizeof *f);
    char *list = malloc(LIST_MAX);
    int n = dht_membership_size(base);
    admin_result *res = calloc((size_t)n, sizeof *res);
    if (f == NULL || list == NULL || res == NULL) {
        fprintf(stderr, "client: out of memory\n");
        free(f);
        free(list);
        free(res);
        dht_membership_free(base);
        return 1;
    }
    follow_init(f, cfg, base, list);

    int peers[DHT_MAX_MEMBERS];
    const char *addrs[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++) {
        peers[i] = i;
        addrs[i] = dht_membership_addr(base, i);
    }
    int answered = admin_stats_on(cfg->g, peers, addrs, n, cfg->timeout_ns, GRACE_NS, res);
    int best = admin_best(res, n);
    int rc = 0;
    if (answered < 0) {
        fprintf(stderr, "client: out of memory\n");
        rc = 1;
    } else if (best >= 0 && res[best].stats.epoch >= 1) {
        const dht_stats *s = &res[best].stats;
        char err[1024];
        if (cfg->replicas != 0 && cfg->replicas != s->replicas) {
            fprintf(stderr,
                    "client: --replicas/REPLICAS %d is not the nodes' R: %s reports "
                    "replicas=%d (epoch %" PRIu64 "); leave it out and the client learns it\n",
                    cfg->replicas, res[best].addr, s->replicas, s->epoch);
            rc = 1;
        } else if (build_view(f, base, s, &f->view, err, sizeof err) != 0) {
            fprintf(stderr, "client: the configuration %s reports: %s\n", res[best].addr, err);
            rc = 1;
        }
    } else {
        rc = legacy_view(f, res, &f->view);
    }
    admin_results_free(res, n);
    free(res);
    if (rc != 0) {
        follow_free_parts(f);
        return rc;
    }
    *out = f;
    return 0;
}

dht_view *follow_view(follow *f)
{
    return dht_view_ref(f->view);
}

void follow_refused(void *arg)
{
    follow *f = arg;
    if (atomic_exchange(&f->pending, true))
        return;
    pthread_mutex_lock(&f->mu);
    f->requested = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* One reload: the newest view that the members and seeds report, to the
 * coordinator if it is newer than ours. */
static void reload(follow *f)
{
    const dht_view *v = f->view;
    const dht_membership *book = newest(v), *cur = dht_view_current(v), *next = dht_view_next(v);
    int nbase = dht_membership_size(f->base), n = 0;
    int peers[DHT_MAX_MEMBERS];
    const char *addrs[DHT_MAX_MEMBERS];
    for (int p = 0; p < dht_membership_size(book); p++)
        if (p < nbase || dht_membership_is_member(cur, p) ||
            (next != NULL && dht_membership_is_member(next, p))) {
            peers[n] = p;
            addrs[n++] = dht_membership_addr(book, p);
        }
    admin_result *res = calloc((size_t)n, sizeof *res);
    if (res == NULL)
        return; /* the next reload tries again */
    admin_stats_on(f->cfg.g, peers, addrs, n, RELOAD_TIMEOUT_NS, GRACE_NS, res);
    int best = admin_best(res, n);
    const dht_stats *s = best >= 0 ? &res[best].stats : NULL;
    uint64_t ours = dht_view_number(v);
    /* Same number, other fingerprint: our first view was a guess (no node
     * answered at start) or the nodes were restarted differently; theirs
     * is the truth either way. */
    bool newer = s != NULL && s->epoch >= 1 &&
                 (s->view > ours ||
                  (s->view == ours && s->fingerprint != 0 &&
                   s->fingerprint != dht_view_fingerprint(v)));
    if (newer) {
        char err[1024];
        dht_view *nv;
        if (build_view(f, book, s, &nv, err, sizeof err) != 0) {
            if (f->warned_view != s->view) { /* once per view, not every reload */
                f->warned_view = s->view;
                fprintf(stderr,
                        "client: warning: cannot follow the configuration %s reports (view "
                        "%" PRIu64 "): %s; carrying on with view %" PRIu64 "\n",
                        res[best].addr, s->view, err, ours);
            }
        } else if (dht_coord_set_view(f->coord, nv) != 0) {
            /* Cannot happen: build_view added every position. */
            fprintf(stderr, "client: warning: the coordinator refused view %" PRIu64 "\n",
                    s->view);
            dht_view_unref(nv);
        } else {
            dht_view_unref(f->view);
            f->view = nv;
            announce(f, nv);
        }
    }
    admin_results_free(res, n);
    free(res);
}

/* ---- --via -------------------------------------------------------------- */

/* Peer p's address (v->mu held, or p < nlisted). */
static const char *via_addr(const follow *f, int p)
{
    if (p < f->via->nlisted)
        return dht_membership_addr(f->base, p);
    return f->via->added[p] != NULL ? f->via->added[p] : "?";
}

static void peerset_del(dht_peerset *s, int p)
{
    s->w[p >> 6] &= ~(UINT64_C(1) << (p & 63));
}

/* A notice on stderr, as the fan-out follower's (announce); unless always,
 * only when the follower announces, else logged at info. */
static void say(const follow *f, bool always, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!always && !f->cfg.announce) {
        DHT_INFO("%s", text);
        return;
    }
    char ts[40];
    dht_log_timestamp(ts, sizeof ts);
    fprintf(stderr, "%s [client %d] notice: %s\n", ts, (int)getpid(), text);
}

/* Remakes the ring from what is known (v->mu held; on a transport thread
 * too, so it prints at most a line or two, and only on a change).  The
 * listed nodes that may be used come first and alone: they are where the
 * user sent the load, and today's rotation among them stays as it was.
 * Only when none of them may be used (all removed, or none ever a member)
 * do the other members take over.  With nothing better, the listed nodes
 * as before. */
static void via_recompute(follow *f)
{
    via_state *v = f->via;
    dht_peerset usable = {{0}};
    for (int p = 0; p < v->npeers; p++)
        if ((v->known ? dht_peerset_has(&v->members, p) : p < v->nlisted) &&
            !dht_peerset_has(&v->refused, p))
            dht_peerset_add(&usable, p);
    int ring[DHT_MAX_MEMBERS], n = 0;
    for (int p = 0; p < v->nlisted; p++)
        if (dht_peerset_has(&usable, p))
            ring[n++] = p;
    bool listed_left = n > 0;
    for (int p = v->nlisted; !listed_left && p < v->npeers; p++)
        if (dht_peerset_has(&usable, p))
            ring[n++] = p;
    for (int p = 0; n == 0 && p < v->nlisted; p++)
        ring[n++] = p;
    bool changed = n != v->nring || memcmp(ring, v->ring, (size_t)n * sizeof ring[0]) != 0;
    bool first = v->nring == 0;
    memcpy(v->ring, ring, (size_t)n * sizeof ring[0]);
    v->nring = n;
    /* Once per listed node that calls now skip (again after it was used
     * again): the user named it, so a silent detour would puzzle. */
    bool skipping = false;
    for (int p = 0; p < v->nlisted; p++) {
        bool used = false;
        for (int i = 0; i < n && !used; i++)
            used = ring[i] == p;
        if (used) {
            peerset_del(&v->told, p);
            continue;
        }
        skipping = true;
        if (dht_peerset_has(&v->told, p))
            continue;
        dht_peerset_add(&v->told, p);
        if (v->known && !dht_peerset_has(&v->members, p))
            say(f, true, "--via node %s is not a member of the cluster (epoch %" PRIu64
                "): calls skip it while the cluster has other members", via_addr(f, p),
                v->epoch);
        else
            say(f, true, "--via node %s says it serves nothing (removed from the cluster, or "
                "not yet a member): calls skip it while the cluster has other members",
                via_addr(f, p));
    }
    /* Where the load goes, when that is not simply the listed nodes. */
    if (changed && !first && (skipping || n != v->nlisted)) {
        char list[4096];
        size_t used = 0;
        list[0] = '\0';
        for (int i = 0; i < n && used < sizeof list; i++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? "," : "",
                                     via_addr(f, ring[i]));
        say(f, false, "--via calls now go to %s", list);
    }
}

/* "epoch E: replicas=R members=A,B; changing to epoch E+1: ..." of a
 * Stats answer, into f->list (the reload thread's). */
static void describe_stats(follow *f, const dht_stats *s, char *out, size_t len)
{
    admin_join(s->members, s->nmembers, f->list, LIST_MAX);
    int used = snprintf(out, len, "epoch %" PRIu64 ": replicas=%d members=%s", s->epoch,
                        s->replicas, f->list);
    if (s->nnext > 0 && used >= 0 && (size_t)used < len) {
        admin_join(s->next_members, s->nnext, f->list, LIST_MAX);
        snprintf(out + used, len - (size_t)used, "; changing to epoch %" PRIu64
                 ": replicas=%d members=%s", s->epoch + 1, s->next_replicas, f->list);
    }
}

/* One round: the Stats of the listed nodes and the members known; the
 * highest view's members (added to the transport when new) become the
 * nodes calls may go to.  A node's own answer also says whether it serves
 * (removed: no; an epoch: yes, e.g. a joining node that became a member).
 * quiet: the first round, whose configuration is no change to announce. */
static void via_reload(follow *f, int64_t timeout_ns, bool quiet)
{
    via_state *v = f->via;
    int peers[DHT_MAX_MEMBERS], n = 0;
    const char *addrs[DHT_MAX_MEMBERS];
    pthread_mutex_lock(&v->mu);
    /* The strings stay: listed ones are base's, added ones are freed
     * only with the follower. */
    for (int p = 0; p < v->npeers; p++)
        if (p < v->nlisted || dht_peerset_has(&v->members, p)) {
            peers[n] = p;
            addrs[n++] = via_addr(f, p);
        }
    bool known = v->known;
    uint64_t ours = v->view;
    pthread_mutex_unlock(&v->mu);
    admin_result *res = calloc((size_t)n, sizeof *res);
    if (res == NULL)
        return; /* the next reload tries again */
    admin_stats_on(f->cfg.g, peers, addrs, n, timeout_ns, GRACE_NS, res);
    int best = admin_best(res, n);
    const dht_stats *s = best >= 0 ? &res[best].stats : NULL;
    /* No epoch: nodes of an earlier version (or joining ones), which say
     * nothing of the members.  A lower view: a lagging node. */
    if (s != NULL && (s->epoch < 1 || s->nmembers < 1 || (known && s->view < ours)))
        s = NULL;
    dht_peerset members = {{0}};
    int at[2 * DHT_MAX_MEMBERS], nat = 0;
    const char *name[2 * DHT_MAX_MEMBERS];
    for (int k = 0; s != NULL && k < s->nmembers + s->nnext; k++) {
        const char *a = k < s->nmembers ? s->members[k] : s->next_members[k - s->nmembers];
        /* Unlocked: add_peer is safe against concurrent sends, and only
         * this thread adds.  An address it has already gives its index. */
        int q = dht_transport_add_peer(f->t, a);
        if (q < 0 || q >= DHT_MAX_MEMBERS) {
            if (f->warned_view != s->view) { /* once per view, not every reload */
                f->warned_view = s->view;
                fprintf(stderr, "client: warning: cannot connect to member %s (a bad address, "
                        "or more than %d nodes): --via calls skip it\n", a, DHT_MAX_MEMBERS);
            }
            continue;
        }
        dht_peerset_add(&members, q);
        at[nat] = q;
        name[nat++] = a;
    }
    char what[1100] = "";
    bool announce = s != NULL && !quiet && (!known || s->view != ours);
    if (announce)
        describe_stats(f, s, what, sizeof what);
    pthread_mutex_lock(&v->mu);
    for (int i = 0; i < n; i++) {
        if (!res[i].ok)
            continue;
        int p = peers[i];
        if (res[i].stats.removed)
            dht_peerset_add(&v->refused, p);
        else if (res[i].stats.epoch >= 1)
            peerset_del(&v->refused, p);
        const char *self = res[i].stats.self;
        if (p < v->nlisted && self != NULL && *self &&
            (v->self[p] == NULL || strcmp(v->self[p], self) != 0)) {
            char *copy = strdup(self);
            if (copy != NULL) { /* else the old name (or none) until the next round */
                free(v->self[p]);
                v->self[p] = copy;
            }
        }
    }
    /* Remembered, not only from this round: a listed member that is down
     * stays one (its calls fail over as before) rather than be skipped. */
    for (int p = 0; s != NULL && p < v->nlisted; p++)
        for (int k = 0; v->self[p] != NULL && k < s->nmembers + s->nnext; k++)
            if (strcmp(v->self[p], k < s->nmembers ? s->members[k]
                                                   : s->next_members[k - s->nmembers]) == 0)
                dht_peerset_add(&members, p);
    for (int i = 0; i < nat; i++) {
        int q = at[i];
        if (q >= v->npeers)
            v->npeers = q + 1;
        if (q >= v->nlisted && v->added[q] == NULL)
            v->added[q] = strdup(name[i]); /* NULL: named "?" in notices, used all the same */
    }
    if (s != NULL) {
        v->known = true;
        v->epoch = s->epoch;
        v->view = s->view;
        v->members = members;
    }
    /* The announcement first: the lines about skipped nodes follow from it. */
    if (announce)
        say(f, false, "the nodes' configuration is now %s", what);
    via_recompute(f);
    pthread_mutex_unlock(&v->mu);
    admin_results_free(res, n);
    free(res);
}

int follow_via_new(const follow_config *cfg, dht_membership *listed, follow **out)
{
    *out = NULL;
    follow *f = calloc(1, sizeof *f);
    char *list = malloc(LIST_MAX);
    via_state *v = calloc(1, sizeof *v);
    if (f == NULL || list == NULL || v == NULL) {
        fprintf(stderr, "client: out of memory\n");
        free(f);
        free(list);
        free(v);
        dht_membership_free(listed);
        return 1;
    }
    follow_init(f, cfg, listed, list);
    f->via = v;
    v->nlisted = v->npeers = dht_membership_size(listed);
    pthread_mutex_init(&v->mu, NULL);
    /* A ring before the first round, which may fail: the listed nodes. */
    pthread_mutex_lock(&v->mu);
    via_recompute(f);
    pthread_mutex_unlock(&v->mu);
    via_reload(f, cfg->timeout_ns, true);
    *out = f;
    return 0;
}

int follow_via_listed(const follow *f)
{
    return f->via->nlisted;
}

int follow_via_peer(follow *f, int peer, int slot, bool failed)
{
    via_state *v = f->via;
    pthread_mutex_lock(&v->mu);
    int at = -1;
    for (int i = 0; i < v->nring && at < 0; i++)
        if (v->ring[i] == peer)
            at = i;
    int next = at < 0 ? v->ring[(slot < 0 ? 0 : slot) % v->nring]
               : failed ? v->ring[(at + 1) % v->nring]
                        : peer;
    pthread_mutex_unlock(&v->mu);
    return next;
}

void follow_via_failed(follow *f, int peer, const char *why)
{
    via_state *v = f->via;
    bool says = false;
    for (size_t i = 0; why != NULL && i < sizeof SERVES_NOTHING / sizeof SERVES_NOTHING[0]; i++)
        says = says || strstr(why, SERVES_NOTHING[i]) != NULL;
    if (says) {
        pthread_mutex_lock(&v->mu);
        if (peer >= 0 && peer < v->npeers && !dht_peerset_has(&v->refused, peer)) {
            dht_peerset_add(&v->refused, peer);
            via_recompute(f);
        }
        pthread_mutex_unlock(&v->mu);
    }
    follow_refused(f);
}

static void *follow_main(void *arg)
{
    follow *f = arg;
    int64_t last = 0, periodic = dht_now_ns() + RELOAD_PERIOD_NS;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        int64_t now = dht_now_ns();
        bool due = f->requested || now >= periodic;
        int64_t until = due ? last + RELOAD_MIN_GAP_NS : periodic;
        if (!due || now < until) {
            struct timespec ts = {.tv_sec = (time_t)(until / DHT_NS_PER_SEC),
                                  .tv_nsec = (long)(until % DHT_NS_PER_SEC)};
            pthread_cond_timedwait(&f->cv, &f->mu, &ts);
            continue;
        }
        f->requested = false;
        /* Cleared before the round: a refusal that comes during it may be
         * from a view newer than the round finds, so it asks again. */
        atomic_store(&f->pending, false);
        last = now;
        periodic = now + RELOAD_PERIOD_NS;
        pthread_mutex_unlock(&f->mu);
        if (f->via != NULL)
            via_reload(f, RELOAD_TIMEOUT_NS, false);
        else
            reload(f);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int follow_start(follow *f, dht_coord *c)
{
    f->coord = c;
    if (pthread_create(&f->thread, NULL, follow_main, f) != 0)
        return -1;
    f->running = true;
    return 0;
}

void follow_stop(follow *f)
{
    if (f == NULL || !f->running)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    f->running = false;
}

void follow_free(follow *f)
{
    if (f == NULL)
        return;
    follow_stop(f);
    follow_free_parts(f);
}
