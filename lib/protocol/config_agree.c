/* Single-decree Paxos per configuration epoch (config_agree.h).
 *
 * Safety rests on three facts: an acceptor never accepts below what it
 * promised, a proposer in phase 2 proposes the value of the highest
 * ballot accepted within its phase-1 quorum, and any two quorums of the
 * same n intersect.  Everything else (backoff, timeouts, generations) is
 * for liveness and for memory.
 */
#include "protocol/config_agree.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/le.h"
#include "base/util.h"
#include "protocol/membership.h"

static const dht_agree_ballot NO_BALLOT = {0, 0};

int dht_agree_ballot_cmp(dht_agree_ballot a, dht_agree_ballot b)
{
    if (a.round != b.round)
        return a.round < b.round ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id;
}

static bool ballot_none(dht_agree_ballot b)
{
    return b.round == 0 && b.id == 0;
}

const char *dht_agree_type_name(dht_agree_type t)
{
    static const char *const names[] = {"?",    "PREPARE", "PROMISE", "ACCEPT", "ACCEPTED",
                                        "NACK", "DECIDED", "STALE",   "BEHIND"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static bool value_ok(const uint8_t *v, size_t len)
{
    return v != NULL && len >= 1 && len <= DHT_AGREE_VALUE_MAX;
}

/* Copies into a fresh buffer so that a failed allocation leaves the
 * caller's state as it was. */
static uint8_t *dup_bytes(const uint8_t *v, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    if (p != NULL && len)
        memcpy(p, v, len);
    return p;
}

/* ---- Acceptor ---- */

int dht_agree_acceptor_init(dht_agree_acceptor *a, uint64_t epoch, const uint8_t *value,
                            size_t len)
{
    if (epoch == 0 ? len != 0 : !value_ok(value, len))
        return -1;
    memset(a, 0, sizeof *a);
    if (epoch != 0 && (a->decided = dup_bytes(value, len)) == NULL)
        return -1;
    a->decided_epoch = epoch;
    a->decided_len = len;
    return 0;
}

void dht_agree_acceptor_free(dht_agree_acceptor *a)
{
    free(a->decided);
    free(a->value);
    memset(a, 0, sizeof *a);
}

int dht_agree_acceptor_handle(dht_agree_acceptor *a, const dht_agree_msg *req,
                              dht_agree_msg *reply)
{
    bool prepare = req->type == DHT_AGREE_PREPARE;
    /* A round no proposer could outbid would block every later change of
     * the configuration for good, and one message would do it: rounds stay
     * below a ceiling and climb at most DHT_AGREE_ROUND_STEP past the
     * promise per message (an honest proposer climbs by one), so reaching
     * the ceiling takes billions of recorded messages. */
    if ((!prepare && req->type != DHT_AGREE_ACCEPT) || req->epoch == 0 ||
        ballot_none(req->ballot) || req->ballot.round > DHT_AGREE_ROUND_MAX ||
        req->ballot.round > a->promised.round + DHT_AGREE_ROUND_STEP ||
        (!prepare && !value_ok(req->value, req->len)))
        return -1;
    memset(reply, 0, sizeof *reply);
    reply->epoch = req->epoch;
    reply->ballot = req->ballot;
    if (req->epoch <= a->decided_epoch) {
        reply->type = req->epoch == a->decided_epoch ? DHT_AGREE_DECIDED : DHT_AGREE_STALE;
        reply->epoch = a->decided_epoch;
        reply->value = a->decided;
        reply->len = a->decided_len;
        return 0;
    }
    if (req->epoch > a->decided_epoch + 1) {
        reply->type = DHT_AGREE_BEHIND;
        reply->epoch = a->decided_epoch;
        return 0;
    }
    int cmp = dht_agree_ballot_cmp(req->ballot, a->promised);
    if (cmp < 0) {
        reply->type = DHT_AGREE_NACK;
        reply->ballot = a->promised;
        return 0;
    }
    if (prepare) {
        a->promised = req->ballot;
        reply->type = DHT_AGREE_PROMISE;
        reply->accepted = a->accepted;
        reply->value = a->value;
        reply->len = a->value_len;
        return cmp > 0;
    }
    reply->type = DHT_AGREE_ACCEPTED;
    /* One value per ballot (the proposer sends one), so a repeat of the
     * accepted ballot is a duplicate and changes nothing. */
    if (dht_agree_ballot_cmp(req->ballot, a->accepted) == 0)
        return 0;
    uint8_t *v = dup_bytes(req->value, req->len);
    if (v == NULL)
        return -1;
    free(a->value);
    a->value = v;
    a->value_len = req->len;
    a->promised = a->accepted = req->ballot;
    return 1;
}

int dht_agree_acceptor_decide(dht_agree_acceptor *a, uint64_t epoch, const uint8_t *value,
                              size_t len)
{
    if (epoch <= a->decided_epoch)
        return 0;
    uint8_t *v = value_ok(value, len) ? dup_bytes(value, len) : NULL;
    if (v == NULL)
        return -1;
    free(a->decided);
    free(a->value);
    *a = (dht_agree_acceptor){.decided_epoch = epoch, .decided = v, .decided_len = len};
    return 1;
}

/* Encoding, little-endian:
 *   "DHTAGRE1"  magic and version
 *   u64 decided_epoch, u64 promised.round, u64 promised.id,
 *   u64 accepted.round, u64 accepted.id,
 *   u32 decided_len, decided bytes, u32 value_len, value bytes,
 *   u64 checksum of everything before it. */
static const char MAGIC[8] = {'D', 'H', 'T', 'A', 'G', 'R', 'E', '1'};
#define FIXED_LEN (8 + 5 * 8 + 2 * 4 + 8)

/* FNV-1a, finalised: catches torn writes and stray bytes, not attackers
 * (the file is ours). */
static uint64_t checksum(const uint8_t *p, size_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return dht_mix64(h ^ len);
}

size_t dht_agree_acceptor_encode(const dht_agree_acceptor *a, uint8_t *buf, size_t cap)
{
    size_t need = FIXED_LEN + a->decided_len + a->value_len;
    if (cap < need)
        return need;
    uint8_t *p = buf;
    memcpy(p, MAGIC, 8);
    p += 8;
    uint64_t fields[5] = {a->decided_epoch, a->promised.round, a->promised.id,
                          a->accepted.round, a->accepted.id};
    for (int i = 0; i < 5; i++, p += 8)
        dht_le_put64(p, fields[i]);
    dht_le_put32(p, (uint32_t)a->decided_len);
    if (a->decided_len)
        memcpy(p + 4, a->decided, a->decided_len);
    p += 4 + a->decided_len;
    dht_le_put32(p, (uint32_t)a->value_len);
    if (a->value_len)
        memcpy(p + 4, a->value, a->value_len);
    p += 4 + a->value_len;
    dht_le_put64(p, checksum(buf, (size_t)(p - buf)));
    return need;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int dht_agree_acceptor_decode(dht_agree_acceptor *out, const uint8_t *buf, size_t len,
                              char *err, size_t errlen)
{
    if (buf == NULL || len < FIXED_LEN)
        return fail(err, errlen, "acceptor state: %zu bytes, too short", len);
    if (memcmp(buf, MAGIC, 8) != 0)
        return fail(err, errlen, "acceptor state: bad magic or version");
    if (dht_le_get64(buf + len - 8) != checksum(buf, len - 8))
        return fail(err, errlen, "acceptor state: checksum mismatch");
    dht_agree_acceptor a = {0};
    const uint8_t *p = buf + 8;
    a.decided_epoch = dht_le_get64(p);
    a.promised = (dht_agree_ballot){dht_le_get64(p + 8), dht_le_get64(p + 16)};
    a.accepted = (dht_agree_ballot){dht_le_get64(p + 24), dht_le_get64(p + 32)};
    p += 40;
    /* Lengths are checked against what is left before anything is read
     * through them, so no input makes us read past buf. */
    size_t left = len - FIXED_LEN;
    size_t dlen = dht_le_get32(p);
    if (dlen > DHT_AGREE_VALUE_MAX || dlen > left)
        return fail(err, errlen, "acceptor state: bad decided length %zu", dlen);
    const uint8_t *dval = p + 4;
    p += 4 + dlen;
    left -= dlen;
    size_t vlen = dht_le_get32(p);
    if (vlen > DHT_AGREE_VALUE_MAX || vlen != left)
        return fail(err, errlen, "acceptor state: bad value length %zu", vlen);
    const uint8_t *vval = p + 4;
    if ((a.decided_epoch == 0) != (dlen == 0))
        return fail(err, errlen, "acceptor state: decided epoch without value or vice versa");
    if (ballot_none(a.accepted) != (vlen == 0))
        return fail(err, errlen, "acceptor state: accepted ballot without value or vice versa");
    if (dht_agree_ballot_cmp(a.accepted, a.promised) > 0)
        return fail(err, errlen, "acceptor state: accepted above promised");
    if ((dlen && (a.decided = dup_bytes(dval, dlen)) == NULL) ||
        (vlen && (a.value = dup_bytes(vval, vlen)) == NULL)) {
        free(a.decided);
        return fail(err, errlen, "acceptor state: out of memory");
    }
    a.decided_len = dlen;
    a.value_len = vlen;
    *out = a;
    return 0;
}

/* ---- Proposer ---- */

typedef struct proposer proposer;

struct proposer {
    pthread_mutex_t mu;
    dht_agree_io io;
    dht_agree_config cfg;
    dht_agree_done_cb done;
    void *done_arg;
    dht_rng rng;
    int quorum;
    /* One per send or timer whose callback is owed, plus one until done
     * has returned; the last one out frees. */
    int refs;
    bool finished, reported;
    /* Bumped whenever a phase ends, so that replies and timers of an
     * older phase are recognised and ignored. */
    uint64_t gen;
    int phase; /* 1, 2; 0 while backing off */
    int backoffs;
    dht_agree_ballot ballot;
    dht_agree_ballot highest_seen; /* from NACKs and promises: the next round goes above */
    dht_peerset granted, answered;
    int behind;
    uint64_t behind_epoch;
    /* Phase 1's best accepted (ballot, value) in this round's quorum. */
    dht_agree_ballot adopted_ballot;
    uint8_t *adopted;
    size_t adopted_len;
    uint8_t *mine;
    size_t mine_len;
    dht_agree_result res;
    char reason[160];
};

typedef struct {
    proposer *p;
    uint64_t gen;
    int acceptor; /* -1: phase timer, -2: backoff timer */
} token;

static void finish(proposer *p, dht_agree_outcome o, uint64_t epoch, const uint8_t *v,
                   size_t len, const char *fmt, ...)
{
    p->finished = true;
    p->gen++;
    p->res = (dht_agree_result){.outcome = o, .epoch = epoch, .value = v, .len = len};
    if (o == DHT_AGREE_CHOSEN)
        p->res.was_mine = len == p->mine_len && memcmp(v, p->mine, len) == 0;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->reason, sizeof p->reason, fmt, ap);
        va_end(ap);
        p->res.reason = p->reason;
    }
}

static void on_timer(void *arg);
static void on_reply(void *arg, dht_status st, const dht_agree_msg *m);

static token *new_token(proposer *p, int acceptor)
{
    token *t = malloc(sizeof *t);
    if (t != NULL)
        *t = (token){p, p->gen, acceptor};
    return t;
}

static void arm(proposer *p, int64_t delay, int kind)
{
    token *t = new_token(p, kind);
    if (t != NULL && p->io.after(p->io.arg, delay < 0 ? 0 : delay, on_timer, t) == 0)
        p->refs++;
    else
        free(t);
}

static void back_off(proposer *p)
{
    p->gen++;
    p->phase = 0;
    int64_t cap = p->cfg.backoff_min_ns;
    for (int i = 0; i < p->backoffs && cap < p->cfg.backoff_max_ns / 2; i++)
        cap *= 2;
    p->backoffs++;
    /* Jitter over the upper half: dueling proposers drift apart while the
     * delay still grows with contention. */
    int64_t delay = cap / 2 + (int64_t)dht_rng_below(&p->rng, (uint64_t)(cap - cap / 2) + 1);
    int64_t left = p->cfg.deadline_ns - p->io.now(p->io.arg);
    arm(p, delay < left ? delay : left, -2);
}

/* A phase is lost once every acceptor answered without a quorum: waiting
 * for the timer would only waste time. */
static void check_phase(proposer *p)
{
    int n = p->cfg.nacceptors;
    if (p->behind > n - p->quorum)
        finish(p, DHT_AGREE_ERR_BEHIND, p->behind_epoch, NULL, 0,
               "%d of %d acceptors do not hold epoch %llu's configuration yet "
               "(highest they hold: %llu)",
               p->behind, n, (unsigned long long)(p->cfg.epoch - 1),
               (unsigned long long)p->behind_epoch);
    else if (p->phase != 0 && dht_peerset_count(&p->answered) == n)
        back_off(p);
}

static void start_phase(proposer *p, int phase)
{
    p->gen++;
    p->phase = phase;
    memset(&p->granted, 0, sizeof p->granted);
    memset(&p->answered, 0, sizeof p->answered);
    p->behind = 0;
    dht_agree_msg m = {.type = phase == 1 ? DHT_AGREE_PREPARE : DHT_AGREE_ACCEPT,
                       .epoch = p->cfg.epoch, .ballot = p->ballot};
    if (phase == 2) {
        bool adopt = !ballot_none(p->adopted_ballot);
        m.value = adopt ? p->adopted : p->mine;
        m.len = adopt ? p->adopted_len : p->mine_len;
    }
    for (int i = 0; i < p->cfg.nacceptors; i++) {
        token *t = new_token(p, i);
        if (t != NULL && p->io.send(p->io.arg, i, &m, on_reply, t) == 0) {
            p->refs++;
        } else {
            free(t);
            dht_peerset_add(&p->answered, i);
        }
    }
    int64_t left = p->cfg.deadline_ns - p->io.now(p->io.arg);
    arm(p, p->cfg.phase_timeout_ns < left ? p->cfg.phase_timeout_ns : left, -1);
    check_phase(p);
}

static void new_round(proposer *p)
{
    uint64_t r = p->ballot.round > p->highest_seen.round ? p->ballot.round : p->highest_seen.round;
    /* Acceptors refuse rounds above the ceiling, so it is never passed
     * honestly; r + 1 stays within it (and never wraps). */
    p->ballot = (dht_agree_ballot){r < DHT_AGREE_ROUND_MAX ? r + 1 : DHT_AGREE_ROUND_MAX,
                                   p->cfg.id};
    p->adopted_ballot = NO_BALLOT;
    start_phase(p, 1);
}

static void destroy(proposer *p)
{
    pthread_mutex_destroy(&p->mu);
    free(p->adopted);
    free(p->mine);
    free(p);
}

/* Ends the handling of one callback (lock held, its reference still
 * counted): drops that reference, reports once, frees when nothing more
 * is owed.  Unlocks. */
static void leave(proposer *p)
{
    p->refs--;
    if (!p->finished && p->refs == 1)
        finish(p, DHT_AGREE_ERR_IO, 0, NULL, 0, "the io refused every send and timer");
    bool report = p->finished && !p->reported;
    p->reported |= report;
    bool last = p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (report) {
        /* res is frozen once finished, so reading it unlocked is safe; the
         * reference held until done returns keeps p alive meanwhile. */
        p->done(p->done_arg, &p->res);
        pthread_mutex_lock(&p->mu);
        p->refs--;
        last = p->refs == 0;
        pthread_mutex_unlock(&p->mu);
    }
    if (last)
        destroy(p);
}

static void on_timer(void *arg)
{
    token *t = arg;
    proposer *p = t->p;
    pthread_mutex_lock(&p->mu);
    if (!p->finished && t->gen == p->gen) {
        if (p->io.now(p->io.arg) >= p->cfg.deadline_ns)
            finish(p, DHT_AGREE_ERR_TIMEOUT, p->cfg.epoch, NULL, 0,
                   "no value chosen for epoch %llu before the deadline (last ballot %llu.%llu)",
                   (unsigned long long)p->cfg.epoch, (unsigned long long)p->ballot.round,
                   (unsigned long long)p->ballot.id);
        else if (t->acceptor == -1)
            back_off(p);
        else
            new_round(p);
    }
    free(t);
    leave(p);
}

static void see(proposer *p, dht_agree_ballot b)
{
    if (dht_agree_ballot_cmp(b, p->highest_seen) > 0)
        p->highest_seen = b;
}

/* One reply of the current phase; false when it is malformed or does not
 * fit the phase (counted as a failure). */
static bool handle_reply(proposer *p, int from, const dht_agree_msg *m)
{
    uint64_t e = p->cfg.epoch;
    bool mine = dht_agree_ballot_cmp(m->ballot, p->ballot) == 0;
    switch (m->type) {
    case DHT_AGREE_DECIDED:
        /* A decided value is final: one acceptor's word is enough. */
        if (m->epoch != e || !value_ok(m->value, m->len))
            return false;
        finish(p, DHT_AGREE_CHOSEN, e, m->value, m->len, NULL);
        return true;
    case DHT_AGREE_STALE:
        if (m->epoch <= e || !value_ok(m->value, m->len))
            return false;
        finish(p, DHT_AGREE_ERR_STALE, m->epoch, m->value, m->len,
               "epoch %llu was decided long ago: acceptor %d holds epoch %llu; catch up first",
               (unsigned long long)e, from, (unsigned long long)m->epoch);
        return true;
    case DHT_AGREE_BEHIND:
        if (m->epoch + 1 >= e)
            return false;
        p->behind++;
        if (m->epoch > p->behind_epoch || p->behind == 1)
            p->behind_epoch = m->epoch;
        return true;
    case DHT_AGREE_NACK:
        if (dht_agree_ballot_cmp(m->ballot, p->ballot) <= 0)
            return false;
        see(p, m->ballot);
        back_off(p);
        return true;
    case DHT_AGREE_PROMISE:
        if (p->phase != 1 || !mine || dht_agree_ballot_cmp(m->accepted, p->ballot) >= 0 ||
            ballot_none(m->accepted) != (m->len == 0) ||
            (m->len != 0 && !value_ok(m->value, m->len)))
            return false;
        if (dht_agree_ballot_cmp(m->accepted, p->adopted_ballot) > 0) {
            uint8_t *v = dup_bytes(m->value, m->len);
            if (v == NULL)
                return false; /* ignoring a promise is always safe */
            free(p->adopted);
            p->adopted = v;
            p->adopted_len = m->len;
            p->adopted_ballot = m->accepted;
            see(p, m->accepted);
        }
        dht_peerset_add(&p->granted, from);
        if (dht_peerset_count(&p->granted) >= p->quorum)
            start_phase(p, 2);
        return true;
    case DHT_AGREE_ACCEPTED:
        if (p->phase != 2 || !mine)
            return false;
        dht_peerset_add(&p->granted, from);
        if (dht_peerset_count(&p->granted) >= p->quorum) {
            bool adopt = !ballot_none(p->adopted_ballot);
            finish(p, DHT_AGREE_CHOSEN, e, adopt ? p->adopted : p->mine,
                   adopt ? p->adopted_len : p->mine_len, NULL);
        }
        return true;
    default:
        return false;
    }
}

static void on_reply(void *arg, dht_status st, const dht_agree_msg *m)
{
    token *t = arg;
    proposer *p = t->p;
    pthread_mutex_lock(&p->mu);
    if (!p->finished && t->gen == p->gen && !dht_peerset_has(&p->answered, t->acceptor)) {
        uint64_t gen = p->gen;
        if (st == DHT_OK && m != NULL)
            handle_reply(p, t->acceptor, m);
        /* The phase may have moved on (quorum, NACK, finish) inside. */
        if (!p->finished && gen == p->gen) {
            dht_peerset_add(&p->answered, t->acceptor);
            check_phase(p);
        }
    }
    free(t);
    leave(p);
}

void dht_agree_config_default(dht_agree_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->phase_timeout_ns = 200 * DHT_NS_PER_MS;
    cfg->backoff_min_ns = 2 * DHT_NS_PER_MS;
    cfg->backoff_max_ns = 200 * DHT_NS_PER_MS;
}

int dht_agree_propose(const dht_agree_io *io, const dht_agree_config *cfg, const uint8_t *value,
                      size_t len, dht_agree_done_cb done, void *done_arg)
{
    if (io == NULL || io->send == NULL || io->after == NULL || io->now == NULL ||
        done == NULL || cfg->epoch == 0 || cfg->id == 0 || cfg->nacceptors < 1 ||
        cfg->nacceptors > DHT_MAX_MEMBERS || cfg->phase_timeout_ns <= 0 ||
        cfg->backoff_min_ns <= 0 || cfg->backoff_max_ns < cfg->backoff_min_ns ||
        !value_ok(value, len))
        return -1;
    proposer *p = calloc(1, sizeof *p);
    if (p == NULL || (p->mine = dup_bytes(value, len)) == NULL) {
        free(p);
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->io = *io;
    p->cfg = *cfg;
    p->done = done;
    p->done_arg = done_arg;
    p->mine_len = len;
    p->quorum = cfg->nacceptors / 2 + 1;
    p->refs = 1;
    dht_rng_seed(&p->rng, cfg->seed);
    pthread_mutex_lock(&p->mu);
    new_round(p);
    /* Nothing is owed to us: no callback will ever run, so done must not
     * either.  Otherwise a callback may already run on another thread. */
    bool dead = p->refs == 1;
    pthread_mutex_unlock(&p->mu);
    if (dead) {
        destroy(p);
        return -1;
    }
    return 0;
}
