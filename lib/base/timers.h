/* A timer service: one thread running callbacks at their due time, in
 * (time, insertion) order.  Used by transports to implement after(). */
#ifndef DHT_TIMERS_H
#define DHT_TIMERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct dht_timers dht_timers;

dht_timers *dht_timers_start(void);
/* Runs cb(arg) on the timer thread after delay_ns; -1 once stopping. */
int dht_timers_add(dht_timers *t, int64_t delay_ns, void (*cb)(void *), void *arg);
/* As dht_timers_add, returning a handle for dht_timers_cancel (NULL on
 * failure). */
void *dht_timers_add_cancelable(dht_timers *t, int64_t delay_ns, void (*cb)(void *), void *arg);
/* Revokes a timer from dht_timers_add_cancelable: returns 1 if it had not
 * started (cb will never run), 0 if cb is running or has run.  Call it at
 * most once per handle, and not after cb has returned. */
int dht_timers_cancel(dht_timers *t, void *handle);
/* Timers that will still run (revoked ones do not count). */
size_t dht_timers_pending(dht_timers *t);
/* Refuses new timers, runs the pending ones when due (revoked ones are
 * dropped without waiting for their time), joins and frees. */
void dht_timers_stop(dht_timers *t);

#endif
