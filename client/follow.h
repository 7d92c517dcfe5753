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
 * checked: admin_legacy_replicas). */
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

/* Starts reloading into c (which must outlive follow_stop).  0, or -1 when
 * the thread cannot start (the client then keeps its first view). */
int follow_start(follow *f, dht_coord *c);
/* Stops the reloads and waits for the one in progress (at most about a
 * second).  Idempotent. */
void follow_stop(follow *f);
/* After follow_stop and once nothing calls follow_refused any more. */
void follow_free(follow *f);

#endif
