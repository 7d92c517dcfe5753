#include "protocol/blocking_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

typedef struct {
    dht_transport *t;
    dht_latch latch;
    dht_status st;
    dht_msg reply; /* entries: our own copy */
    char error[256];
} waiter;

static void on_reply(void *arg, dht_status st, const dht_msg *rep)
{
    waiter *w = arg;
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
    dht_latch_open(&w->latch);
}

dht_status dht_call_blocking(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                         dht_msg *reply, char *err, size_t errlen)
{
    waiter w;
    memset(&w, 0, sizeof w);
    w.t = t;
    dht_latch_init(&w.latch);
    if (dht_transport_send(t, peer, req, deadline_ns, on_reply, &w) != 0)
        w.st = DHT_ERR_SHUTDOWN;
    else
        dht_latch_wait(&w.latch);
    dht_latch_destroy(&w.latch);
    *reply = w.reply;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", w.error[0] ? w.error : dht_status_name(w.st));
    return w.st;
}
