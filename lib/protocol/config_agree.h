/* Configuration agreement: one single-decree Paxos instance per
 * configuration epoch, so that the configuration of epoch e+1 is chosen by
 * a majority of epoch e's members and two concurrent membership changes
 * can never both win (RAMBO's reconfiguration service).
 *
 * Pure and transport-agnostic: the acceptor is a state plus handlers that
 * the node calls for incoming requests; the proposer talks to acceptors
 * 0..n-1 through dht_agree_io, which a transport (gRPC, the tests' network)
 * implements.  Values are opaque: in practice a configuration's canonical
 * text (dht_membership_describe).
 */
#ifndef DHT_CONFIG_AGREE_H
#define DHT_CONFIG_AGREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/transport.h"

/* A configuration's text is small; the bound keeps one message, one
 * persisted state and one copy in the proposer cheap. */
#define DHT_AGREE_VALUE_MAX (64 * 1024)

/* Ordered by round, then proposer id.  A proposer's id is unique (e.g. a
 * hash of its address mixed with a random incarnation, never 0) and its
 * rounds only grow, so no two proposals share a ballot.  {0, 0} is "no
 * ballot": below every real one. */
typedef struct {
    uint64_t round;
    uint64_t id;
} dht_agree_ballot;

int dht_agree_ballot_cmp(dht_agree_ballot a, dht_agree_ballot b); /* <0, 0, >0 */
/* The highest round an acceptor takes, and the most a request's round may
 * exceed the acceptor's promise by (a request beyond either is malformed):
 * so that a hostile ballot cannot leave proposers no round to outbid it. */
#define DHT_AGREE_ROUND_MAX (UINT64_C(1) << 62)
#define DHT_AGREE_ROUND_STEP (UINT64_C(1) << 32)

typedef enum {
    DHT_AGREE_PREPARE = 1, /* phase 1 request: epoch, ballot                      */
    DHT_AGREE_PROMISE,     /* ballot (echoed), accepted + value (none: {0,0}, 0)  */
    DHT_AGREE_ACCEPT,      /* phase 2 request: epoch, ballot, value               */
    DHT_AGREE_ACCEPTED,    /* ballot (echoed)                                     */
    DHT_AGREE_NACK,        /* ballot: the higher ballot the acceptor promised     */
    DHT_AGREE_DECIDED,     /* epoch is decided: epoch, its value                  */
    DHT_AGREE_STALE,       /* acceptor is past epoch: epoch = its decided epoch,
                              value = that epoch's configuration (to catch up)    */
    DHT_AGREE_BEHIND       /* acceptor lacks epoch-1's configuration:
                              epoch = its decided epoch                           */
} dht_agree_type;

const char *dht_agree_type_name(dht_agree_type t);

/* A message never owns its value.  The sender keeps value alive until
 * send (or the handler) returns; whoever receives it copies what it keeps. */
typedef struct {
    dht_agree_type type;
    uint64_t epoch;
    dht_agree_ballot ballot;
    dht_agree_ballot accepted;
    const uint8_t *value;
    size_t len;
} dht_agree_msg;

/* ---- Acceptor ---------------------------------------------------------
 *
 * The instance for one slot, epoch decided_epoch+1, together with the
 * configuration of decided_epoch (to answer proposers that are late).
 * Fields are for reading; change them only through the functions below.
 *
 * DURABILITY: every handler returns 1 when it changed the state.  The
 * caller must then persist the state (dht_agree_acceptor_encode, written
 * durably) BEFORE it sends the reply: a promise or an acceptance that a
 * restart forgets lets two values be chosen.
 *
 * Not thread-safe: the node serialises calls on one acceptor.
 */
typedef struct {
    uint64_t decided_epoch;     /* 0: nothing decided yet (decided_len 0) */
    uint8_t *decided;           /* decided_epoch's value                  */
    size_t decided_len;
    dht_agree_ballot promised;  /* for the open slot                      */
    dht_agree_ballot accepted;  /* {0,0}: nothing accepted (value_len 0)  */
    uint8_t *value;
    size_t value_len;
} dht_agree_acceptor;

/* Starts at the configuration (epoch, value) the node holds: epoch 0 with
 * no value, or epoch >= 1 with 1..DHT_AGREE_VALUE_MAX bytes (copied).
 * 0, or -1 on bad arguments or allocation failure (nothing to free).
 * The acceptor owns its buffers; dht_agree_acceptor_free releases them
 * (not a itself, which is the caller's). */
int dht_agree_acceptor_init(dht_agree_acceptor *a, uint64_t epoch, const uint8_t *value,
                            size_t len);
void dht_agree_acceptor_free(dht_agree_acceptor *a);

/* Answers a PREPARE or ACCEPT request into *reply:
 *   epoch == decided_epoch+1  PREPARE: PROMISE if ballot >= promised
 *                             (equal: a repeated request gets the same
 *                             promise again), else NACK;  ACCEPT: ACCEPTED
 *                             if ballot >= promised, else NACK;
 *   epoch == decided_epoch    DECIDED;   epoch < decided_epoch  STALE;
 *   epoch >  decided_epoch+1  BEHIND.
 * reply->value points into the acceptor: valid until its next call.
 * Returns 1 (state changed: persist, then reply), 0 (reply at once) or -1
 * (malformed request or allocation failure: state unchanged, no reply;
 * answer the call with an error). */
