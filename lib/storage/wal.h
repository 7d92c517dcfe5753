/*
 * wal.h - durability layer: write-ahead log + snapshot per data directory.
 *
 * A dht_wal owns one data directory.  Records are (key, value, version) where
 * the version is (counter, writer), compared lexicographically by the caller.
 * Replay calls the caller's apply function for every stored record; the caller
 * keeps the maximum version per key, so seeing a record more than once (e.g.
 * in both the snapshot and a log segment) is harmless.
 *
 * Files in the data directory (format details at the top of wal.c):
 *   LOCK                  flock()ed while open; contains the owner's pid
 *   log.<16 digits>       log segments, fixed-size CRC32C-checked records
 *   snap.<16 digits>      snapshot covering every segment numbered below it
 *   meta.<name>           small durable named values (dht_wal_meta_*)
 *   *.tmp                 in-progress atomic writes; removed at open
 *
 * Thread-safety: dht_wal_append, dht_wal_log_bytes, dht_wal_disk_bytes,
 * dht_wal_get_stats and dht_wal_meta_get/set may be called from any thread
 * concurrently.
 * dht_wal_checkpoint_begin must not overlap an append (see below);
 * dht_wal_checkpoint_commit may overlap appends.  begin/commit serialise with
 * each other internally.  dht_wal_open and dht_wal_close must not overlap any
 * other call on the same handle.
 *
 * Errors: functions returning int return 0 (or a documented non-negative
 * value) on success and -errno on failure.  Nothing in this module aborts.
 *
 * Dependencies: libc + pthreads, Linux.
 */
#ifndef DHT_WAL_H
#define DHT_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- modes -- */

typedef enum {
    DHT_FSYNC_ALWAYS, /* each append: write + fdatasync of its own record     */
    DHT_FSYNC_BATCH,  /* group commit: concurrent appends share one fdatasync */
    DHT_FSYNC_NEVER   /* write() only; durable against process crash only     */
} dht_fsync_mode;

/* "always" | "batch" | "never" -> 0, else -EINVAL (*out untouched). */
int dht_fsync_mode_parse(const char *s, dht_fsync_mode *out);
/* Inverse of the above; "?" for an invalid value.  Static string. */
const char *dht_fsync_mode_name(dht_fsync_mode m);

/* --------------------------------------------------------------- logging -- */

typedef enum { DHT_WAL_LOG_INFO, DHT_WAL_LOG_WARN, DHT_WAL_LOG_ERROR } dht_wal_log_level;
typedef void (*dht_wal_log_fn)(void *arg, dht_wal_log_level level, const char *msg);

/* Process-wide sink for warnings/errors (torn tail truncated, I/O error state
 * changes...).  NULL restores the default: one line "wal: ..." on stderr.
 * Thread-safe; the callback may be invoked from any thread calling into this
 * module, never concurrently with itself.  It must not call dht_wal_*. */
void dht_wal_set_log_fn(dht_wal_log_fn fn, void *arg);

/* ------------------------------------------------ pure record functions -- */
/* (wal_replay.c: no I/O, no globals, safe from any thread) */

/* CRC32C (Castagnoli), software table.  Start with crc = 0; chain by passing
 * the previous result.  dht_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t dht_crc32c(uint32_t crc, const void *buf, size_t len);

typedef void (*dht_wal_apply_fn)(void *arg, int64_t key, int64_t value,
                                 uint64_t counter, uint64_t writer);

#define DHT_WAL_RECORD_SIZE 44u
/* Largest invalid tail accepted as a torn write (== largest single write the
 * appender issues).  A longer invalid tail is reported as corruption. */
#define DHT_WAL_MAX_TORN_BYTES (1u << 20)

/* Encode one log record into out[0..DHT_WAL_RECORD_SIZE). */
void dht_wal_encode(uint8_t out[DHT_WAL_RECORD_SIZE], int64_t key, int64_t value,
                    uint64_t counter, uint64_t writer);

