/* The configuration(s) operations run on: a view.
 *
 * Stable, a view is one configuration (epoch e).  While the members change
 * from configuration e to e+1 it is joint: both, and an operation on key k
 * must reach a quorum of k's replicas under each (docs/design.md,
 * "Membership changes").  Every quorum of the joint view then meets every
 * quorum of either configuration, so operations coordinated by nodes that
 * have not heard of the change yet (they use e alone) and by those that
 * already left it behind (e+1 alone, once the new replicas hold the data)
 * stay linearizable with joint ones.
 *
 * The view number orders views: 2e when stable at e, 2e+1 when joint from e
 * to e+1; a replica refuses requests stamped with a lower number than its
 * own, so a sender learns that it must catch up.
 *
 * A view is immutable and reference-counted: whoever holds a reference may
 * read it from any thread.  Its memberships share positions (next is
 * derived from current, dht_membership_derive), so peer sets of both can
 * be compared. */
#ifndef DHT_VIEW_H
#define DHT_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol/membership.h"

typedef struct dht_view dht_view;

/* A view of epoch (>= 1) over cur and, when joint, next (NULL: stable).
 * With owns, the view frees both when its last reference goes; without,
 * the caller keeps them alive longer than the view.  Returns NULL on
 * allocation failure (memberships owned are then freed). */
dht_view *dht_view_new(uint64_t epoch, const dht_membership *cur, const dht_membership *next,
                       bool owns);
dht_view *dht_view_ref(dht_view *v);
void dht_view_unref(dht_view *v);

uint64_t dht_view_epoch(const dht_view *v);
bool dht_view_joint(const dht_view *v);
uint64_t dht_view_number(const dht_view *v);
const dht_membership *dht_view_current(const dht_view *v);
const dht_membership *dht_view_next(const dht_view *v); /* NULL when stable */
/* The fingerprint requests of the view carry: its newest configuration's
 * (with the view number, it names the view). */
uint64_t dht_view_fingerprint(const dht_view *v);
/* Positions of the view: the larger of its memberships'. */
int dht_view_size(const dht_view *v);

/* A key's replicas under a view: one group per configuration, each with
 * its quorum; all is their union, the peers a request goes to. */
typedef struct {
    int ngroups;
    dht_peerset group[2];
    int quorum[2];
    dht_peerset all;
} dht_key_replicas;

void dht_view_key_replicas(const dht_view *v, int64_t key, dht_key_replicas *out);
/* The same for a whole partition. */
void dht_view_partition_replicas(const dht_view *v, uint32_t part, dht_key_replicas *out);
/* Whether set holds a quorum of every group. */
bool dht_key_replicas_quorum(const dht_key_replicas *kr, const dht_peerset *set);
/* For messages: the fewest members of set in any group, and that group's
 * size and quorum. */
void dht_key_replicas_shortest(const dht_key_replicas *kr, const dht_peerset *set, int *have,
                               int *size, int *quorum);

#endif
