/* Membership and quorum arithmetic: the one place that knows who the
 * members are, which of them this process is, which members replicate a
 * key, and how many answers make a quorum or a complete recovery.
 *
 * The coordinator, recovery and the node ask this module; none of them
 * computes n/2+1 or walks an address list itself, so that partitioning the
 * key space and changing members later change this module, not them.
 *
 * Identity is an address, not a position: a node is the member whose
 * "host:port" matches the address it advertises.  Addresses are compared
 * after normalisation (case-folded host; "localhost" and "0.0.0.0" are
 * 127.0.0.1; an IPv6 literal must be bracketed, [::1]:50001, and is kept
 * as written), so a list that says localhost:50001 finds a node started as
 * 127.0.0.1:50001.  Positions (0..n-1) are what the transports index peers
 * by; they stay internal to one process.
 *
 * A dht_membership is immutable once made, so any thread may read it
 * without locks.  Whoever made it frees it (dht_membership_free), after
 * everything that was given it is gone.
 */
#ifndef DHT_MEMBERSHIP_H
#define DHT_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The member limit of the whole system: lists, peer sets, transports and
 * the simulator are all sized by this one constant. */
#define DHT_MAX_MEMBERS 128
/* Longest "host:port" kept, terminating NUL included. */
#define DHT_ADDR_MAX 256

/* A set of member positions, for per-round tallies (asked, granted, ...). */
typedef struct {
    uint64_t w[(DHT_MAX_MEMBERS + 63) / 64];
} dht_peerset;

static inline void dht_peerset_add(dht_peerset *s, int p)
{
    s->w[p >> 6] |= UINT64_C(1) << (p & 63);
}

static inline bool dht_peerset_has(const dht_peerset *s, int p)
{
    return (s->w[p >> 6] >> (p & 63)) & 1;
}

static inline bool dht_peerset_equal(const dht_peerset *a, const dht_peerset *b)
{
    for (size_t i = 0; i < sizeof a->w / sizeof a->w[0]; i++)
        if (a->w[i] != b->w[i])
            return false;
    return true;
}

/* How many members a and b have in common (a quorum test counts these). */
static inline int dht_peerset_common(const dht_peerset *a, const dht_peerset *b)
{
    int n = 0;
    for (size_t i = 0; i < sizeof a->w / sizeof a->w[0]; i++)
        n += __builtin_popcountll(a->w[i] & b->w[i]);
    return n;
}

static inline int dht_peerset_count(const dht_peerset *s)
{
    int n = 0;
    for (size_t i = 0; i < sizeof s->w / sizeof s->w[0]; i++)
        n += __builtin_popcountll(s->w[i]);
    return n;
}

typedef struct dht_membership dht_membership;

/* Placement (docs/design.md, "Placement").  A key belongs to one of
 * DHT_PARTITIONS partitions (a hash of the key); each partition is stored
 * on R members, chosen by rendezvous hashing: every member scores the
 * partition with a hash of (its normalised address, the partition) and the
 * R highest scores win.  Positions, list order and spelling of an address
 * play no part, so every process that was given the same members (in any
 * order, as localhost or 127.0.0.1) and R computes the same replica sets;
 * adding or removing one member changes one replica of exactly the
 * partitions it enters or leaves (about R/N of them) and nothing else. */
#define DHT_PARTITIONS 65536
#define DHT_REPLICAS_DEFAULT 3

/* Parses a comma-separated "host:port" list (1..DHT_MAX_MEMBERS entries,
 * each validated, duplicates after normalisation refused).  self_addr is
 * this process's advertised address, or NULL for a process that is not a
 * member (the fan-out client).  A self_addr that is not in the list is an
 * error.  replicas is R, 1..n; 0 takes the default, min(3, n).  Returns 0,
 * or -1 with a one-line reason in err. */
int dht_membership_new(const char *list, const char *self_addr, int replicas,
                       dht_membership **out, char *err, size_t errlen);
void dht_membership_free(dht_membership *m);

/* Positions: what transports index peers by, 0..size-1.  A membership made
 * by dht_membership_new has one per member, in list order.  One made by
 * dht_membership_derive keeps its base's positions (so that peer sets of
 * the two can be compared: a configuration change runs operations on both)
 * and appends new members' after them; a member that left keeps its
 * position, no longer a member (it stores nothing). */
int dht_membership_size(const dht_membership *m);
/* How many members, and whether position p is one. */
int dht_membership_members(const dht_membership *m);
bool dht_membership_is_member(const dht_membership *m, int p);
/* The configuration `list` (with R = replicas, 0: the default) over base's
 * positions, as described above; self is base's.  At most DHT_MAX_MEMBERS
 * positions in all: 0, or -1 with a reason. */
int dht_membership_derive(const dht_membership *base, const char *list, int replicas,
                          dht_membership **out, char *err, size_t errlen);
/* This process's position (possibly no longer a member's: see
 * dht_membership_is_member), or -1 when it has none. */
int dht_membership_self(const dht_membership *m);
/* Member p's address as listed (p in 0..size-1; NULL otherwise). */
const char *dht_membership_addr(const dht_membership *m, int p);
/* Position of the member addr (normalised), or -1; find_slot also finds
 * positions of departed members. */
int dht_membership_find(const dht_membership *m, const char *addr);
int dht_membership_find_slot(const dht_membership *m, const char *addr);

/* Member p's normalised address (see below), or NULL. */
const char *dht_membership_norm(const dht_membership *m, int p);
/* Member p's id: a 64-bit hash of its normalised address, the same in
 * every process (requests name a member by it); 0 for p out of range. */
uint64_t dht_membership_member_id(const dht_membership *m, int p);
/* Position of the member with that id, or -1 (also for departed ones). */
int dht_membership_find_id(const dht_membership *m, uint64_t id);

/* The partition of a key: 0..DHT_PARTITIONS-1, the same everywhere. */
uint32_t dht_partition_of(int64_t key);
/* The members that store partition part / key (R of them), and how many
 * of them must answer for a read or write to count: a majority of R. */
const dht_peerset *dht_membership_partition_replicas(const dht_membership *m, uint32_t part);
dht_peerset dht_membership_replicas(const dht_membership *m, int64_t key);
bool dht_membership_stores(const dht_membership *m, int p, int64_t key);
int dht_membership_replica_count(const dht_membership *m);
int dht_membership_quorum(const dht_membership *m);
/* How many partitions member p stores. */
int dht_membership_partition_count(const dht_membership *m, int p);

/* The configuration in one line, canonical: "replicas=R partitions=P
 * members=A,B,C" with the normalised addresses sorted; two processes place
 * keys alike exactly when these lines are equal.  The fingerprint is a
 * 64-bit hash of that line, never 0: requests between members carry it
 * and a node refuses those whose fingerprint is not its own.  describe
 * returns the length it needed (as snprintf). */
size_t dht_membership_describe(const dht_membership *m, char *buf, size_t len);
uint64_t dht_membership_fingerprint(const dht_membership *m);
/* How many replicas other than a recovering one must be copied so that
 * the copy intersects every quorum that may have acknowledged a write
 * without it: R - Q + 1.  (With R = 1 that is 1 although there is no
 * other replica: a lone replica has nothing to recover from.) */
int dht_membership_recovery_sources(const dht_membership *m);

/* Normalises "host:port" into out (see above); 0, or -1 with err set. */
int dht_member_addr_normalise(const char *addr, char *out, size_t outlen, char *err,
                              size_t errlen);

#endif
