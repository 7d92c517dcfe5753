/* Internal message vocabulary shared by the protocol and its transports.
 *
 * One flat struct serves every request and reply so that the protocol code,
 * the in-memory test transport and the gRPC codec all speak the same thing
 * without per-message allocation.  Fields a message type does not use are 0.
 */
#ifndef DHT_MSG_H
#define DHT_MSG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    DHT_MSG_LOCK = 1, /* replica: take the per-key lease lock          */
    DHT_MSG_UNLOCK,   /* replica: release it if still the owner's      */
    DHT_MSG_WRITE,    /* replica: store (value, version) if newer      */
    DHT_MSG_READ,     /* replica: report (value, version)              */
    DHT_MSG_SCAN,     /* replica: page of entries for state transfer   */
    DHT_MSG_PUT,      /* public KeyValue.Put                           */
    DHT_MSG_GET,      /* public KeyValue.Get                           */
    DHT_MSG_TYPE_MAX
} dht_msg_type;

/* Version of a value: compared lexicographically.  writer is the unique id
 * of the put attempt that produced it, so no two puts share a version. */
typedef struct {
    uint64_t counter;
    uint64_t writer;
} dht_version;

static inline int dht_version_cmp(dht_version a, dht_version b)
{
    if (a.counter != b.counter)
        return a.counter < b.counter ? -1 : 1;
    if (a.writer != b.writer)
        return a.writer < b.writer ? -1 : 1;
    return 0;
}

/* Outcome of a put as seen by whoever coordinated it. */
typedef enum {
    DHT_PUT_APPLIED = 0,     /* acknowledged by a quorum                  */
    DHT_PUT_NOT_APPLIED = 1, /* definitely not applied (no quorum lock)    */
    DHT_PUT_UNKNOWN = 2      /* deadline passed mid-write: may be applied  */
} dht_put_outcome;

/* One key's state, as carried by SCAN replies. */
typedef struct {
    int64_t key;
    int64_t value;
    dht_version version;
} dht_entry;

typedef struct dht_msg {
    dht_msg_type type;
    int64_t key;
    int64_t value;
    dht_version version;
    uint64_t owner;    /* LOCK/UNLOCK: lock owner; WRITE: lock to release */
    uint32_t lease_ms; /* LOCK only                                         */
    bool ok;           /* reply: granted / stored / released / readable     */
    uint8_t outcome;   /* PUT reply: a dht_put_outcome                      */
    /* SCAN: the request's cursor is (stripe, key, from_start) (see
     * dht_scan_cursor), at most limit entries; the reply carries entries,
     * more, the next page's cursor in the same fields, and recovering (state
     * may be incomplete: new node or lost disk).  entries is owned by whoever filled the
     * message: a replica handler's reply is freed by the transport after
     * sending; a decoded reply is freed by the transport after the
     * callback returns. */
    uint32_t limit;
    uint32_t stripe;
    bool from_start;
    bool more;
    bool recovering;
    uint32_t nentries;
    dht_entry *entries;
    /* SCAN request: the asking member's id (dht_membership_member_id): the
     * page holds only keys that member stores too; 0: every key.  SCAN
     * reply: cluster_id, the id of the cluster the replica's data directory
     * belongs to (0: none yet, it has never been part of a cluster). */
    uint64_t member;
    uint64_t cluster_id;
    /* SCAN: the sender's incarnation (a random number per process start)
     * in requests and replies; founder, in a reply: the asker's incarnation
     * was one of those the replier saw empty when it formed the cluster
     * (recovery.h). */
    uint64_t incarnation;
    bool founder;
    /* Replica requests between members: the stamp of the operation that
     * sent it, its view number (protocol/view.h) and its configuration
     * fingerprint; 0 = none.  A transport sends a request whose config is
     * 0 with its own static fingerprint and view 0 (protocol/transport.h),
     * and fills both in each request it delivers, so a service sees what
     * the sender claimed.  Replies leave them 0. */
    uint64_t view;
    uint64_t config;
    /* SCAN request: a membership change's copy (protocol/transfer.h): the
     * page holds the entries of the partitions the change (of the joint
     * view stamped) gives the asker, instead of every key both store. */
    bool transfer;
} dht_msg;

const char *dht_msg_type_name(dht_msg_type t);
const char *dht_put_outcome_name(dht_put_outcome o);

#endif
