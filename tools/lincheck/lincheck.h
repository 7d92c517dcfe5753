/*
 * lincheck.h - linearizability checker for per-key read/write registers.
 *
 * Histories are JSON Lines, one operation per line, e.g.
 *   {"client":3,"op":"put","key":17,"value":42,"call":123,"return":456,"ok":true}
 * See lincheck.c for the algorithm and its correctness argument.
 *
 * Ownership: every pointer handed out by this module is documented at the
 * function that hands it out.  Nothing here keeps global state; all
 * functions are reentrant.
 */
#ifndef DHT_LINCHECK_H
#define DHT_LINCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "return" was null / not known. */
#define DHT_HISTORY_RET_UNKNOWN INT64_MAX

/* One recorded operation, exactly as it appears in the history.  How the
 * checker reads it: put ok=false and get ok!=true are ignored; a put with
 * ok=null or return=null may take effect at any time after its call, or
 * never; every other op must take effect within [call, return]. */
typedef struct {
    int64_t client;
    int is_put;      /* 1 = "put", 0 = "get" */
    int64_t key;
    int64_t value;   /* put: value written; get: value read (0 if null) */
    int64_t call;    /* CLOCK_MONOTONIC ns */
    int64_t ret;     /* DHT_HISTORY_RET_UNKNOWN (INT64_MAX) when unknown/null */
    int ok;          /* 1 true, 0 false, -1 unknown (null) */
} dht_history_op;

/*
 * Parse one line (a trailing '\n' / "\r\n" is allowed) into *op.
 * Returns 0 on success, 1 for a blank (whitespace-only) line, -1 on error
 * with a message ("column N: ...") written to err (if err != NULL).
 */
int dht_history_parse_line(const char *line, dht_history_op *op, char *err,
                           size_t errlen);

/*
 * Read a history file ("-" = stdin) and append its operations to *ops.
 * *ops must be NULL (with *n == 0) or an array from an earlier call (or any
 * malloc'd array of *n elements); it is realloc'd, the caller owns it and
 * releases it with free().  Call repeatedly to merge several files.
 * Returns 0 on success; -1 on error with "file:line: message" in err.  On
 * error *ops and *n are left exactly as they were (nothing is appended).
 */
int dht_history_load(const char *path, dht_history_op **ops, size_t *n,
                     char *err, size_t errlen);

/* Verdict values double as the CLI's exit codes. */
typedef enum {
    DHT_LIN_OK = 0,           /* linearizable */
    DHT_LIN_VIOLATION = 1,    /* not linearizable */
    DHT_LIN_INCONCLUSIVE = 3  /* a key's search exhausted its state budget */
} dht_lin_verdict;

/* Default per-key budget: distinct search states remembered (about 60
 * bytes each, released after each key). */
#define DHT_LINCHECK_DEFAULT_BUDGET 3000000u

typedef struct {
    dht_lin_verdict verdict;
    uint64_t budget;           /* per-key state budget that was used */
    size_t ops_total;          /* n as passed in */
    size_t ops_checked;        /* ops left after dropping those that
                                * cannot matter (failed ops, unknown puts
                                * nobody can have read) */
    size_t keys_checked;       /* distinct keys in the history */
    size_t keys_failed;        /* keys proven not linearizable */
    size_t keys_inconclusive;  /* keys whose search ran out of budget */
    uint64_t states_explored;  /* search states, summed over keys */

    /* Details.  VIOLATION: the failing key with the fewest ops (ties: the
     * smallest key).  INCONCLUSIVE: the first key that ran out of budget.
     * OK: unused (key 0, reason NULL, sub NULL). */
    int64_t key;
    size_t key_ops;            /* ops of that key in the history */
    const char *reason;        /* static string, never freed */
    size_t bad_op;             /* index into ops[] of the read that cannot
                                * be explained, or (found by the search)
                                * of the op with the earliest return at
                                * the deepest point reached; SIZE_MAX if
                                * none */
    size_t lin_best, lin_need; /* search only (else 0): most required ops
                                * placed in any partial linearization, and
                                * the number of required ops */
    /* VIOLATION only: indices into ops[] of every op of `key` (including
     * dropped ones), sorted by call time.  Owned by the result; release
     * with dht_lincheck_result_free().  NULL otherwise. */
    size_t *sub;
    size_t nsub;
} dht_lincheck_result;

/*
 * Check ops[0..n) (any order, keys mixed).  *res is overwritten (free a
 * previous result first).  budget 0 means DHT_LINCHECK_DEFAULT_BUDGET.
 * Returns the verdict, or -1 if memory ran out (res->verdict is then
 * DHT_LIN_INCONCLUSIVE and res->reason says so).  ops is only read.
 */
int dht_lincheck_budget(const dht_history_op *ops, size_t n, uint64_t budget,
                        dht_lincheck_result *res);

/* Same with the default budget. */
int dht_lincheck(const dht_history_op *ops, size_t n, dht_lincheck_result *res);

/* Release what a result owns (res->sub); safe to call twice. */
void dht_lincheck_result_free(dht_lincheck_result *res);

/* "linearizable" / "NOT linearizable" / "inconclusive" / "error". */
const char *dht_lincheck_verdict_str(int verdict);

/*
 * Print ops[idx[0..nidx)] one per line, readably: client, op, value,
 * call/return in ms relative to the earliest call among them, and outcome
 * (ok / FAILED / UNKNOWN).  idx is typically res->sub.
 */
void dht_history_print(FILE *out, const dht_history_op *ops, const size_t *idx,
                       size_t nidx);

#endif /* DHT_LINCHECK_H */
