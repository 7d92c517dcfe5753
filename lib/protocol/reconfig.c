/* The membership change engine: see reconfig.h. */
#include "protocol/reconfig.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "protocol/transfer.h"

#define AGREE_TIMEOUT_NS (10 * DHT_NS_PER_SEC)
/* How long the last step waits for every member to confirm e+1 before
 * answering (those that miss it catch up by themselves). */
#define FINAL_WAIT_NS (2 * DHT_NS_PER_SEC)
#define CATCH_UP_MIN_NS (100 * DHT_NS_PER_MS)

typedef enum { D_PROBE, D_AGREE, D_JOINT, D_COPY, D_FINAL } dstep;

/* A change this node drives (at most one at a time). */
typedef struct {
    dht_change_op op;
    char addr[DHT_ADDR_MAX]; /* normalised */
    int64_t deadline;
    dht_control_done done;
    void *done_arg;
    dstep step;
    uint64_t gen;          /* replies and timers of an older step are ignored */
    dht_view *target;      /* the joint view being completed (a reference) */
    dht_peerset acked;     /* confirmations of the step */
    bool finishing;        /* completing an interrupted change before ours */
    bool finished_other;   /* did so: ours may be what it made */
    bool lost;             /* another change won the epoch */
    int restarts;
    int64_t final_until;
    char value[DHT_CONTROL_TEXT_MAX]; /* our proposal */
    char note[600];                   /* what the operator is told besides */
    int acc_pos[DHT_MAX_MEMBERS];     /* acceptor index -> position */
} driver;

/* What the per-request check needs, copied out of the engine whenever the
 * view changes, behind a lock of its own: the engine's lock is held across
 * fsyncs during a change, and every replica request is checked. */
typedef struct {
    bool has_view, joint, removed;
    uint64_t num, epoch, cur_fp, newest_fp;
    char text[601]; /* the newest configuration's line, cut for messages */
} check_snapshot;

struct dht_reconfig {
    dht_transport *t;
    dht_reconfig_config cfg;
    pthread_mutex_t check_mu;
    check_snapshot snap; /* check_mu */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int inflight;
    bool stop;

    dht_view *view;              /* NULL while joining */
    const dht_membership *book;  /* the membership with every position so far */
    char *cur_text, *next_text;  /* of view; owned */
    bool transfer_done, removed;
    /* The joint view's old quorums all hold it (a driver said so): only
     * then may the copy start, since until then a write on the old
     * configuration alone may still complete after a source was read. */
    bool copy_go;
    uint64_t cluster_id;         /* learnt from an INSTALL when joining */
    dht_agree_acceptor acc;
    dht_transfer *transfer;      /* the copy of the view's change, if any */
    void *transfer_ctx;          /* its callback context (owned) */
    /* Stopped copies and their contexts, freed with the engine (a stopped
     * copy may still have a step in flight). */
    dht_transfer **retired;
    void **retired_ctx;
    int nretired, capretired;
    driver *drv;
    int64_t last_catch_up;
    uint64_t agree_id;
    dht_rng rng;
};

/* ---- bookkeeping: every callback the engine is owed holds a count ------- */

static bool hold(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    bool ok = !rc->stop;
    if (ok)
        rc->inflight++;
    pthread_mutex_unlock(&rc->mu);
    return ok;
}

static void release(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    if (--rc->inflight == 0)
        pthread_cond_broadcast(&rc->idle);
    pthread_mutex_unlock(&rc->mu);
}

/* Called with mu held after every change of view or removal. */
static void snapshot_locked(dht_reconfig *rc)
{
    check_snapshot sn = {.removed = rc->removed, .has_view = rc->view != NULL};
    if (rc->view != NULL) {
        sn.joint = dht_view_joint(rc->view);
        sn.num = dht_view_number(rc->view);
        sn.epoch = dht_view_epoch(rc->view);
        sn.cur_fp = dht_membership_fingerprint(dht_view_current(rc->view));
        sn.newest_fp = dht_view_fingerprint(rc->view);
        snprintf(sn.text, sizeof sn.text, "%s", rc->next_text ? rc->next_text : rc->cur_text);
    }
    pthread_mutex_lock(&rc->check_mu);
    rc->snap = sn;
    pthread_mutex_unlock(&rc->check_mu);
}

static int64_t now(dht_reconfig *rc)
{
    return dht_transport_now(rc->t);
}

typedef struct {
    dht_reconfig *rc;
    void (*fn)(dht_reconfig *rc, uint64_t gen);
    uint64_t gen;
} tick;

static void on_tick(void *arg)
{
    tick *k = arg;
    dht_reconfig *rc = k->rc;
    pthread_mutex_lock(&rc->mu);
    bool stop = rc->stop;
    pthread_mutex_unlock(&rc->mu);
    if (!stop)
        k->fn(rc, k->gen);
    free(k);
    release(rc);
}

static void later(dht_reconfig *rc, int64_t delay, void (*fn)(dht_reconfig *, uint64_t),
                  uint64_t gen)
{
    tick *k = malloc(sizeof *k);
    if (k == NULL || !hold(rc)) {
        free(k);
        return;
    }
    *k = (tick){rc, fn, gen};
    if (dht_transport_after(rc->t, delay, on_tick, k) != 0) {
        free(k);
        release(rc);
    }
}

/* The cluster id this node tells and checks: learnt when it joined, else
 * its data directory's (0: none yet). */
static uint64_t cluster_of(dht_reconfig *rc)
{
    if (rc->cluster_id != 0)
        return rc->cluster_id;
    return rc->cfg.cluster_id ? rc->cfg.cluster_id(rc->cfg.arg) : 0;
}

/* ---- configuration lines ------------------------------------------------------ */

int dht_config_line_parse(const char *line, size_t len, int *replicas, char *list,
                          size_t listlen, char *err, size_t errlen)
{
    char buf[DHT_CONTROL_TEXT_MAX + 1];
    if (len > DHT_CONTROL_TEXT_MAX) {
        snprintf(err, errlen, "configuration line longer than %d bytes", DHT_CONTROL_TEXT_MAX);
        return -1;
    }
    memcpy(buf, line, len);
    buf[len] = '\0';
    int r = 0, parts = 0, used = 0;
    if (sscanf(buf, "replicas=%d partitions=%d members=%n", &r, &parts, &used) != 2 ||
        used == 0) {
        snprintf(err, errlen, "'%.80s' is not a configuration line", buf);
        return -1;
    }
    if (parts != DHT_PARTITIONS) {
        snprintf(err, errlen, "configuration with %d partitions (this build has %d)", parts,
                 DHT_PARTITIONS);
        return -1;
    }
    if (strlen(buf + used) + 1 > listlen) {
        snprintf(err, errlen, "member list too long");
        return -1;
    }
    *replicas = r;
    strcpy(list, buf + used);
    return 0;
}

/* The configuration `line` derived from base (positions kept), with every
 * new position added to the transport where the derivation put it. */
static int derive_line(dht_reconfig *rc, const dht_membership *base, const char *line,
                       size_t len, dht_membership **out, char *err, size_t errlen)
{
    static __thread char list[DHT_CONTROL_TEXT_MAX];
    int r;
    if (dht_config_line_parse(line, len, &r, list, sizeof list, err, errlen) != 0 ||
        dht_membership_derive(base, list, r, out, err, errlen) != 0)
        return -1;
    for (int p = rc->t->npeers; p < dht_membership_size(*out); p++) {
        const char *addr = dht_membership_addr(*out, p);
        int got = rc->t->ops->add_peer ? rc->t->ops->add_peer(rc->t, addr) : -1;
        if (got != p) {
            snprintf(err, errlen, "cannot add peer %s at position %d (transport gave %d)", addr,
                     p, got);
            dht_membership_free(*out);
            *out = NULL;
            return -1;
        }
    }
    return 0;
}

