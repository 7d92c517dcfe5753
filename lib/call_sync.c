#include "call_sync.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    dht_transport *t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    dht_status st;
    dht_msg reply; /* entries: our own copy */
    char error[256];
} waiter;

static void on_reply(void *arg, dht_status st, const dht_msg *rep)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->st = st;
    if (st != DHT_OK && w->t->ops->last_error != NULL)
        snprintf(w->error, sizeof w->error, "%s", w->t->ops->last_error(w->t));
    if (st == DHT_OK && rep) {
        w->reply = *rep;
        w->reply.entries = NULL;
        if (rep->nentries) {
            /* The transport frees its copy after we return. */
            w->reply.entries = malloc(rep->nentries * sizeof *rep->entries);
            if (w->reply.entries)
                memcpy(w->reply.entries, rep->entries, rep->nentries * sizeof *rep->entries);
            else
                w->st = DHT_ERR_REMOTE;
        }
    }
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

dht_status dht_call_sync(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                         dht_msg *reply, char *err, size_t errlen)
{
    waiter w;
    memset(&w, 0, sizeof w);
    w.t = t;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if (dht_transport_send(t, peer, req, deadline_ns, on_reply, &w) != 0) {
        w.st = DHT_ERR_SHUTDOWN;
    } else {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    *reply = w.reply;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", w.error[0] ? w.error : dht_status_name(w.st));
    return w.st;
}