int dht_agree_acceptor_handle(dht_agree_acceptor *a, const dht_agree_msg *req,
                              dht_agree_msg *reply);

/* The node installs the decided configuration of epoch (learned from a
 * proposer's outcome or from a peer): the slot moves to epoch+1 with a
 * fresh promise.  1 (changed: persist), 0 (epoch <= decided_epoch, nothing
 * to do) or -1 (bad value or allocation failure, state unchanged). */
int dht_agree_acceptor_decide(dht_agree_acceptor *a, uint64_t epoch, const uint8_t *value,
                              size_t len);

/* The whole state as bytes, versioned and checksummed.  Returns the
 * length needed; writes only when it fits in cap (as snprintf). */
size_t dht_agree_acceptor_encode(const dht_agree_acceptor *a, uint8_t *buf, size_t cap);
/* Strict: the exact encoding of a consistent state or an error.  On 0,
 * *out is initialised (free it with dht_agree_acceptor_free); on -1, *out
 * is untouched and err holds a one-line reason. */
int dht_agree_acceptor_decode(dht_agree_acceptor *out, const uint8_t *buf, size_t len,
                              char *err, size_t errlen);

/* ---- Proposer ---------------------------------------------------------
 *
 * Proposes one value for one epoch: phase 1 (PREPARE to all; with a
 * quorum of promises, adopt the value of the highest accepted ballot among
 * them, else its own), phase 2 (ACCEPT to all; a quorum of ACCEPTED means
 * chosen).  A NACK, a phase that gets no quorum within phase_timeout, or
 * one where every acceptor answered without a quorum, ends the round: a
 * randomised doubling backoff, then a round above every ballot seen.
 */

/* status is DHT_OK with a reply, or an error with reply NULL; reply is
 * valid only during the call. */
typedef void (*dht_agree_reply_cb)(void *arg, dht_status status, const dht_agree_msg *reply);

/* Same contract as dht_transport (transport.h): send returns nonzero (not
 * sent, cb never runs) or 0, and then cb runs exactly once, later, never
 * inside send, with a reply or a failure; after runs cb once after the
 * delay, never inside after; now is monotonic nanoseconds.  Callbacks may
 * come from any thread.  arg must outlive every callback owed. */
typedef struct {
    int (*send)(void *arg, int acceptor, const dht_agree_msg *m, dht_agree_reply_cb cb,
                void *cb_arg);
    int (*after)(void *arg, int64_t delay_ns, void (*cb)(void *), void *cb_arg);
    int64_t (*now)(void *arg);
    void *arg;
} dht_agree_io;

typedef struct {
    uint64_t epoch;           /* the slot: the proposer's decided epoch + 1 (>= 1) */
    int nacceptors;           /* epoch-1's members, 1..DHT_MAX_MEMBERS; quorum n/2+1 */
    uint64_t id;              /* unique among proposers, nonzero (see ballots)      */
    uint64_t seed;            /* backoff jitter                                    */
    int64_t deadline_ns;      /* absolute, on io.now                               */
    int64_t phase_timeout_ns; /* default 200 ms                                    */
    int64_t backoff_min_ns;   /* default 2 ms                                      */
    int64_t backoff_max_ns;   /* default 200 ms                                    */
} dht_agree_config;

/* Defaults for the timings; epoch, nacceptors, id, seed and deadline are
 * the caller's to set. */
void dht_agree_config_default(dht_agree_config *cfg);

typedef enum {
    DHT_AGREE_CHOSEN = 0,  /* value is epoch's configuration, final            */
    DHT_AGREE_ERR_STALE,   /* epoch was decided long ago: epoch/value are a
                              newer configuration; catch up, then retry       */
    DHT_AGREE_ERR_BEHIND,  /* too many acceptors lack epoch-1's configuration
                              for a quorum; epoch: the highest they hold      */
    DHT_AGREE_ERR_TIMEOUT, /* deadline passed; a value may still be chosen    */
    DHT_AGREE_ERR_IO       /* the io refused every send and timer             */
} dht_agree_outcome;

typedef struct {
    dht_agree_outcome outcome;
    uint64_t epoch;
    const uint8_t *value; /* CHOSEN, STALE; valid only during the callback  */
    size_t len;
    bool was_mine;        /* CHOSEN and the value is byte-equal to ours     */
    const char *reason;   /* NULL when CHOSEN; valid during the callback    */
} dht_agree_result;

typedef void (*dht_agree_done_cb)(void *arg, const dht_agree_result *r);

/* Starts a proposal of value (1..DHT_AGREE_VALUE_MAX bytes, copied).
 * Returns 0, and done then runs exactly once, never inside this call; or
 * -1 (bad config, allocation failure, io refused everything) and done
 * never runs.  io is copied.
 *
 * Ownership: there is no handle.  The proposer owns itself and frees
 * itself once done has returned and every send and timer callback it is
 * owed has come back (late replies are recognised by a phase generation
 * and ignored), so its memory outlives done by at most phase_timeout or
 * the slowest reply.  The deadline is the only way to stop it early.
 *
 * Thread-safety: all of one proposer's callbacks are serialised by a mutex
 * inside it; done runs outside that mutex, once.  send and after are
 * called with that mutex held, so they must not wait for a callback of
 * the same proposer (the io contract already forbids calling it inline). */
int dht_agree_propose(const dht_agree_io *io, const dht_agree_config *cfg, const uint8_t *value,
                      size_t len, dht_agree_done_cb done, void *done_arg);

#endif
