#include "storage/group_commit.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

typedef struct job {
    struct job *next;
    const dht_msg *reqs;
    dht_msg *reps;
    size_t n;
    void (*done)(void *);
    void *done_arg;
} job;

struct dht_group_commit {
    dht_replica *r;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    bool stop;
    pthread_t thread;
    /* merge buffers, reused round after round (thread-owned) */
    dht_msg *reqs, *reps;
    size_t cap;
};

static bool grow(dht_group_commit *a, size_t n)
{
    if (n <= a->cap)
        return true;
    size_t cap = a->cap ? a->cap : 256;
    while (cap < n)
        cap *= 2;
    dht_msg *q = realloc(a->reqs, cap * sizeof *q);
    if (q == NULL)
        return false;
    a->reqs = q;
    dht_msg *p = realloc(a->reps, cap * sizeof *p);
    if (p == NULL)
        return false;
    a->reps = p;
    a->cap = cap;
    return true;
}

static void run_round(dht_group_commit *a, job *list)
{
    size_t total = 0;
    for (job *j = list; j; j = j->next)
        total += j->n;
    if (grow(a, total)) {
        size_t k = 0;
        for (job *j = list; j; j = j->next) {
            memcpy(a->reqs + k, j->reqs, j->n * sizeof *a->reqs);
            k += j->n;
        }
        memset(a->reps, 0, total * sizeof *a->reps);
        dht_replica_handle_batch(a->r, dht_now_ns(), a->reqs, a->reps, total);
        k = 0;
        for (job *j = list; j; j = j->next) {
            memcpy(j->reps, a->reps + k, j->n * sizeof *a->reps);
            k += j->n;
        }
    } else {
        /* Out of memory for the merge: one batch at a time. */
        for (job *j = list; j; j = j->next)
            dht_replica_handle_batch(a->r, dht_now_ns(), j->reqs, j->reps, j->n);
    }
    while (list) {
        job *next = list->next;
        list->done(list->done_arg);
        free(list);
        list = next;
    }
}

static void *commit_main(void *arg)
{
    dht_group_commit *a = arg;
    pthread_setname_np(pthread_self(), "dht-commit");
    /* SCHED_BATCH: waking from an fsync, this thread does not preempt a
     * running transport thread; it runs when a core frees up.  On two
     * cores it kept switching the workers out in the middle of their
     * batches: with the policy, thread switches per put fell from 1.3-1.4
     * to 1.1 (docs/bench.md).  Durability is unchanged: an ack still
     * waits for its fsync.  Where the policy is unavailable, nothing
     * changes. */
    struct sched_param sp = {.sched_priority = 0};
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->head == NULL && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->head == NULL)
            break;
        job *list = a->head;
        a->head = a->tail = NULL;
        pthread_mutex_unlock(&a->mu);
        run_round(a, list);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

dht_group_commit *dht_group_commit_start(dht_replica *r)
{
    dht_group_commit *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->r = r;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, commit_main, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        return NULL;
    }
    return a;
}

int dht_group_commit_submit(dht_group_commit *a, const dht_msg *reqs, dht_msg *reps, size_t n,
                       void (*done)(void *), void *done_arg)
{
    job *j = malloc(sizeof *j);
    if (j == NULL)
        return -1;
    *j = (job){NULL, reqs, reps, n, done, done_arg};
    pthread_mutex_lock(&a->mu);
    if (a->stop) {
        pthread_mutex_unlock(&a->mu);
        free(j);
        return -1;
    }
    if (a->tail)
        a->tail->next = j;
    else
        a->head = j;
    a->tail = j;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

void dht_group_commit_stop(dht_group_commit *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->reqs);
    free(a->reps);
    free(a);
}
