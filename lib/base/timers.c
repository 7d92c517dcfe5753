/* Timer service: a binary min-heap under a mutex; the thread sleeps on a
 * condition variable until the earliest deadline or a new earlier timer.
 * Callbacks run without the lock held, so they may add timers.
 *
 * A cancelable timer's handle records where its entry sits in the heap, so
 * cancel takes it out at once: the heap holds only timers that will run.
 * (Every coordinated operation arms a deadline timer and nearly all cancel
 * it; left in the heap until due, they had made it tens of thousands deep
 * under load and woken the thread to discard each one.) */
#include "base/timers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "base/util.h"

/* A cancelable timer's handle: its heap slot while pending, SIZE_MAX once
 * popped.  Freed by cancel (when it revokes) or by the timer thread after
 * the callback ran. */
typedef struct {
    size_t slot;
} token;

#define POPPED SIZE_MAX

typedef struct {
    int64_t when;
    uint64_t seq;
    void (*cb)(void *);
    void *arg;
    token *tok; /* NULL for plain timers */
} timer;

struct dht_timers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    timer *heap; /* owned */
    size_t len, cap;
    uint64_t seq;
    bool stop;
    pthread_t thread;
};

static bool less(const timer *a, const timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(dht_timers *t, size_t i, timer tm)
{
    t->heap[i] = tm;
    if (tm.tok != NULL)
        tm.tok->slot = i;
}

/* Puts tm at slot i or wherever the heap order takes it from there. */
static void sift(dht_timers *t, size_t i, timer tm)
{
    while (i > 0 && less(&tm, &t->heap[(i - 1) / 2])) {
        place(t, i, t->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->len)
            break;
        if (c + 1 < t->len && less(&t->heap[c + 1], &t->heap[c]))
            c++;
        if (!less(&t->heap[c], &tm))
            break;
        place(t, i, t->heap[c]);
        i = c;
    }
    place(t, i, tm);
}

/* Removes and returns the entry at slot i. */
static timer take(dht_timers *t, size_t i)
{
    timer out = t->heap[i], last = t->heap[--t->len];
    if (i < t->len)
        sift(t, i, last);
    if (out.tok != NULL)
        out.tok->slot = POPPED;
    return out;
}

static void *timer_main(void *arg)
{
    dht_timers *t = arg;
    pthread_setname_np(pthread_self(), "dht-timers");
    pthread_mutex_lock(&t->mu);
    while (!(t->stop && t->len == 0)) {
        if (t->len == 0) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        int64_t now = dht_now_ns();
        if (t->heap[0].when > now) {
            /* pthread condvars default to CLOCK_REALTIME: convert. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t abs = (int64_t)ts.tv_sec * DHT_NS_PER_SEC + ts.tv_nsec + (t->heap[0].when - now);
            ts.tv_sec = abs / DHT_NS_PER_SEC;
            ts.tv_nsec = abs % DHT_NS_PER_SEC;
            pthread_cond_timedwait(&t->cv, &t->mu, &ts);
            continue;
        }
        timer tm = take(t, 0);
        pthread_mutex_unlock(&t->mu);
        tm.cb(tm.arg);
        pthread_mutex_lock(&t->mu);
        free(tm.tok);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

dht_timers *dht_timers_start(void)
{
    dht_timers *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        return NULL;
    }
    return t;
}

static int add(dht_timers *t, int64_t delay_ns, void (*cb)(void *), void *arg, token *tok)
{
    pthread_mutex_lock(&t->mu);
    if (t->stop) {
        pthread_mutex_unlock(&t->mu);
        return -1;
    }
    if (t->len == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        timer *n = realloc(t->heap, ncap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&t->mu);
            return -1;
        }
        t->heap = n;
        t->cap = ncap;
    }
    timer tm = {dht_now_ns() + (delay_ns > 0 ? delay_ns : 0), t->seq++, cb, arg, tok};
    sift(t, t->len++, tm);
    if (t->heap[0].seq == tm.seq)
        pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int dht_timers_add(dht_timers *t, int64_t delay_ns, void (*cb)(void *), void *arg)
{
    return add(t, delay_ns, cb, arg, NULL);
}

void *dht_timers_add_cancelable(dht_timers *t, int64_t delay_ns, void (*cb)(void *), void *arg)
{
    token *tok = malloc(sizeof *tok);
    if (tok == NULL)
        return NULL;
    if (add(t, delay_ns, cb, arg, tok) != 0) {
        free(tok);
        return NULL;
    }
    return tok;
}

int dht_timers_cancel(dht_timers *t, void *handle)
{
    token *tok = handle;
    pthread_mutex_lock(&t->mu);
    int revoked = tok->slot != POPPED;
    if (revoked)
        take(t, tok->slot);
    pthread_mutex_unlock(&t->mu);
    if (revoked)
        free(tok); /* else the timer thread frees it after the callback */
    return revoked;
}

size_t dht_timers_pending(dht_timers *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->len;
    pthread_mutex_unlock(&t->mu);
    return n;
}

void dht_timers_stop(dht_timers *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->heap);
    free(t);
}
