/* Deterministic in-memory network for protocol tests.
 *
 * A sim_world holds N replicas and any number of coordinator endpoints, a
 * virtual clock and one event queue.  Every message gets a random delay
 * (so messages reorder), may be lost, and meets crashed, paused or
 * partitioned replicas exactly as a real network would: a crashed replica
 * refuses at once (UNAVAILABLE), a lost or cut message times out at its
 * deadline, a paused replica queues requests and serves them, stale, when
 * resumed.  Everything derives from one seed, so a failing run replays
 * exactly.  Single-threaded: the test drives it with sim_run*().
 *
 * For membership changes the endpoints also implement, like the gRPC
 * transport: control() (opaque bytes to a bound node's service.control,
 * with the delays, loss, cuts and crashes of requests; no control service:
 * DHT_ERR_REMOTE, "UNIMPLEMENTED: ..."), the bound node's check_config at
 * delivery (a refused request comes back as DHT_ERR_REMOTE with
 * "FAILED_PRECONDITION: why" in last_error; the simulator has no static
 * fingerprint, so a request without a stamp is checked as (0, 0)), and
 * add_peer over the slots' synthetic addresses (see first_port).
 */
#ifndef DHT_SIM_TRANSPORT_H
#define DHT_SIM_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol/replica.h"
#include "protocol/transport.h"

typedef struct sim_world sim_world;

typedef struct {
    uint64_t seed;
    int replicas;          /* N */
    int endpoints;         /* coordinator endpoints made at start; more: sim_endpoint_add */
    double loss;           /* probability each request or reply is lost */
    int64_t delay_min_ns;  /* one-way delay range; default 100 us .. 2 ms */
    int64_t delay_max_ns;
    /* Slot r's synthetic address is 127.0.0.1:(first_port + r): add_peer
     * maps such an address (normalised) to slot r, raising the endpoint's
     * npeers to at least r + 1, and refuses any other (-1).  0: 1, the
     * numbering of 127.0.0.1:1..N member lists. */
    int first_port;
} sim_config;

sim_world *sim_new(const sim_config *cfg);
void sim_free(sim_world *w); /* after sim_run() drained every event */

dht_transport *sim_endpoint(sim_world *w, int e);
dht_replica *sim_replica(sim_world *w, int r);
int64_t sim_now(sim_world *w);
uint64_t sim_rand(sim_world *w, uint64_t n); /* uniform in [0, n), from the seed */
/* Uniform in [lo, hi) from the seed; lo when the range is empty. */
int64_t sim_rand_between(sim_world *w, int64_t lo, int64_t hi);

void sim_set_loss(sim_world *w, double loss);
void sim_crash(sim_world *w, int r);
/* Brings r back.  Locks are lost (they are memory only); data survives
 * (as if logged) unless wipe is set. */
void sim_restart(sim_world *w, int r, bool wipe);
void sim_pause(sim_world *w, int r);
void sim_resume(sim_world *w, int r);
/* Cuts (or heals) the link between endpoint e and replica r, both ways. */
void sim_cut(sim_world *w, int e, int r, bool cut);
void sim_heal_all(sim_world *w);

/* Nodes: a replica slot bound to a node's service hands each request to
 * its replica_batch (a batch of one) and replies when the node answers,
 * which may be later (group commit).  A crash of a bound slot drops what
 * its node had not answered; the node's own transport is then killed
 * (sim_endpoint_kill) so its leftover state machines hear only failures.
 * A restart binds the slot to the next incarnation's service. */
void sim_bind(sim_world *w, int r, const dht_service *svc);
void sim_restart_bound(sim_world *w, int r, const dht_service *svc);
/* Adds an endpoint (a process's transport); its index, or -1 at the limit. */
int sim_endpoint_add(sim_world *w);
/* The endpoint's process died: its sends fail at once (DHT_ERR_SHUTDOWN)
 * and replies to it arrive as DHT_ERR_SHUTDOWN; its timers still run, so
 * what it had started can wind down and be freed. */
void sim_endpoint_kill(sim_world *w, int e);

/* A text trace of every event processed (and of sim_tracef lines): two
 * runs of one seed must produce the same bytes. */
void sim_trace_enable(sim_world *w, bool on);
void sim_tracef(sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *sim_trace_text(sim_world *w); /* owned by w */

/* Schedules fn(arg) at virtual time `at` (test-driver events). */
void sim_at(sim_world *w, int64_t at, void (*fn)(void *), void *arg);

/* Processes events in time order: until none is left, or until the clock
 * would pass t.  Returns the number processed. */
long sim_run(sim_world *w);
long sim_run_until(sim_world *w, int64_t t);

#endif