#define DHT_WAL_PARSE_OK 0       /* whole buffer is valid records           */
#define DHT_WAL_PARSE_TORN 1     /* valid prefix + invalid tail (torn write) */
#define DHT_WAL_PARSE_CORRUPT (-1) /* invalid record with valid data after it,
                                      or invalid tail > DHT_WAL_MAX_TORN_BYTES */

/* Parse buf[0..len) as a sequence of log records.
 *   apply (may be NULL) is called, in order, for every record of the valid
 *   prefix buf[0..*valid_len) - also when the result is TORN or CORRUPT.
 *   *valid_len (may be NULL) is always set: a multiple of DHT_WAL_RECORD_SIZE,
 *   <= len, the byte offset of the first invalid/incomplete record.
 *   err (may be NULL/0) receives a message with byte offsets for TORN and
 *   CORRUPT, and "" for OK.
 * Returns DHT_WAL_PARSE_OK, DHT_WAL_PARSE_TORN (buf[*valid_len..len) holds no
 * valid record at any byte offset and is at most DHT_WAL_MAX_TORN_BYTES long:
 * it is what a crash in the middle of an append leaves) or
 * DHT_WAL_PARSE_CORRUPT. */
int dht_wal_parse(const uint8_t *buf, size_t len, dht_wal_apply_fn apply, void *arg,
                  size_t *valid_len, char *err, size_t errlen);

/* -------------------------------------------------------------- the log -- */

typedef struct dht_wal dht_wal;

/* Open (creating if needed, mkdir -p) the data directory dir.
 *  - Takes an exclusive flock on dir/LOCK and writes our pid to it; if another
 *    process (or another handle in this process) holds it, fails with -EAGAIN
 *    and "data directory X is in use by another server (pid N)".
 *  - Replays the newest snapshot, then the log segments after it, in order,
 *    calling apply(apply_arg, ...) for each record on the calling thread.
 *    Everything is validated before the first apply call, so on failure apply
 *    has not been called (apply may be NULL).
 *  - An invalid tail of the LAST segment with nothing valid after it (crash
 *    mid-append) is truncated away with a warning via the log sink.  Any other
 *    invalid data (corrupt record followed by valid ones, a torn non-final
 *    segment, a corrupt snapshot, a missing segment) fails with -EBADMSG and a
 *    message naming the file and byte offset; no log or snapshot file is
 *    modified then.
 *  - Unusable directory (not creatable, read-only, EACCES...): -errno with the
 *    path and strerror in err.
 * All descriptors are O_CLOEXEC; a child that fork()s without exec keeps
 * the lock alive until it exits too.
 * On success *out owns the directory until dht_wal_close.  err (may be NULL)
 * gets a human-readable message on failure.  The mode applies to appends. */
int dht_wal_open(const char *dir, dht_fsync_mode mode, dht_wal_apply_fn apply,
                 void *apply_arg, dht_wal **out, char *err, size_t errlen);

/* True if, when opened, the directory held no log, snapshot or meta file at
 * all (new node) - as opposed to a node restarting with its data. */
bool dht_wal_fresh(const dht_wal *w);

/* Append one record.  Thread-safe.  Returns 0 only once the record is durable
 * according to the mode (ALWAYS/BATCH: covered by a successful fdatasync;
 * NEVER: handed to the kernel by write()).  On failure returns -errno and the
 * record must be treated as not durable (it may still reappear on replay,
 * which is harmless under max-version semantics).
 * Error policy:
 *  - write() failure (ENOSPC, EFBIG, EDQUOT, ...): the segment is truncated
 *    back to its last good length; the failing batch gets -errno and later
 *    appends retry normally (so the log recovers once space is freed).
 *  - fdatasync failure (EIO...), or a failed truncate: the handle enters a
 *    sticky failed state - after fsync errors the kernel may have dropped
 *    dirty pages, so retrying could falsely report success.  Every later
 *    append returns the same -errno immediately; close and reopen (which
 *    re-validates the files) to recover.
 * Each state change (ok -> error, error -> ok, -> failed) is logged once. */
