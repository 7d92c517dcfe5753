/* Durable replica: ties a dht_replica to its write-ahead log (wal.c).
 *
 * Open replays the snapshot and log into the replica, installs the persist
 * hook (every accepted write is logged before it is acknowledged), marks
 * the replica recovering unless the directory says it once was part of a
 * cluster, and runs a checkpoint thread that snapshots the state and drops
 * old log segments whenever the log outgrows the live data, so restart time
 * and disk use stay bounded by the number of keys, not by history.
 *
 * Files: the WAL's (LOCK, log.*, snap.*) plus three meta values:
 *   meta.initialized  written once the node holds a complete state (new
 *                     cluster, or recovery done)
 *   meta.config       the configuration the directory was made for (the
 *                     line of dht_membership_describe); the server refuses
 *                     to start it under another (lib/node/server_node.c)
 *   meta.cluster_id   the id of the cluster the replica belongs to, 16 hex
 *                     digits, never 0 (docs/design.md, section 3) */
#ifndef DHT_DURABLE_H
#define DHT_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/replica.h"
#include "storage/wal.h"

typedef struct dht_durable dht_durable;

/* r must outlive the handle.  On failure (a directory that is unusable,
 * damaged or in use, or whose meta.config or meta.cluster_id cannot be
 * read) returns -1 with a one-line reason. */
int dht_durable_open(const char *dir, dht_fsync_mode mode, dht_replica *r, dht_durable **out,
                     char *err, size_t errlen);
bool dht_durable_initialized(dht_durable *d);
/* Records (durably) that the replica's state is complete. */
int dht_durable_mark_initialized(dht_durable *d, const char *why);
/* The configuration line the directory records, or NULL when it records
 * none (a new directory, or one made before configurations were recorded).
 * Valid until the next set_config or close. */
const char *dht_durable_config(dht_durable *d);
/* Records line durably (replacing any); 0 or -errno.  Start-up only: not
 * concurrent with dht_durable_config. */
int dht_durable_set_config(dht_durable *d, const char *line);
/* The recorded cluster id, 0 if none.  Any thread. */
uint64_t dht_durable_cluster_id(dht_durable *d);
/* Records id (not 0) durably before returning; 0 or -errno (logged). */
int dht_durable_set_cluster_id(dht_durable *d, uint64_t id);
/* Bytes of log segments and snapshots on disk (dht_wal_disk_bytes); >= 0 or
 * -errno.  Any thread. */
int64_t dht_durable_disk_bytes(dht_durable *d);
/* Snapshot now; 0 or -errno. */
int dht_durable_checkpoint(dht_durable *d);
/* Stops the checkpoint thread and closes the log.  No write may be in
 * flight on the replica any more. */
void dht_durable_close(dht_durable *d);

#endif
