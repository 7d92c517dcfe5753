/* `client members`: the nodes' configuration (dht.Admin/Stats), and
 * membership changes (`members add|remove HOST:PORT`: a CHANGE over the
 * control channel, protocol/control.h, which the node that receives it
 * drives to completion before it answers). */
#ifndef DHT_CLIENT_MEMBERS_H
#define DHT_CLIENT_MEMBERS_H

#include <stdbool.h>
#include <stdint.h>

#include "net/transport_grpc.h"
#include "protocol/control.h"
#include "protocol/membership.h"

/* Exit statuses of `members add|remove` (besides 2, bad usage). */
#define MEMBERS_DONE 0    /* the node completed the change */
#define MEMBERS_FAILED 1  /* the node refused it or says it failed; or no node reachable */
#define MEMBERS_UNKNOWN 3 /* no answer: the change may or may not have happened */

/* Prints the configuration of the highest view that the nodes of m
 * (positions in order) report, as text or one JSON object; lagging and
 * silent nodes go to stderr (text) or into the object.  0, or 1 when no
 * node answers. */
int members_show(const dht_membership *m, int64_t deadline_ms, const dht_grpc_tls *tls, bool json);

/* Asks the first node of m that can be reached to add or remove addr (a
 * valid HOST:PORT, at most DHT_CONTROL_ADDR_MAX bytes), waiting up to
 * timeout_ms in all; prints the node's answer.  Returns one of the
 * MEMBERS_ statuses. */
int members_change(const dht_membership *m, dht_change_op op, const char *addr,
                   int64_t timeout_ms, const dht_grpc_tls *tls);

#endif