int dht_wal_append(dht_wal *w, int64_t key, int64_t value, uint64_t counter,
                   uint64_t writer);

/* Append n records with the durability of dht_wal_append but, in every
 * mode, as few writes and fsyncs as possible (one of each up to 1024
 * records).  Returns 0 only when all are durable; on error some may be
 * (harmless on replay, as for a failed dht_wal_append). */
typedef struct {
    int64_t key, value;
    uint64_t counter, writer;
} dht_wal_record;
int dht_wal_append_many(dht_wal *w, const dht_wal_record *recs, size_t n);

/* Checkpointing.  Protocol:
 *   1. with no append in flight (caller holds its own write lock), call
 *      dht_wal_checkpoint_begin: syncs the current segment and rotates to a
 *      new one, numbered N.  Every record the caller has applied so far is
 *      now in segments < N.
 *   2. release the write lock; call dht_wal_checkpoint_commit (appends may run
 *      concurrently).  iter must call emit(emit_arg, key, value, counter,
 *      writer) for each live key of a state that includes at least everything
 *      applied before step 1; it returns 0, or nonzero to abort the commit
 *      (returned as is if negative, else as -ECANCELED).  The snapshot
 *      snap.N is written atomically (tmp, CRC32C, fsync, rename, fsync dir),
 *      then segments < N and older snapshots are deleted.
 * On commit failure the old snapshot/segments stay valid; commit may be
 * retried, or begin called again.  commit without a begin: -EINVAL. */
int dht_wal_checkpoint_begin(dht_wal *w);
typedef int (*dht_wal_iter_fn)(void *iter_arg, dht_wal_apply_fn emit, void *emit_arg);
int dht_wal_checkpoint_commit(dht_wal *w, dht_wal_iter_fn iter, void *iter_arg);

/* Bytes currently in log segments not covered by a snapshot (what a restart
 * would have to replay besides the snapshot).  Use it to decide when to
 * checkpoint. */
uint64_t dht_wal_log_bytes(dht_wal *w);

/* Bytes the log segments and snapshots take in the directory now: the sum
 * of their file sizes (a segment counts whole from its creation, prefill
 * included), for reporting.  Thread-safe; >= 0, or -errno. */
int64_t dht_wal_disk_bytes(dht_wal *w);

/* Small durable named values (e.g. cluster identity).  name: 1..64 chars of
 * [A-Za-z0-9_-]; value: NUL-terminated, at most DHT_WAL_META_MAX bytes.
 * set: atomic replace (tmp + fsync + rename + fsync dir); 0, -EINVAL bad
 *      name, -E2BIG value too long, or another -errno.
 * get: copies the value NUL-terminated into buf; returns its length (>= 0),
 *      -ENOENT if never set, -ERANGE if len <= length, -EINVAL bad name,
 *      -EBADMSG if the stored file is corrupt, other -errno. */
/* Room for a configuration line of DHT_MAX_MEMBERS long host names. */
#define DHT_WAL_META_MAX 65536
int dht_wal_meta_get(dht_wal *w, const char *name, char *buf, size_t len);
int dht_wal_meta_set(dht_wal *w, const char *name, const char *value);

typedef struct {
    uint64_t appends;      /* append calls that returned 0                  */
    uint64_t writes;       /* write batches issued to the segment           */
    uint64_t fsyncs;       /* fdatasync calls issued by appends (ALWAYS: one
                              per append; BATCH: one per batch)             */
    uint64_t append_errors;/* append calls that returned an error           */
    uint64_t checkpoints;  /* successful checkpoint commits                 */
} dht_wal_stats;
void dht_wal_get_stats(dht_wal *w, dht_wal_stats *out);

/* Sync (best effort, also in NEVER mode), close files, release the lock and
 * free w.  NULL is a no-op.  No other call on w may be running or follow. */
void dht_wal_close(dht_wal *w);

#ifdef __cplusplus
}
#endif
#endif /* DHT_WAL_H */
