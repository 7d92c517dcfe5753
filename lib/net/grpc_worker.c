/* The worker threads: each blocks on its own completion queue and hands
 * every event to its owner through the one switch over the tag kinds; it
 * drains its corked work (cork.c) when no event is waiting. */
#include <pthread.h>

#include "net/grpc_internal.h"

_Thread_local worker *dht_grpc_tl_worker;

void *dht_grpc_worker_main(void *arg)
{
    worker *w = arg;
    int since_drain = 0;
    dht_grpc_tl_worker = w;
    pthread_setname_np(pthread_self(), "dht-worker");
    for (;;) {
        /* With work corked, only look for events already there; when none
         * is (or after DRAIN_EVERY of them), send it. */
        bool corked = dht_grpc_worker_corked(w);
        grpc_event ev = grpc_completion_queue_next(
            w->cq, corked ? gpr_time_0(GPR_CLOCK_MONOTONIC) : gpr_inf_future(GPR_CLOCK_MONOTONIC),
            NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE || ++since_drain >= DRAIN_EVERY) {
            dht_grpc_worker_drain(w);
            since_drain = 0;
        }
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        tag_kind *k = ev.tag;
        switch (*k) {
        case TAG_CLIENT_CALL:
            dht_grpc_client_call_done((ccall *)k, ev.success);
            break;
        case TAG_SERVER_NEW:
            dht_grpc_server_call_arrived((scall *)k, ev.success);
            break;
        case TAG_SERVER_DONE: {
            scall *s = (scall *)k;
            grpc_slice_unref(s->status_details);
            dht_grpc_scall_free(s);
            break;
        }
        case TAG_SHUTDOWN:
            atomic_store(&w->g->shutdown_tag.done, true);
            break;
        case TAG_CS_SEND:
            dht_grpc_cs_send_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_CS_RECV:
            dht_grpc_cs_recv_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_CS_STATUS:
            dht_grpc_cs_status_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_SS_SEND:
            dht_grpc_ss_send_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_SS_RECV:
            dht_grpc_ss_recv_done(((otag *)k)->owner, ev.success);
            break;
        case TAG_SS_CLOSE:
            dht_grpc_ss_close_done(((otag *)k)->owner);
            break;
        }
    }
    return NULL;
}
