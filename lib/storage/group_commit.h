/* Group commit for replica batches: a thread that takes every batch of
 * replica requests queued since its last round, answers them with one
 * dht_replica_handle_batch call (so all their writes share one log write
 * and fsync), and signals each batch's completion.
 *
 * Why a thread: an fsync on a transport thread would stall every call that
 * thread serves; here the transport threads only queue, and while one fsync
 * runs the next round's batches gather behind it.  The thread runs under
 * SCHED_BATCH (Linux), so its wake-ups do not preempt transport threads. */
#ifndef DHT_GROUP_COMMIT_H
#define DHT_GROUP_COMMIT_H

#include <stddef.h>

#include "base/msg.h"
#include "protocol/replica.h"

typedef struct dht_group_commit dht_group_commit;

dht_group_commit *dht_group_commit_start(dht_replica *r);
/* Queues n requests; reps (pre-zeroed, n entries) are filled and then
 * done(done_arg) runs on the group-commit thread.  reqs and reps stay the
 * caller's and must live until done.  Returns nonzero if stopping (done
 * will not run). */
int dht_group_commit_submit(dht_group_commit *a, const dht_msg *reqs, dht_msg *reps, size_t n,
                       void (*done)(void *), void *done_arg);
/* Finishes what is queued, then joins and frees. */
void dht_group_commit_stop(dht_group_commit *a);

#endif
