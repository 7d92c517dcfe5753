/* The exam's randomized client: concurrent threads sending random puts and
 * gets, each operation printed (unless quiet) and recorded in the history. */
#ifndef DHT_CLIENT_RANDOM_H
#define DHT_CLIENT_RANDOM_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvclient.h"

typedef struct {
    int64_t keys;        /* keys are 0..keys-1 */
    double put_ratio;    /* probability an operation is a put */
    int64_t concurrency; /* threads */
    int64_t ops;         /* total operations; 0: no limit */
    double duration_s;   /* 0: no limit */
    int64_t interval_ms; /* pause between one thread's operations */
    bool quiet;          /* only the summary */
    bool progress;       /* a progress line on stderr every second */
    bool json;           /* summary as one JSON object */
    const char *history_path;
    uint64_t seed;       /* 0: random */
    const char *name;    /* "client 4711" */
} random_opts;

/* Runs until ops/duration are used up or *stop becomes nonzero.  Returns 0,
 * or 1 if the history file could not be written. */
int run_random(kvclient *c, const random_opts *o, volatile sig_atomic_t *stop);

#endif
