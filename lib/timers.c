/* Timer service: a binary min-heap under a mutex; the thread sleeps on a
 * condition variable until the earliest deadline or a new earlier timer.
 * Callbacks run without the lock held, so they may add timers. */
#include "timers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "util.h"

/* State of a cancelable timer, shared by the heap and the canceller; freed
 * by the timer thread once the timer is skipped or has run. */
typedef enum { TOKEN_PENDING, TOKEN_RUNNING, TOKEN_CANCELLED } token;

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
    size_t cancelled; /* heap entries revoked but not yet popped */
    bool stop;
    pthread_t thread;
};

static bool less(const timer *a, const timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static timer pop(dht_timers *t)
{
    timer top = t->heap[0], last = t->heap[--t->len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->len)
            break;
        if (c + 1 < t->len && less(&t->heap[c + 1], &t->heap[c]))
            c++;
        if (!less(&t->heap[c], &last))
            break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (t->len > 0)
        t->heap[i] = last;
    return top;
}

static void *timer_main(void *arg)
{
    dht_timers *t = arg;
    pthread_setname_np(pthread_self(), "dht-timers");
    pthread_mutex_lock(&t->mu);
    while (!(t->stop && t->len == t->cancelled)) {
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
        timer tm = pop(t);
        if (tm.tok != NULL && *tm.tok == TOKEN_CANCELLED) {
            free(tm.tok);
            t->cancelled--;
            continue;
        }
        if (tm.tok != NULL)
            *tm.tok = TOKEN_RUNNING;
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
    size_t i = t->len++;
    while (i > 0 && less(&tm, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = tm;
    if (i == 0)
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
    *tok = TOKEN_PENDING;
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
    int revoked = *tok == TOKEN_PENDING;
    if (revoked) {
        *tok = TOKEN_CANCELLED; /* the timer thread frees it when it pops */
        t->cancelled++;
    }
    pthread_mutex_unlock(&t->mu);
    return revoked;
}

size_t dht_timers_pending(dht_timers *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->len - t->cancelled; /* revoked ones will never run */
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
    for (size_t i = 0; i < t->len; i++) /* only revoked timers are left */
        free(t->heap[i].tok);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->heap);
    free(t);
}
