/* The fan-out client's configuration, and following its changes.
 *
 * The nodes change their members online (protocol/reconfig.h): epoch e's
 * configuration is replaced by e+1's through a joint view of both.  A
 * client that coordinates itself must run on the nodes' view, since
 * replicas refuse requests stamped with an older one.  So it learns the
 * view from the nodes' Stats (the highest view number any of them
 * reports) and builds it as the nodes do: each configuration derived from
 * the previous one (dht_membership_derive), over the transport's peers, to
 * which new members are added at the position the derivation gives them.
 * The first is derived from the client's list (--servers: the seeds), so
 * the transport's initial peers are that list, in order.
 *
 * Afterwards it reloads: when a replica refuses a request (the
 * coordinator's on_refused), at most every 100 ms, and every 2 s anyway
 * (a client whose requests are never refused still learns new members).
 * A reload asks the current view's members (both configurations while
 * joint) and the seeds; a newer view goes to the coordinator, whose
 * operations in flight move to it between rounds.  Reloads run on a
 * thread of their own, since a Stats round waits for answers and deriving
 * a membership places 65,536 partitions: neither may hold up a transport
 * thread.
 *
 * Nodes of an earlier version report no epoch: then the list is the
 * configuration, as before (R learned, member set and fingerprint
 * checked: admin_legacy_replicas).
 *
 * The --via client (`random`) follows changes too, with the same thread
 * and the same triggers, but needs less: its calls go to one node's public
 * service, which coordinates, so it only has to know which nodes are
 * members (follow_via_new).  Its transport's peers are the listed nodes
 * first; members it learns are added after them, at whatever positions
 * the transport gives (they need not match any configuration's).  Calls
 * go to the listed nodes that are members, or, when none is (any more),
 * to the members the nodes report: so a single listed node that stays a
 * member keeps all the load, as before, and one that is removed hands it
 * to the others.  A listed node is a member when its own Stats name
 * (self) is one, so a host name given for a member's address counts.
 * When no node reports an epoch, the listed nodes are used exactly as
 * before. */
#ifndef DHT_CLIENT_FOLLOW_H
#define DHT_CLIENT_FOLLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "net/transport_grpc.h"
#include "protocol/coordinator.h"
#include "protocol/membership.h"
#include "protocol/view.h"

typedef struct follow follow;

typedef struct {
    /* The client's transport, whose peers are base's positions in order
     * (dht_grpc_start with base's addresses); Stats travel on it and new
     * members join it.  It must outlive the follower's thread
     * (follow_stop before dht_grpc_stop). */
    dht_grpc *g;
    int64_t timeout_ns; /* the first Stats round (reloads use 1 s) */
    int replicas;       /* --replicas/REPLICAS; 0: not given */
    bool announce;      /* print each new configuration on stderr (else log at info) */
} follow_config;

/* Learns the configuration from base's nodes and builds the first view.
 * Takes base (freed with the follower, or here on failure).  Returns 0
 * with *out, or the client's exit status with the reason printed: 2 for
 * --replicas past the servers of nodes that report no epoch, 1 otherwise
 * (the nodes disagree with --replicas, or with each other). */
int follow_new(const follow_config *cfg, dht_membership *base, follow **out);

/* The view to run on now: a new reference (the caller unrefs). */
dht_view *follow_view(follow *f);

/* For dht_coord_config.on_refused (arg: the follower): asks for a reload.
 * Any thread, never blocks for long (a flag and a signal); harmless until
 * follow_free, also after follow_stop. */
void follow_refused(void *arg);

/* Starts reloading into c (which must outlive follow_stop; NULL for a
 * --via follower).  0, or -1 when the thread cannot start (the client then
 * keeps its first view, or --via its first member set). */
int follow_start(follow *f, dht_coord *c);
/* Stops the reloads and waits for the one in progress (at most about a
 * second).  Idempotent. */
void follow_stop(follow *f);
/* After follow_stop and once nothing calls follow_refused (or the
 * follow_via_* functions) any more. */
void follow_free(follow *f);

/* ---- --via ---------------------------------------------------------------
 * cfg->g's peers are listed's nodes in order (dht_grpc_start with
 * listed's addresses); cfg->replicas is not used.  Takes listed (freed
 * with the follower, or here on failure).  Asks the listed nodes' Stats
 * once (bounded by cfg->timeout_ns) and learns the members when they
 * report an epoch.  0 with *out, or 1 (out of memory, said on stderr).
 * Then follow_start(f, NULL) for the reloads. */
int follow_via_new(const follow_config *cfg, dht_membership *listed, follow **out);

/* How many nodes were listed (transport peers 0..n-1). */
int follow_via_listed(const follow *f);

/* The peer a call should go to now, for client `slot` of a load whose
 * last call went to `peer`: peer itself while calls may go there, the
 * next usable node after it when failed (its call could not reach it:
 * "moves on"), or, when peer may no longer be used (not a member, says
 * it serves nothing), the usable node slot mod their number, so that the
 * clients of a removed node spread over the others.  Any thread. */
int follow_via_peer(follow *f, int peer, int slot, bool failed);

/* A call to peer failed at the transport level (UNAVAILABLE or deadline)
 * with why (the transport's text): asks for a reload, and when the node
 * itself said that it serves nothing (removed, or joining and not a
 * member yet), stops sending to it at once, without waiting for the
 * reload (else every client's next call would fail the same way until
 * then).  Any thread; never blocks for long. */
void follow_via_failed(follow *f, int peer, const char *why);

#endif
