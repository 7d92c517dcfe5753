/* Durable replica: ties a dht_replica to its write-ahead log (wal.c).
 *
 * Open replays the snapshot and log into the replica, installs the persist
 * hook (every accepted write is logged before it is acknowledged), marks
 * the replica recovering unless the directory says it once was part of a
 * cluster, and runs a checkpoint thread that snapshots the state and drops
 * old log segments whenever the log outgrows the live data, so restart time
 * and disk use stay bounded by the number of keys, not by history.
 *
 * Files: the WAL's (LOCK, log.*, snap.*) plus meta.initialized, written once
 * the node holds a complete state (new cluster, or recovery done). */
#ifndef DHT_DURABLE_H
#define DHT_DURABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "protocol/replica.h"
#include "storage/wal.h"

typedef struct dht_durable dht_durable;

/* r must outlive the handle.  On failure returns -1 with a one-line reason. */
int dht_durable_open(const char *dir, dht_fsync_mode mode, dht_replica *r, dht_durable **out,
                     char *err, size_t errlen);
bool dht_durable_initialized(dht_durable *d);
/* Records (durably) that the replica's state is complete. */
int dht_durable_mark_initialized(dht_durable *d, const char *why);
/* Snapshot now; 0 or -errno. */
int dht_durable_checkpoint(dht_durable *d);
/* Stops the checkpoint thread and closes the log.  No write may be in
 * flight on the replica any more. */
void dht_durable_close(dht_durable *d);

#endif
