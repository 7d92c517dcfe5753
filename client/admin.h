/* The client's use of dht.Admin/Stats (proto/dht.proto): asking nodes what
 * they are (`client stats`, `client members`), and learning the
 * configuration the fan-out client must share with the nodes (follow.h),
 * so that its replica requests carry the nodes' view and configuration
 * fingerprint instead of being refused with FAILED_PRECONDITION. */
#ifndef DHT_CLIENT_ADMIN_H
#define DHT_CLIENT_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "net/transport_grpc.h"
#include "protocol/membership.h"

/* One node's answer. */
typedef struct {
    const char *addr; /* as the caller listed it */
    int ok;           /* 1: stats holds the answer */
    char error[256];  /* ok 0: why not */
    dht_stats stats;  /* its strings are malloc'd: admin_results_free */
} admin_result;

/* Asks peers[0..n-1] of the running transport g for their Stats, all at
 * once, each call bounded by timeout_ns, and fills res[0..n-1] (addrs[i]
 * names peers[i] in the results; the caller keeps the strings alive until
 * it frees res).  Waits until every call has ended, or, once one node has
 * answered, at most grace_ns more (0: return with the first answer; < 0:
 * wait for all).  Calls still running then are left to end by their
 * deadline; their answers are dropped, so g must keep running until they
 * have (dht_grpc_stop waits for them).  Returns how many answered, or -1
 * when memory is short (res then says so). */
int admin_stats_on(dht_grpc *g, const int *peers, const char *const *addrs, int n,
                   int64_t timeout_ns, int64_t grace_ns, admin_result *res);

/* The same on a transport of its own to the n addrs (n <= DHT_MAX_MEMBERS);
 * with first, only until one answers (the other calls are cancelled).
 * Returns how many answered, or -1 (with err) if no call could be made at
 * all; res is filled either way. */
int admin_stats_all(const char *const *addrs, int n, const dht_grpc_tls *tls, int64_t timeout_ns,
                    bool first, admin_result *res, char *err, size_t errlen);
void admin_results_free(admin_result *res, int n);

/* The answer with the highest view number (the first listed of equals),
 * or -1 when none answered. */
int admin_best(const admin_result *res, int n);

/* One result as one line of JSON (see the README's "Client: stats, locate,
 * --replicas"). */
void admin_print_json(FILE *f, const admin_result *r);
/* s as a JSON string (quoted, escaped). */
void admin_json_str(FILE *f, const char *s);

/* addrs[0..n-1] comma-separated, in their order, into out (len bytes;
 * truncated if it must be, always terminated). */
void admin_join(const char *const *addrs, int n, char *out, size_t len);

/* The configuration of nodes that report no epoch (nodes of an earlier
 * version, where the member list is the configuration): R from res (the
 * Stats of every position of m, a membership of the listed servers with
 * any R), after checking that every answering node's member set is the
 * client's (normalised) and that they agree on R; when none answered, the
 * default min(3, N), with a warning on stderr.  Returns 0 with *replicas
 * and, in *fingerprint, what the first answering node reported (0: none
 * answered), or -1 with a one-line reason in err. */
int admin_legacy_replicas(const dht_membership *m, const admin_result *res, int *replicas,
                          uint64_t *fingerprint, char *err, size_t errlen);

/* 0 when a node's fingerprint (from Stats; 0: unknown) is the one the
 * client computed for m, else -1 with a one-line reason naming both. */
int admin_check_fingerprint(const dht_membership *m, uint64_t theirs, const char *who, char *err,
                            size_t errlen);

#endif