static char *describe(const dht_membership *m)
{
    size_t need = dht_membership_describe(m, NULL, 0) + 1;
    char *s = malloc(need);
    if (s != NULL)
        dht_membership_describe(m, s, need);
    return s;
}

/* Whether the configuration line names this process's address. */
static bool names_self(dht_reconfig *rc, const char *line, size_t len)
{
    static __thread char list[DHT_CONTROL_TEXT_MAX];
    char err[200], norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
    int r;
    if (line == NULL || len == 0 ||
        dht_config_line_parse(line, len, &r, list, sizeof list, err, sizeof err) != 0)
        return false;
    const char *me = dht_membership_norm(rc->book, dht_membership_self(rc->book));
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
        if (dht_member_addr_normalise(tok, norm, sizeof norm, why, sizeof why) == 0 &&
            strcmp(norm, me) == 0)
            return true;
    return false;
}

/* ---- state: persist, install ------------------------------------------------- */

static int persist_locked(dht_reconfig *rc, uint64_t epoch, const char *cur, const char *next,
                          bool tdone, bool removed)
{
    size_t need = dht_agree_acceptor_encode(&rc->acc, NULL, 0);
    uint8_t *buf = malloc(need ? need : 1);
    if (buf == NULL)
        return -1;
    dht_agree_acceptor_encode(&rc->acc, buf, need);
    uint64_t cid = cluster_of(rc);
    dht_reconfig_state st = {epoch, cur, next, tdone, removed, buf, need, cid};
    int rcode = rc->cfg.persist(rc->cfg.arg, &st);
    free(buf);
    return rcode;
}

/* A snapshot of the acceptor to roll back to when recording fails. */
static uint8_t *acceptor_save(dht_reconfig *rc, size_t *len)
{
    *len = dht_agree_acceptor_encode(&rc->acc, NULL, 0);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b != NULL)
        dht_agree_acceptor_encode(&rc->acc, b, *len);
    return b;
}

static void acceptor_restore(dht_reconfig *rc, const uint8_t *b, size_t len)
{
    dht_agree_acceptor a;
    char err[128];
    if (b != NULL && dht_agree_acceptor_decode(&a, b, len, err, sizeof err) == 0) {
        dht_agree_acceptor_free(&rc->acc);
        rc->acc = a;
    }
}

static bool has_wants(const dht_view *v, int self)
{
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++)
        if (dht_transfer_wants(v, self, part))
            return true;
    return false;
}

static void transfer_finished(void *arg);

typedef struct {
    dht_reconfig *rc;
    dht_view *view; /* the transfer's (borrowed: the transfer holds one) */
} transfer_ctx;

static transfer_ctx *tctx_for(dht_reconfig *rc, dht_view *v)
{
    transfer_ctx *x = malloc(sizeof *x);
    if (x != NULL)
        *x = (transfer_ctx){rc, v};
    return x;
}

static void retire_transfer_locked(dht_reconfig *rc)
{
    if (rc->transfer == NULL)
        return;
    dht_transfer_request_stop(rc->transfer);
    if (rc->nretired == rc->capretired) {
        int cap = rc->capretired ? rc->capretired * 2 : 4;
        dht_transfer **n = realloc(rc->retired, (size_t)cap * sizeof *n);
        if (n != NULL)
            rc->retired = n;
        void **c = realloc(rc->retired_ctx, (size_t)cap * sizeof *c);
        if (c != NULL)
            rc->retired_ctx = c;
        if (n == NULL || c == NULL) {
            /* Leak rather than free under a step that may still run. */
            rc->transfer = NULL;
            rc->transfer_ctx = NULL;
            return;
        }
        rc->capretired = cap;
    }
    rc->retired[rc->nretired] = rc->transfer;
    rc->retired_ctx[rc->nretired++] = rc->transfer_ctx;
    rc->transfer = NULL;
    rc->transfer_ctx = NULL;
}

static void start_transfer_locked(dht_reconfig *rc)
{
    if (rc->view == NULL || !dht_view_joint(rc->view) || rc->transfer_done ||
        rc->transfer != NULL || !rc->copy_go)
        return;
    transfer_ctx *x = tctx_for(rc, rc->view);
    if (x == NULL)
        return;
    dht_transfer_config tc = {.view = rc->view, .incarnation = rc->cfg.incarnation,
                              .install = rc->cfg.install, .install_arg = rc->cfg.arg,
                              .on_done = transfer_finished, .arg = x};
    rc->transfer = dht_transfer_start(rc->t, rc->cfg.replica, &tc);
    if (rc->transfer == NULL) {
        free(x);
        DHT_WARN("membership change: could not start the copy; will try again");
    } else {
        rc->transfer_ctx = x; /* freed with the transfer */
    }
}

/* Installs the view (epoch, cur[, next]) when it is newer than ours.
 * 0: installed; 1: not newer; -1: refused (reason in err). */
