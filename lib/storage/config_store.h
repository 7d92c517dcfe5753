/* The configuration a node knows, kept durably in its data directory.
 *
 * With online membership changes the MEMBERS a node is started with is only
 * a seed: once a node has taken part in a change, what it learnt (the
 * configuration, a change in progress, its promises as a Paxos acceptor)
 * must survive a restart, or it could vote twice or serve keys under a
 * configuration that no longer exists.  This module is that record and
 * nothing else: it reads and writes one file and checks that what it
 * holds is coherent; deciding what goes into it is the caller's.
 *
 * A configuration is an epoch (>= 1), R (replicas per key) and its members
 * (normalised "host:port" addresses, dht_member_addr_normalise).  During a
 * change the node is in a joint state: its current configuration (epoch e)
 * plus the next one (epoch e + 1) being installed; once the change is done
 * the next becomes the current.  Epoch e + 1 is chosen by Paxos among epoch
 * e's members; the acceptor state is opaque here (another module encodes
 * it) and is saved with the rest so one rename publishes both.
 *
 * Invariants (checked by save, so nothing incoherent is ever written, and
 * again by load, so an edited file cannot smuggle one in):
 *   - self is non-empty and normalises to itself;
 *   - epoch >= 1; members is canonical: comma-separated, every entry
 *     normalises to itself, sorted by strcmp (as dht_membership_describe
 *     sorts), no duplicates, 1..DHT_MAX_MEMBERS entries; 1 <= replicas <=
 *     that count;
 *   - no joint state (next_epoch == 0): next_replicas == 0, next_members ==
 *     NULL, transfer_done false (a transfer towards nothing cannot be done);
 *   - joint state: next_epoch == epoch + 1 (a change installs exactly the
 *     following epoch; epoch UINT64_MAX has no successor), next_members
 *     canonical as above, 1 <= next_replicas <= its count;
 *   - removed_epoch == 0 (still a member): self is listed in members or in
 *     next_members (joining or leaving).  A node that is in neither has no
 *     business holding a configuration: a node waiting to join saves
 *     nothing until it appears in a next configuration;
 *   - removed_epoch != 0: no joint state (a removed node takes no part in
 *     any further change, and the change that removed it is over), and
 *     removed_epoch >= epoch; when equal, the recorded configuration is
 *     the one that removed the node, so self must not be in its members;
 *   - acceptor_len <= DHT_CONFIG_ACCEPTOR_MAX, acceptor non-NULL when
 *     acceptor_len > 0.
 *   cluster_id is not constrained (0 = none yet).
 *
 * The file, DATA_DIR/config, is text so that `cat` shows what a node
 * believes:
 *     dht-config 1
 *     self = 127.0.0.1:50001
 *     cluster_id = 3f2a...            16 lowercase hex digits
 *     epoch = 3
 *     replicas = 3
 *     members = 127.0.0.1:50001,...
 *     next_epoch = 0                  0: no joint state
 *     next_replicas = 0
 *     next_members =                  empty when next_epoch is 0
 *     transfer_done = no              yes | no
 *     removed_epoch = 0
 *     acceptor = 00ff...              lowercase hex, may be empty
 *     crc32c = 1a2b3c4d               over every byte before this line
 * Every key exactly once (any order), numbers in canonical decimal, a
 * newline after every line, nothing after the checksum line.
 *
 * If load reports the file damaged (bad checksum, truncated, unparsable):
 * do not edit it back into shape.  The node cannot know which
 * configuration it belongs to nor what it promised as an acceptor, and a
 * guess can let two different configurations be chosen for one epoch.
 * Restore the file from a backup taken after the node's last change, or
 * treat the node as lost: remove it from the cluster through the other
 * members, wipe its data directory, and add it back as a new node.
 *
 * Concurrency: none inside.  One caller at a time per directory (the data
 * directory's LOCK, taken by the WAL, keeps other processes out); records
 * themselves are plain values.
 */
#ifndef DHT_CONFIG_STORE_H
#define DHT_CONFIG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the acceptor module's encoding of a value as large as a
 * members list, plus its own header. */
#define DHT_CONFIG_ACCEPTOR_MAX (64 * 1024 + 256)

/* Every pointer is owned by the record: malloc'ed, released by
 * dht_config_record_free.  A zeroed record owns nothing. */
typedef struct {
    char *self;             /* this node's advertised address: its identity */
    uint64_t cluster_id;    /* 0: none yet */
    uint64_t epoch;
    int replicas;
    char *members;          /* canonical list */
    uint64_t next_epoch;    /* 0: no joint state; else epoch + 1 */
    int next_replicas;      /* 0 without a joint state */
    char *next_members;     /* canonical list; NULL without a joint state */
    bool transfer_done;     /* copied what the next configuration gives us */
    uint64_t removed_epoch; /* 0: member; else refuse every request, for good */
    uint8_t *acceptor;      /* opaque; NULL when acceptor_len is 0 */
    size_t acceptor_len;
} dht_config_record;

/* Reads DIR/config into *out (whose previous contents are overwritten, not
 * freed).  Returns 0: loaded, valid, *out owned by the caller; 1: there is
 * no record (no such file: a new directory, or one made before records
 * existed; a leftover config.tmp is not a record); -1: unusable, with a
 * one-line reason naming the file and the fault.  On 1 and -1 *out is
 * zeroed. */
int dht_config_store_load(const char *dir, dht_config_record *out, char *err, size_t errlen);

/* Checks rec, then replaces DIR/config with it atomically and durably
 * (write config.tmp, fsync, rename over config, fsync the directory), so a
 * crash at any instant leaves the old record or the new one.  0, or -1
 * with a reason: an invalid record (nothing written) or an I/O failure.
 * After an I/O failure the file holds the old or the new record, and the
 * caller must not act as if the new one were durable (an acceptor must
 * not reply).  Rewrites the whole file (two fsyncs): meant for the rare
 * configuration events, not for anything per request. */
int dht_config_store_save(const char *dir, const dht_config_record *rec, char *err,
                          size_t errlen);

/* 0 if rec satisfies the invariants above, else -1 with a reason that
 * names the field. */
int dht_config_record_validate(const dht_config_record *rec, char *err, size_t errlen);

/* Deep copy into *dst (overwritten, not freed).  0, or -1 when out of
 * memory, *dst then zeroed. */
int dht_config_record_copy(dht_config_record *dst, const dht_config_record *src);

/* Frees what rec owns and zeroes it; rec itself is the caller's.  NULL and
 * zeroed records are fine. */
void dht_config_record_free(dht_config_record *rec);

/* One line for logs, e.g. "epoch 3, R=3, members a,b,c; joining epoch 4,
 * R=3, members a,b,c,d" (", transfer done" when it is; "; removed in epoch
 * 5" for a removed node).  Malloc'ed, the caller frees; NULL when out of
 * memory.  Describes whatever it is given, valid or not. */
char *dht_config_record_describe(const dht_config_record *rec);

#endif
