/* The client's use of dht.Admin/Stats (proto/dht.proto): asking nodes what
 * they are (`client stats`), and learning the configuration the fan-out
 * client must share with the nodes (R, checked against its member list),
 * so that its replica requests carry the nodes' configuration fingerprint
 * instead of being refused with FAILED_PRECONDITION. */
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

/* Asks each of the n addrs for its Stats, all at once, each call bounded by
 * timeout_ns, and fills res[0..n-1]; with first, only until one answers
 * (the other calls are cancelled).  Returns how many answered, or -1 (with
 * err) if no call could be made at all. */
int admin_stats_all(const char *const *addrs, int n, const dht_grpc_tls *tls, int64_t timeout_ns,
                    bool first, admin_result *res, char *err, size_t errlen);
void admin_results_free(admin_result *res, int n);

/* One result as one line of JSON (see the README's "Client: stats, locate,
 * --replicas"). */
void admin_print_json(FILE *f, const admin_result *r);

/* The configuration the servers in m (a membership of the listed servers,
 * built with any R) run with, for a client that was not told R: asks their
 * Stats (all at once, bounded by timeout_ns), takes R from the first that
 * answers and checks that its member set is the client's (normalised);
 * when none answers, the default min(3, N), with a warning on stderr.
 * Returns 0 with *replicas and, in *fingerprint, what that node reported
 * (0: none answered), or -1 with a one-line reason in err. */
int admin_learn_replicas(const dht_membership *m, const dht_grpc_tls *tls, int64_t timeout_ns,
                         int *replicas, uint64_t *fingerprint, char *err, size_t errlen);

/* 0 when a node's fingerprint (from Stats; 0: unknown) is the one the
 * client computed for m, else -1 with a one-line reason naming both. */
int admin_check_fingerprint(const dht_membership *m, uint64_t theirs, const char *who, char *err,
                            size_t errlen);

#endif
