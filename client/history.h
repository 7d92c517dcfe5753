/* History recorder: one JSON line per completed operation in the format of
 * docs/design.md ("The history format"), for the linearizability checker. */
#ifndef DHT_CLIENT_HISTORY_H
#define DHT_CLIENT_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct history history;

/* Opens (truncates) path; NULL with errno set on failure. */
history *history_open(const char *path);
/* ok: 1 true, 0 false, -1 unknown (written as null). */
void history_record(history *h, int64_t client, bool is_put, int64_t key, int64_t value,
                    int64_t call_ns, int64_t return_ns, int ok);
/* Flushes and closes; returns 0 if every line reached the file. */
int history_close(history *h);

#endif