static int install_locked(dht_reconfig *rc, uint64_t epoch, const char *cur, size_t curlen,
                          const char *next, size_t nextlen, char *err, size_t errlen)
{
    uint64_t num = 2 * epoch + (next != NULL && nextlen > 0);
    if (rc->removed) {
        snprintf(err, errlen, "this node was removed from the cluster");
        return -1;
    }
    if (epoch == 0 || curlen == 0) {
        snprintf(err, errlen, "no configuration to install");
        return -1;
    }
    if (rc->view != NULL && num <= dht_view_number(rc->view))
        return 1;
    if (rc->view == NULL && !names_self(rc, cur, curlen) && !names_self(rc, next, nextlen)) {
        /* Waiting to join: only a configuration that takes this node in. */
        snprintf(err, errlen, "this node is not in that configuration (it waits to be added)");
        return -1;
    }
    dht_membership *cm = NULL, *nm = NULL;
    if (derive_line(rc, rc->book, cur, curlen, &cm, err, errlen) != 0)
        return -1;
    if (num % 2 == 1 && derive_line(rc, cm, next, nextlen, &nm, err, errlen) != 0) {
        dht_membership_free(cm);
        return -1;
    }
    char *ct = describe(cm), *nt = nm ? describe(nm) : NULL;
    dht_view *v = dht_view_new(epoch, cm, nm, true);
    if (v == NULL || ct == NULL || (nm != NULL && nt == NULL)) {
        dht_view_unref(v);
        free(ct);
        free(nt);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int self = dht_membership_self(cm);
    bool removed = !dht_membership_is_member(cm, self) &&
                   !(nm != NULL && dht_membership_is_member(nm, self));
    bool tdone = nm == NULL || !has_wants(v, self);
    uint64_t latest = nm ? epoch + 1 : epoch;
    size_t oldlen;
    uint8_t *old = acceptor_save(rc, &oldlen);
    if (rc->acc.decided_epoch < latest &&
        dht_agree_acceptor_decide(&rc->acc, latest, (const uint8_t *)(nt ? nt : ct),
                                  strlen(nt ? nt : ct)) < 0) {
        free(old);
        dht_view_unref(v);
        free(ct);
        free(nt);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (persist_locked(rc, epoch, ct, nt, tdone, removed) != 0) {
        acceptor_restore(rc, old, oldlen);
        free(old);
        dht_view_unref(v);
        free(ct);
        free(nt);
        snprintf(err, errlen, "could not record the configuration durably");
        return -1;
    }
    free(old);
    retire_transfer_locked(rc);
    dht_view *prev = rc->view;
    rc->view = v;
    rc->book = nm ? nm : cm;
    free(rc->cur_text);
    free(rc->next_text);
    rc->cur_text = ct;
    rc->next_text = nt;
    rc->transfer_done = tdone;
    rc->removed = removed;
    rc->copy_go = false;
    snapshot_locked(rc);
    if (nt != NULL)
        DHT_INFO("membership change: epoch %llu (%s) -> epoch %llu (%s): running on both",
                 (unsigned long long)epoch, ct, (unsigned long long)epoch + 1, nt);
    else
        DHT_INFO("configuration: epoch %llu (%s)%s", (unsigned long long)epoch, ct,
                 removed ? "; this node is not a member: it serves nothing from now on" : "");
    rc->cfg.on_view(rc->cfg.arg, v, removed);
    dht_view_unref(prev);
    start_transfer_locked(rc);
    return 0;
}

static void transfer_finished(void *arg)
{
    transfer_ctx *x = arg;
    dht_reconfig *rc = x->rc;
    pthread_mutex_lock(&rc->mu);
    if (rc->view == x->view && !rc->transfer_done) {
        if (persist_locked(rc, dht_view_epoch(rc->view), rc->cur_text, rc->next_text, true,
                           rc->removed) == 0) {
            rc->transfer_done = true;
            if (rc->cfg.on_copied != NULL)
                rc->cfg.on_copied(rc->cfg.arg);
        } else {
            /* Copied but not recorded: copy again (the periodic step starts
             * a new copy once this one is retired). */
            DHT_WARN("membership change: copy done but not recorded; will copy again");
            retire_transfer_locked(rc);
        }
    }
    pthread_mutex_unlock(&rc->mu);
    /* x is freed with its transfer (dht_reconfig_free). */
}

/* ---- views on the wire ------------------------------------------------------- */

static void my_view_locked(dht_reconfig *rc, dht_control_view *out)
{
    *out = (dht_control_view){0};
    out->cluster_id = cluster_of(rc);
    out->removed = rc->removed;
    if (rc->view == NULL)
        return;
    out->epoch = dht_view_epoch(rc->view);
    out->cur = rc->cur_text;
    out->cur_len = strlen(rc->cur_text);
    if (rc->next_text != NULL) {
        out->next = rc->next_text;
        out->next_len = strlen(rc->next_text);
    }
    out->transfer_done = rc->transfer_done;
}

static uint64_t number_of(const dht_control_view *v)
{
    return 2 * v->epoch + (v->next_len > 0);
}

/* Sends m to position peer; cb gets the decoded reply (NULL on failure). */
typedef void (*ctl_reply_fn)(dht_reconfig *rc, int peer, uint64_t gen, const dht_control_msg *rep);

typedef struct {
    dht_reconfig *rc;
    int peer;
    uint64_t gen;
    ctl_reply_fn fn;
} ctl_ctx;

static void on_ctl_reply(void *arg, dht_status st, const uint8_t *rep, size_t len)
{
    ctl_ctx *x = arg;
    dht_reconfig *rc = x->rc;
    dht_control_msg m;
    char err[160];
    bool ok = st == DHT_OK && dht_control_decode(rep, len, &m, err, sizeof err) == 0;
    pthread_mutex_lock(&rc->mu);
    bool stop = rc->stop;
    pthread_mutex_unlock(&rc->mu);
    if (!stop)
        x->fn(rc, x->peer, x->gen, ok ? &m : NULL);
    free(x);
    release(rc);
}

static void send_ctl(dht_reconfig *rc, int peer, const dht_control_msg *m, uint64_t gen,
                     ctl_reply_fn fn)
{
    if (rc->t->ops->control == NULL)
        return;
    uint8_t *buf;
    size_t len;
    if (dht_control_encode(m, &buf, &len) != 0)
        return;
    ctl_ctx *x = malloc(sizeof *x);
    if (x == NULL || !hold(rc)) {
        free(x);
        free(buf);
        return;
    }
    *x = (ctl_ctx){rc, peer, gen, fn};
    if (rc->t->ops->control(rc->t, peer, buf, len, now(rc) + rc->cfg.rpc_timeout_ns,
                            on_ctl_reply, x) != 0) {
        free(x);
        release(rc);
    }
    free(buf);
}

/* ---- catch-up: ask the members for newer views -------------------------------- */

static void on_catch_up_reply(dht_reconfig *rc, int peer, uint64_t gen, const dht_control_msg *rep)
{
    (void)peer;
    (void)gen;
    if (rep == NULL || rep->type != DHT_CTL_VIEW || rep->view.epoch == 0 || rep->view.removed)
        return;
    char err[300];
    pthread_mutex_lock(&rc->mu);
    uint64_t mine = cluster_of(rc);
    if (mine != 0 && rep->view.cluster_id != 0 && rep->view.cluster_id != mine) {
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    bool newer = rc->view != NULL ? number_of(&rep->view) > dht_view_number(rc->view)
                                  : names_self(rc, rep->view.cur, rep->view.cur_len) ||
                                        names_self(rc, rep->view.next, rep->view.next_len);
    bool adopt = newer && mine == 0;
    if (adopt)
        rc->cluster_id = rep->view.cluster_id;
    int got = newer ? install_locked(rc, rep->view.epoch, rep->view.cur, rep->view.cur_len,
                                     rep->view.next, rep->view.next_len, err, sizeof err)
                    : 1;
    if (got != 0 && adopt)
        rc->cluster_id = 0;
    if (got < 0)
        DHT_WARN("catching up with the configuration: %s", err);
    pthread_mutex_unlock(&rc->mu);
}

static void catch_up_now(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    int n = dht_membership_size(rc->book);
    int self = dht_membership_self(rc->book);
    dht_peerset who = {{0}};
    for (int p = 0; p < n; p++) {
        bool member = rc->view == NULL ||
                      dht_membership_is_member(dht_view_current(rc->view), p) ||
                      (dht_view_next(rc->view) != NULL &&
                       dht_membership_is_member(dht_view_next(rc->view), p));
        if (p != self && member)
            dht_peerset_add(&who, p);
    }
    rc->last_catch_up = now(rc);
    pthread_mutex_unlock(&rc->mu);
    dht_control_msg q = {.type = DHT_CTL_QUERY};
    for (int p = 0; p < n; p++)
        if (dht_peerset_has(&who, p))
            send_ctl(rc, p, &q, 0, on_catch_up_reply);
}

void dht_reconfig_catch_up(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    bool due = !rc->stop && now(rc) - rc->last_catch_up >= CATCH_UP_MIN_NS;
    if (due)
        rc->last_catch_up = now(rc);
    pthread_mutex_unlock(&rc->mu);
    if (due)
        catch_up_now(rc);
}

static void periodic(dht_reconfig *rc, uint64_t gen)
{
    (void)gen;
    pthread_mutex_lock(&rc->mu);
    /* Stopped copies whose last step has ended are freed (each holds its
     * joint view's placement tables). */
    for (int i = 0; i < rc->nretired;) {
        if (dht_transfer_idle(rc->retired[i])) {
            dht_transfer_stop(rc->retired[i]); /* returns at once: idle */
            free(rc->retired_ctx[i]);
            rc->retired[i] = rc->retired[rc->nretired - 1];
            rc->retired_ctx[i] = rc->retired_ctx[rc->nretired - 1];
            rc->nretired--;
        } else {
            i++;
        }
    }
    start_transfer_locked(rc); /* a copy that could not start before */
    bool removed = rc->removed;
    pthread_mutex_unlock(&rc->mu);
    if (!removed)
        catch_up_now(rc);
    later(rc, rc->cfg.catch_up_ns, periodic, 0);
}

/* ---- the driver ------------------------------------------------------------------ */

static void driver_step(dht_reconfig *rc, uint64_t gen);
static void driver_begin(dht_reconfig *rc, uint64_t gen);

/* Ends the drive: answers the administrator (outside the lock). */
static void driver_end_locked(dht_reconfig *rc, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void driver_end_locked(dht_reconfig *rc, bool ok, const char *fmt, ...)
{
    driver *d = rc->drv;
    rc->drv = NULL;
    char text[1200];
    va_list ap;
    va_start(ap, fmt);
    int used = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (d->note[0] != '\0' && used > 0 && (size_t)used < sizeof text)
        snprintf(text + used, sizeof text - (size_t)used, " (%s)", d->note);
    dht_control_msg m = {.type = DHT_CTL_CHANGED, .ok = ok, .text = text,
                         .text_len = strlen(text)};
    my_view_locked(rc, &m.view);
    uint8_t *buf = NULL;
    size_t len = 0;
    int enc = dht_control_encode(&m, &buf, &len);
    pthread_mutex_unlock(&rc->mu);
    if (ok)
        DHT_INFO("membership change: %s", text);
    else
        DHT_WARN("membership change failed: %s", text);
    if (enc == 0)
        d->done(d->done_arg, buf, len, NULL);
    else
        d->done(d->done_arg, NULL, 0, text);
    free(buf);
    dht_view_unref(d->target);
    free(d);
    pthread_mutex_lock(&rc->mu);
}

static void note(driver *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(driver *d, const char *fmt, ...)
{
    size_t used = strlen(d->note);
    if (used + 3 >= sizeof d->note)
        return;
    if (used > 0) {
        memcpy(d->note + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->note + used, sizeof d->note - used, fmt, ap);
    va_end(ap);
}

/* Paxos over the control channel: acceptor i is position acc_pos[i]. */
typedef struct {
    dht_reconfig *rc;
    dht_agree_reply_cb cb;
    void *cb_arg;
} agree_ctx;

static void on_agree_reply(void *arg, dht_status st, const uint8_t *rep, size_t len)
{
    agree_ctx *x = arg;
    dht_control_msg m;
    char err[160];
    if (st == DHT_OK && dht_control_decode(rep, len, &m, err, sizeof err) == 0 &&
        m.type == DHT_CTL_AGREE)
        x->cb(x->cb_arg, DHT_OK, &m.agree);
    else
        x->cb(x->cb_arg, st == DHT_OK ? DHT_ERR_REMOTE : st, NULL);
    dht_reconfig *rc = x->rc;
    free(x);
    release(rc);
}

static int agree_send(void *arg, int acceptor, const dht_agree_msg *am, dht_agree_reply_cb cb,
                      void *cb_arg)
{
    dht_reconfig *rc = arg;
    pthread_mutex_lock(&rc->mu);
    int peer = rc->drv != NULL && acceptor >= 0 && acceptor < DHT_MAX_MEMBERS
                   ? rc->drv->acc_pos[acceptor]
                   : -1;
    pthread_mutex_unlock(&rc->mu);
    if (peer < 0 || rc->t->ops->control == NULL)
        return -1;
    dht_control_msg m = {.type = DHT_CTL_AGREE, .agree = *am};
    uint8_t *buf;
    size_t len;
    if (dht_control_encode(&m, &buf, &len) != 0)
        return -1;
    agree_ctx *x = malloc(sizeof *x);
    if (x == NULL || !hold(rc)) {
        free(x);
        free(buf);
        return -1;
    }
    *x = (agree_ctx){rc, cb, cb_arg};
    int r = rc->t->ops->control(rc->t, peer, buf, len, now(rc) + rc->cfg.rpc_timeout_ns,
                                on_agree_reply, x);
    free(buf);
    if (r != 0) {
        free(x);
        release(rc);
    }
    return r;
}

static int agree_after(void *arg, int64_t delay, void (*cb)(void *), void *cb_arg)
{
    dht_reconfig *rc = arg;
    return dht_transport_after(rc->t, delay, cb, cb_arg);
}

static int64_t agree_now(void *arg)
{
    return now(arg);
}

static void on_agreed(void *arg, const dht_agree_result *r)
{
    dht_reconfig *rc = arg;
    char err[300];
    pthread_mutex_lock(&rc->mu);
    driver *d = rc->drv;
    if (d == NULL || rc->stop) {
        pthread_mutex_unlock(&rc->mu);
        release(rc);
        return;
    }
    uint64_t gen = ++d->gen;
    if (r->outcome == DHT_AGREE_CHOSEN) {
        if (!r->was_mine) {
            d->lost = true;
            note(d, "another change won epoch %llu: %.*s", (unsigned long long)r->epoch,
                 (int)(r->len > 300 ? 300 : r->len), (const char *)r->value);
        }
        if (rc->view != NULL && dht_view_epoch(rc->view) + 1 == r->epoch &&
            !dht_view_joint(rc->view) &&
            install_locked(rc, dht_view_epoch(rc->view), rc->cur_text, strlen(rc->cur_text),
                           (const char *)r->value, r->len, err, sizeof err) < 0) {
            driver_end_locked(rc, false, "epoch %llu was chosen but cannot be installed here: %s",
                              (unsigned long long)r->epoch, err);
            pthread_mutex_unlock(&rc->mu);
            release(rc);
            return;
        }
        d->step = D_JOINT;
        d->target = rc->view ? dht_view_ref(rc->view) : NULL;
        d->acked = (dht_peerset){{0}};
        pthread_mutex_unlock(&rc->mu);
        later(rc, 0, driver_step, gen);
    } else if (r->outcome == DHT_AGREE_ERR_STALE && d->restarts++ < 3) {
        /* We are behind: learn the members' views and start over.  Not the
         * acceptor's decided value: a decided epoch may still be a change
         * in progress (joint), and taking it as settled would skip its
         * copy. */
        pthread_mutex_unlock(&rc->mu);
        catch_up_now(rc);
        later(rc, rc->cfg.poll_ns, driver_begin, gen);
    } else {
        driver_end_locked(rc, false,
                          "no configuration was chosen for epoch %llu: %s (a majority of "
                          "the members of the current epoch must answer; if one may have "
                          "been chosen, the next command completes it)",
                          (unsigned long long)r->epoch, r->reason ? r->reason : "?");
        pthread_mutex_unlock(&rc->mu);
    }
    release(rc);
}

/* Starts (or restarts) the drive from the view this node holds now. */
static void driver_begin(dht_reconfig *rc, uint64_t gen)
{
    char err[300];
    pthread_mutex_lock(&rc->mu);
    driver *d = rc->drv;
    if (d == NULL || d->gen != gen) {
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    gen = ++d->gen;
    if (rc->removed && rc->view != NULL && d->finished_other) {
        /* Completing the interrupted change removed this node: if that
         * change was the one asked for, it is done. */
        int at = dht_membership_find(dht_view_current(rc->view), d->addr);
        if ((d->op == DHT_CHANGE_REMOVE && at < 0) || (d->op == DHT_CHANGE_ADD && at >= 0)) {
            driver_end_locked(rc, true, "epoch %llu: %s (this node is no longer a member)",
                              (unsigned long long)dht_view_epoch(rc->view), rc->cur_text);
            pthread_mutex_unlock(&rc->mu);
            return;
        }
    }
    if (rc->removed || rc->view == NULL) {
        driver_end_locked(rc, false, "this node %s", rc->removed ? "was removed from the cluster"
                                                            : "is not a member yet");
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    if (dht_view_joint(rc->view)) {
        /* An interrupted change: complete it first, then ours. */
        d->finishing = true;
        d->step = D_JOINT;
        dht_view_unref(d->target);
        d->target = dht_view_ref(rc->view);
        d->acked = (dht_peerset){{0}};
        note(d, "completed the interrupted change to %s first", rc->next_text);
        pthread_mutex_unlock(&rc->mu);
        driver_step(rc, gen);
        return;
    }
    const dht_membership *cm = dht_view_current(rc->view);
    int at = dht_membership_find(cm, d->addr);
    int members = dht_membership_members(cm), r = dht_membership_replica_count(cm);
    if (d->op == DHT_CHANGE_ADD && at >= 0) {
        driver_end_locked(rc, d->finished_other, "%s is already a member (epoch %llu: %s)",
                          d->addr, (unsigned long long)dht_view_epoch(rc->view), rc->cur_text);
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    if (d->op == DHT_CHANGE_ADD && members >= DHT_MAX_MEMBERS) {
        driver_end_locked(rc, false, "the cluster has %d members, the limit", members);
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    if (d->op == DHT_CHANGE_REMOVE && at < 0) {
        driver_end_locked(rc, d->finished_other, "%s is not a member (epoch %llu: %s)", d->addr,
                          (unsigned long long)dht_view_epoch(rc->view), rc->cur_text);
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    if (d->op == DHT_CHANGE_REMOVE && members - 1 < r) {
        driver_end_locked(rc, false,
                          "removing %s would leave %d members, fewer than the %d replicas "
                          "each key needs: add a member first",
                          d->addr, members - 1, r);
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    /* The proposal: the current members with one added or removed. */
    static __thread char list[DHT_CONTROL_TEXT_MAX];
    size_t used = 0;
    list[0] = '\0';
    for (int p = 0; p < dht_membership_size(cm); p++) {
        if (!dht_membership_is_member(cm, p) || p == at)
            continue;
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? "," : "",
                                 dht_membership_norm(cm, p));
    }
    if (d->op == DHT_CHANGE_ADD)
        snprintf(list + used, sizeof list - used, "%s%s", used ? "," : "", d->addr);
    dht_membership *nm;
    if (dht_membership_new(list, NULL, r, &nm, err, sizeof err) != 0) {
        driver_end_locked(rc, false, "invalid new configuration: %s", err);
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    dht_membership_describe(nm, d->value, sizeof d->value);
    dht_membership_free(nm);
    int k = 0;
    for (int p = 0; p < dht_membership_size(cm); p++)
        if (dht_membership_is_member(cm, p))
            d->acc_pos[k++] = p;
    dht_agree_config ac;
    dht_agree_config_default(&ac);
    ac.epoch = dht_view_epoch(rc->view) + 1;
    ac.nacceptors = k;
    ac.id = rc->agree_id;
    ac.seed = dht_rng_next(&rc->rng);
    ac.deadline_ns = now(rc) + AGREE_TIMEOUT_NS < d->deadline ? now(rc) + AGREE_TIMEOUT_NS
                                                               : d->deadline;
    d->step = D_AGREE;
    /* The proposal outlives the lock; the driver may not (a stop frees it). */
    char *value = strdup(d->value);
    pthread_mutex_unlock(&rc->mu);
    dht_agree_io io = {agree_send, agree_after, agree_now, rc};
    if (value == NULL || !hold(rc)) {
        free(value);
        return;
    }
    int started = dht_agree_propose(&io, &ac, (const uint8_t *)value, strlen(value), on_agreed, rc);
    free(value); /* the proposer copied it */
    if (started != 0) {
        pthread_mutex_lock(&rc->mu);
        if (rc->drv == d)
            driver_end_locked(rc, false, "cannot start the agreement (out of memory)");
        pthread_mutex_unlock(&rc->mu);
        release(rc);
    }
}

/* Every position of either configuration of v but ours. */
static dht_peerset everyone(const dht_view *v)
{
    dht_peerset s = {{0}};
    const dht_membership *c = dht_view_current(v), *n = dht_view_next(v);
    for (int p = 0; p < dht_view_size(v); p++)
        if (dht_membership_is_member(c, p) || (n != NULL && dht_membership_is_member(n, p)))
            dht_peerset_add(&s, p);
    return s;
}

/* For every partition, a quorum of its replicas under the old
 * configuration holds the joint view. */
static bool old_quorums_hold(const dht_view *v, const dht_peerset *acked)
{
    const dht_membership *c = dht_view_current(v);
    int q = dht_membership_quorum(c);
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        if (dht_peerset_common(dht_membership_partition_replicas(c, part), acked) < q)
            return false;
    }
    return true;
}

/* Whether enough of every moved partition's new replicas have copied, so
 * that every quorum of the new configuration meets one that holds each
 * write the old one acknowledged.  Otherwise the members
 * whose copy would help are added to wanted. */
static bool copies_enough(const dht_view *v, const dht_peerset *done, dht_peerset *wanted)
{
    const dht_membership *c = dht_view_current(v), *n = dht_view_next(v);
    /* A quorum (at least R-Q+1): then the members still short of data are
     * at most R-Q, so any R-Q+1 replicas a later copy reads include one
     * that holds everything, whatever R. */
    int need = dht_membership_quorum(n);
    bool enough = true;
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        const dht_peerset *a = dht_membership_partition_replicas(c, part);
        const dht_peerset *b = dht_membership_partition_replicas(n, part);
        if (dht_peerset_equal(a, b))
            continue;
        if (dht_peerset_common(b, done) < need) {
            enough = false;
            for (size_t i = 0; i < sizeof b->w / sizeof b->w[0]; i++)
                wanted->w[i] |= b->w[i] & ~done->w[i];
        }
    }
    return enough;
}

static void view_msg(const dht_view *v, uint64_t cluster, dht_control_msg *m, char **ct,
                     char **nt)
{
    *ct = describe(dht_view_current(v));
    *nt = dht_view_next(v) ? describe(dht_view_next(v)) : NULL;
    *m = (dht_control_msg){.type = DHT_CTL_INSTALL};
    m->view.epoch = dht_view_epoch(v);
    m->view.cur = *ct;
    m->view.cur_len = *ct ? strlen(*ct) : 0;
    m->view.next = *nt;
    m->view.next_len = *nt ? strlen(*nt) : 0;
    m->view.cluster_id = cluster;
}

static void on_step_reply(dht_reconfig *rc, int peer, uint64_t gen, const dht_control_msg *rep)
{
    pthread_mutex_lock(&rc->mu);
    driver *d = rc->drv;
    if (d == NULL || d->gen != gen || rep == NULL || rep->type != DHT_CTL_VIEW) {
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    uint64_t mine = cluster_of(rc);
    if (rep->view.cluster_id != 0 && mine != 0 && rep->view.cluster_id != mine) {
        note(d, "%s belongs to another cluster", dht_membership_addr(rc->book, peer));
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    uint64_t target = dht_view_number(d->target), theirs = number_of(&rep->view);
    bool counts = false;
    switch (d->step) {
    case D_JOINT:
        counts = theirs >= target;
        break;
    case D_COPY:
        counts = (theirs == target && rep->view.transfer_done) || theirs > target;
        break;
    case D_FINAL:
        counts = theirs >= target + 1 || rep->view.removed;
        break;
    default:
        break;
    }
    if (counts)
        dht_peerset_add(&d->acked, peer);
    pthread_mutex_unlock(&rc->mu);
}

static void driver_finish_locked(dht_reconfig *rc)
{
    driver *d = rc->drv;
    dht_peerset all = everyone(d->target), missing = {{0}};
    char who[400] = "";
    size_t used = 0;
    for (int p = 0; p < DHT_MAX_MEMBERS; p++)
        if (dht_peerset_has(&all, p) && !dht_peerset_has(&d->acked, p) &&
            p != dht_membership_self(rc->book)) {
            dht_peerset_add(&missing, p);
            if (used < sizeof who)
                used += (size_t)snprintf(who + used, sizeof who - used, "%s%s", used ? ", " : "",
                                         dht_membership_addr(rc->book, p));
        }
    if (used > 0)
        note(d, "not yet confirmed by %s, which will catch up by itself", who);
    if (d->finishing) {
        /* The interrupted change is done: now ours, from the new view. */
        d->finishing = false;
        d->finished_other = true;
        dht_view_unref(d->target);
        d->target = NULL;
        uint64_t gen = d->gen;
        pthread_mutex_unlock(&rc->mu);
        later(rc, 0, driver_begin, gen);
        pthread_mutex_lock(&rc->mu);
        return;
    }
    if (d->lost)
        driver_end_locked(rc, false, "not applied: another change was chosen first; run the "
                                     "command again if it is still wanted");
    else
        driver_end_locked(rc, true, "epoch %llu: %s", (unsigned long long)dht_view_epoch(rc->view),
                          rc->cur_text);
}

static void driver_step(dht_reconfig *rc, uint64_t gen)
{
    char err[300];
    pthread_mutex_lock(&rc->mu);
    driver *d = rc->drv;
    if (d == NULL || d->gen != gen) {
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    dht_view *v = d->target;
    if (v == NULL || rc->view == NULL) {
        driver_end_locked(rc, false, "lost the configuration being changed");
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    uint64_t target = dht_view_number(v), mine = dht_view_number(rc->view);
    if (now(rc) > d->deadline) {
        driver_end_locked(rc, false,
                          "deadline passed %s; the configuration is consistent: run any "
                          "members command to complete the change",
                          d->step == D_JOINT  ? "while installing the joint configuration"
                          : d->step == D_COPY ? "while the new replicas copy their data"
                                              : "while confirming the new configuration");
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    if (!dht_view_joint(v) || mine > target + 1 || (mine == target + 1 && d->step != D_FINAL)) {
        /* Someone else completed it (or went further; a settled view as
         * the target: the agreement found the change already made). */
        d->acked = everyone(v);
        driver_finish_locked(rc);
        pthread_mutex_unlock(&rc->mu);
        return;
    }
    dht_peerset all = everyone(v), ask = {{0}};
    int self = dht_membership_self(rc->book);
    dht_peerset_add(&d->acked, self);
    bool advance = false;
    dht_control_msg m;
    char *ct = NULL, *nt = NULL;
    uint64_t cluster = cluster_of(rc);
    switch (d->step) {
    case D_JOINT:
        if (old_quorums_hold(v, &d->acked)) {
            d->step = D_COPY;
            d->acked = (dht_peerset){{0}};
            if (mine == target) { /* our own copy may start too */
                rc->copy_go = true;
                start_transfer_locked(rc);
            }
            advance = true;
            break;
        }
        view_msg(v, cluster, &m, &ct, &nt);
        ask = all;
        break;
    case D_COPY: {
        if (rc->transfer_done && mine == target)
            dht_peerset_add(&d->acked, self);
        else
            d->acked.w[self >> 6] &= ~(UINT64_C(1) << (self & 63));
        if (copies_enough(v, &d->acked, &ask)) {
            d->step = D_FINAL;
            d->acked = (dht_peerset){{0}};
            d->final_until = now(rc) + FINAL_WAIT_NS;
            if (install_locked(rc, dht_view_epoch(v) + 1, rc->next_text,
                               strlen(rc->next_text), NULL, 0, err, sizeof err) < 0) {
                driver_end_locked(rc, false, "cannot install the new configuration here: %s",
                                  err);
                pthread_mutex_unlock(&rc->mu);
                return;
            }
            advance = true;
            break;
        }
        /* Those still copying are asked (the INSTALL says "copy now";
         * one that lacks the joint view gets it). */
        view_msg(v, cluster, &m, &ct, &nt);
        m.view.transfer_done = true;
        break;
    }
    case D_FINAL: {
        dht_peerset_add(&d->acked, self);
        bool all_done = true;
        for (int p = 0; p < DHT_MAX_MEMBERS; p++)
            if (dht_peerset_has(&all, p) && !dht_peerset_has(&d->acked, p)) {
                all_done = false;
                dht_peerset_add(&ask, p);
            }
        if (all_done || now(rc) > d->final_until) {
            driver_finish_locked(rc);
            pthread_mutex_unlock(&rc->mu);
            return;
        }
        char *c2 = describe(dht_view_current(rc->view));
        m = (dht_control_msg){.type = DHT_CTL_INSTALL};
        m.view.epoch = dht_view_epoch(rc->view);
        m.view.cur = c2;
        m.view.cur_len = c2 ? strlen(c2) : 0;
        m.view.cluster_id = cluster;
        ct = c2;
        break;
    }
    default:
        break;
    }
    gen = d->gen;
    dht_peerset acked = d->acked;
    dstep step = d->step;
    pthread_mutex_unlock(&rc->mu);
    if (advance) {
        later(rc, 0, driver_step, gen);
        return;
    }
    if (ct != NULL) {
        for (int p = 0; p < DHT_MAX_MEMBERS; p++) {
            if (!dht_peerset_has(&ask, p) || p == self || dht_peerset_has(&acked, p))
                continue;
            /* An INSTALL both asks (the answer is the receiver's view and
             * copy state) and gives the view to a node that lacks it. */
            (void)step;
            send_ctl(rc, p, &m, gen, on_step_reply);
        }
    }
    free(ct);
    free(nt);
    later(rc, rc->cfg.poll_ns, driver_step, gen);
}

/* ---- the control entry point --------------------------------------------------- */

static void handle_agree(dht_reconfig *rc, const dht_control_msg *in, dht_control_done done,
                         void *done_arg)
{
    pthread_mutex_lock(&rc->mu);
    if (rc->view == NULL || rc->removed) {
        /* Not an acceptor of any configuration: it has none (joining) or
         * belongs to none any more. */
        pthread_mutex_unlock(&rc->mu);
        done(done_arg, NULL, 0,
             rc->removed ? "this node was removed from the cluster"
                         : "this node is joining the cluster and is not a member yet");
        return;
    }
    size_t oldlen;
    uint8_t *old = acceptor_save(rc, &oldlen);
    dht_agree_msg rep = {0};
    int changed = dht_agree_acceptor_handle(&rc->acc, &in->agree, &rep);
    if (changed < 0) {
        free(old);
        pthread_mutex_unlock(&rc->mu);
        done(done_arg, NULL, 0, "malformed agreement message");
        return;
    }
    if (changed > 0 &&
        persist_locked(rc, rc->view ? dht_view_epoch(rc->view) : 0, rc->cur_text, rc->next_text,
                       rc->transfer_done, rc->removed) != 0) {
        acceptor_restore(rc, old, oldlen);
        free(old);
        pthread_mutex_unlock(&rc->mu);
        done(done_arg, NULL, 0, "could not record the agreement state");
        return;
    }
    free(old);
    dht_control_msg m = {.type = DHT_CTL_AGREE, .agree = rep};
    uint8_t *buf;
    size_t len;
    int enc = dht_control_encode(&m, &buf, &len); /* rep points into the acceptor: under mu */
    pthread_mutex_unlock(&rc->mu);
    if (enc != 0) {
        done(done_arg, NULL, 0, "cannot encode the reply");
        return;
    }
    done(done_arg, buf, len, NULL);
    free(buf);
}

static void handle_change(dht_reconfig *rc, const dht_control_msg *in, dht_control_done done,
                          void *done_arg)
{
    char addr[DHT_ADDR_MAX], norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
    if (in->addr_len >= sizeof addr) {
        done(done_arg, NULL, 0, "address too long");
        return;
    }
    memcpy(addr, in->addr, in->addr_len);
    addr[in->addr_len] = '\0';
    if (dht_member_addr_normalise(addr, norm, sizeof norm, why, sizeof why) != 0) {
        done(done_arg, NULL, 0, why);
        return;
    }
    driver *d = calloc(1, sizeof *d);
    if (d == NULL) {
        done(done_arg, NULL, 0, "out of memory");
        return;
    }
    d->op = in->op;
    snprintf(d->addr, sizeof d->addr, "%s", norm);
    d->done = done;
    d->done_arg = done_arg;
    pthread_mutex_lock(&rc->mu);
    if (rc->drv != NULL) {
        pthread_mutex_unlock(&rc->mu);
        free(d);
        done(done_arg, NULL, 0,
             "this node is already driving a membership change; wait for it to finish");
        return;
    }
    /* The whole change must end before the caller gives up; we keep a
     * little time to answer. */
    d->deadline = now(rc) + 120 * DHT_NS_PER_SEC;
    rc->drv = d;
    uint64_t gen = d->gen;
    pthread_mutex_unlock(&rc->mu);
    driver_begin(rc, gen);
}

void dht_reconfig_control(dht_reconfig *rc, const uint8_t *req, size_t len,
                          dht_control_done done, void *done_arg)
{
    dht_control_msg in;
    char err[200];
    if (dht_control_decode(req, len, &in, err, sizeof err) != 0) {
        done(done_arg, NULL, 0, err);
        return;
    }
    switch (in.type) {
    case DHT_CTL_AGREE:
        handle_agree(rc, &in, done, done_arg);
        return;
    case DHT_CTL_QUERY:
    case DHT_CTL_INSTALL: {
        char why[300] = "";
        pthread_mutex_lock(&rc->mu);
        if (in.type == DHT_CTL_INSTALL) {
            uint64_t mine = cluster_of(rc);
            if (mine != 0 && in.view.cluster_id != mine) {
                snprintf(why, sizeof why, "this node belongs to another cluster (%016llx)",
                         (unsigned long long)mine);
            } else {
                bool adopt = mine == 0 && in.view.cluster_id != 0;
                if (adopt) /* recorded with the view; undone if the install fails */
                    rc->cluster_id = in.view.cluster_id;
                int got = install_locked(rc, in.view.epoch, in.view.cur, in.view.cur_len,
                                         in.view.next, in.view.next_len, why, sizeof why);
                if (got != 0 && adopt)
                    rc->cluster_id = 0;
                if (got >= 0) {
                    why[0] = '\0';
                    /* "Copy now": the old quorums hold this joint view. */
                    if (in.view.transfer_done && rc->view != NULL &&
                        dht_view_number(rc->view) == number_of(&in.view)) {
                        rc->copy_go = true;
                        start_transfer_locked(rc);
                    }
                }
            }
        }
        dht_control_msg m = {.type = DHT_CTL_VIEW};
        my_view_locked(rc, &m.view);
        uint8_t *buf = NULL;
        size_t blen = 0;
        int enc = why[0] ? -1 : dht_control_encode(&m, &buf, &blen);
        pthread_mutex_unlock(&rc->mu);
        if (why[0])
            done(done_arg, NULL, 0, why);
        else if (enc != 0)
            done(done_arg, NULL, 0, "cannot encode the reply");
        else
            done(done_arg, buf, blen, NULL);
        free(buf);
        return;
    }
    case DHT_CTL_CHANGE:
        handle_change(rc, &in, done, done_arg);
        return;
    default:
        done(done_arg, NULL, 0, "not a request this node answers");
        return;
    }
}

/* ---- checks and stamps --------------------------------------------------------- */

int dht_reconfig_check(dht_reconfig *rc, uint64_t config, uint64_t view, char *why, size_t len)
{
    pthread_mutex_lock(&rc->check_mu);
    check_snapshot sn = rc->snap; /* a small copy: the text is printed only on refusal */
    pthread_mutex_unlock(&rc->check_mu);
    int r = -1;
    bool behind = false;
    uint64_t lowest = sn.joint ? sn.num : sn.num - 1;
    if (sn.removed) {
        snprintf(why, len, "this node was removed from the cluster; it serves nothing (add it "
                           "again as a new, empty node with --join)");
    } else if (!sn.has_view) {
        snprintf(why, len, "this node is joining the cluster and is not a member yet");
    } else if (view == 0) {
        /* Unstamped (a caller that knows no views): only while no change
         * runs, and only for the configuration this node runs on; during a
         * change it would bypass the joint quorums. */
        r = !sn.joint && config == sn.cur_fp ? 0 : -1;
        if (r != 0)
            snprintf(why, len,
                     "configuration mismatch: the request names configuration %016llx, this "
                     "node is at epoch %llu (%s); start every member and client with the same "
                     "MEMBERS and --replicas, or let the client learn them from the nodes",
                     (unsigned long long)config, (unsigned long long)sn.epoch, sn.text);
    } else if (view < lowest) {
        snprintf(why, len,
                 "stale configuration: the request is of view %llu, this node is at view %llu "
                 "(epoch %llu: %s); reload the configuration",
                 (unsigned long long)view, (unsigned long long)sn.num,
                 (unsigned long long)sn.epoch, sn.text);
    } else if (view > sn.num) {
        behind = true;
        snprintf(why, len, "this node is at view %llu, behind the request's %llu; it is "
                           "catching up",
                 (unsigned long long)sn.num, (unsigned long long)view);
    } else if (config != (view == sn.num ? sn.newest_fp : sn.cur_fp)) {
        snprintf(why, len,
                 "configuration mismatch at view %llu: the request names %016llx, this node "
                 "%016llx",
                 (unsigned long long)view, (unsigned long long)config,
                 (unsigned long long)(view == sn.num ? sn.newest_fp : sn.cur_fp));
    } else {
        r = 0;
    }
    if (behind)
        dht_reconfig_catch_up(rc);
    return r;
}

void dht_reconfig_stamp(dht_reconfig *rc, dht_msg *m)
{
    pthread_mutex_lock(&rc->mu);
    if (rc->view != NULL) {
        m->view = dht_view_number(rc->view);
        m->config = dht_view_fingerprint(rc->view);
    }
    pthread_mutex_unlock(&rc->mu);
}

/* ---- lifecycle -------------------------------------------------------------------- */

dht_reconfig *dht_reconfig_new(dht_transport *t, const dht_reconfig_config *cfg, char *err,
                               size_t errlen)
{
    if (cfg->base == NULL || cfg->persist == NULL || cfg->on_view == NULL ||
        cfg->install == NULL || cfg->replica == NULL ||
        dht_membership_self(cfg->base) < 0) {
        snprintf(err, errlen, "membership engine: incomplete configuration");
        return NULL;
    }
    dht_reconfig *rc = calloc(1, sizeof *rc);
    if (rc == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rc->t = t;
    rc->cfg = *cfg;
    if (rc->cfg.poll_ns == 0)
        rc->cfg.poll_ns = 100 * DHT_NS_PER_MS;
    if (rc->cfg.catch_up_ns == 0)
        rc->cfg.catch_up_ns = 2 * DHT_NS_PER_SEC;
    if (rc->cfg.rpc_timeout_ns == 0)
        rc->cfg.rpc_timeout_ns = DHT_NS_PER_SEC;
    pthread_mutex_init(&rc->mu, NULL);
    pthread_mutex_init(&rc->check_mu, NULL);
    pthread_cond_init(&rc->idle, NULL);
    dht_rng_seed(&rc->rng, cfg->seed ? cfg->seed : dht_random_seed());
    rc->agree_id = dht_mix64(dht_membership_member_id(cfg->base, dht_membership_self(cfg->base)) ^
                             cfg->incarnation);
    if (rc->agree_id == 0)
        rc->agree_id = 1;
    rc->book = cfg->base;
    rc->removed = cfg->removed;
    int ok = 0;
    if (cfg->acceptor != NULL && cfg->acceptor_len > 0)
        ok = dht_agree_acceptor_decode(&rc->acc, cfg->acceptor, cfg->acceptor_len, err, errlen);
    else
        ok = dht_agree_acceptor_init(&rc->acc, 0, NULL, 0);
    if (ok != 0) {
        if (cfg->acceptor == NULL)
            snprintf(err, errlen, "out of memory");
        pthread_mutex_destroy(&rc->mu);
        pthread_mutex_destroy(&rc->check_mu);
        pthread_cond_destroy(&rc->idle);
        free(rc);
        return NULL;
    }
    if (cfg->epoch >= 1) {
        /* The recorded view, derived from base so positions agree. */
        char *ct = describe(cfg->base);
        dht_membership *cm = NULL, *nm = NULL;
        int bad = ct == NULL ||
                  derive_line(rc, cfg->base, ct, strlen(ct), &cm, err, errlen) != 0 ||
                  (cfg->next != NULL &&
                   derive_line(rc, cm, cfg->next, strlen(cfg->next), &nm, err, errlen) != 0);
        char *nt = nm ? describe(nm) : NULL;
        rc->view = bad ? NULL : dht_view_new(cfg->epoch, cm, nm, true);
        if (bad || rc->view == NULL || (nm != NULL && nt == NULL)) {
            if (!bad)
                snprintf(err, errlen, "out of memory");
            else {
                dht_membership_free(cm);
                dht_membership_free(nm);
            }
            free(ct);
            free(nt);
            dht_reconfig_free(rc);
            return NULL;
        }
        rc->cur_text = ct;
        rc->next_text = nt;
        rc->book = nm ? nm : cm;
        rc->transfer_done = nm == NULL || cfg->transfer_done ||
                            !has_wants(rc->view, dht_membership_self(cm));
        uint64_t latest = nm ? cfg->epoch + 1 : cfg->epoch;
        if (rc->acc.decided_epoch < latest)
            dht_agree_acceptor_decide(&rc->acc, latest, (const uint8_t *)(nt ? nt : ct),
                                      strlen(nt ? nt : ct));
    }
    return rc;
}

void dht_reconfig_publish(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    snapshot_locked(rc);
    if (rc->view != NULL)
        rc->cfg.on_view(rc->cfg.arg, rc->view, rc->removed);
    pthread_mutex_unlock(&rc->mu);
}

int dht_reconfig_start(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    start_transfer_locked(rc);
    pthread_mutex_unlock(&rc->mu);
    later(rc, 0, periodic, 0);
    return 0;
}

void dht_reconfig_request_stop(dht_reconfig *rc)
{
    if (rc == NULL)
        return;
    pthread_mutex_lock(&rc->mu);
    rc->stop = true;
    if (rc->transfer != NULL)
        dht_transfer_request_stop(rc->transfer);
    /* A change being driven is answered now, while the transport can still
     * carry the answer; the next command completes it. */
    driver *d = rc->drv;
    rc->drv = NULL;
    pthread_mutex_unlock(&rc->mu);
    if (d != NULL) {
        d->done(d->done_arg, NULL, 0,
                "the node is shutting down; the change is incomplete: run the command again "
                "to complete it");
        dht_view_unref(d->target);
        free(d);
    }
}

void dht_reconfig_free(dht_reconfig *rc)
{
    if (rc == NULL)
        return;
    dht_reconfig_request_stop(rc);
    pthread_mutex_lock(&rc->mu);
    while (rc->inflight > 0)
        pthread_cond_wait(&rc->idle, &rc->mu);
    dht_transfer *x = rc->transfer;
    void *xc = rc->transfer_ctx;
    rc->transfer = NULL;
    driver *d = rc->drv;
    rc->drv = NULL;
    pthread_mutex_unlock(&rc->mu);
    if (d != NULL) {
        d->done(d->done_arg, NULL, 0, "the node is shutting down");
        dht_view_unref(d->target);
        free(d);
    }
    dht_transfer_stop(x);
    free(xc);
    for (int i = 0; i < rc->nretired; i++) {
        dht_transfer_stop(rc->retired[i]);
        free(rc->retired_ctx[i]);
    }
    free(rc->retired);
    free(rc->retired_ctx);
    dht_view_unref(rc->view);
    free(rc->cur_text);
    free(rc->next_text);
    dht_agree_acceptor_free(&rc->acc);
    pthread_mutex_destroy(&rc->mu);
    pthread_mutex_destroy(&rc->check_mu);
    pthread_cond_destroy(&rc->idle);
    free(rc);
}

dht_view *dht_reconfig_view(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    dht_view *v = rc->view ? dht_view_ref(rc->view) : NULL;
    pthread_mutex_unlock(&rc->mu);
    return v;
}

bool dht_reconfig_removed(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    bool r = rc->removed;
    pthread_mutex_unlock(&rc->mu);
    return r;
}

bool dht_reconfig_transfer_done(dht_reconfig *rc)
{
    pthread_mutex_lock(&rc->mu);
    bool r = rc->transfer_done;
    pthread_mutex_unlock(&rc->mu);
    return r;
}
