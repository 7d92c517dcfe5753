/* Timestamped, leveled, thread-safe logging to stderr (or a chosen FILE).
 * Every line carries the wall-clock time and the name of the process that
 * wrote it ("node 1", "client 4711"), so logs of several processes can be
 * interleaved into one file and still be read. */
#ifndef DHT_LOG_H
#define DHT_LOG_H

#include <stdio.h>

typedef enum { DHT_LOG_ERROR = 0, DHT_LOG_WARN, DHT_LOG_INFO, DHT_LOG_DEBUG } dht_log_level;

void dht_log_init(const char *name, dht_log_level level, FILE *out);
int dht_log_level_parse(const char *s, dht_log_level *out);
int dht_log_enabled(dht_log_level level);
void dht_log(dht_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Formats the current wall-clock time as 2026-11-21T12:00:00.123Z. */
void dht_log_timestamp(char *buf, size_t len);

#define DHT_ERROR(...) dht_log(DHT_LOG_ERROR, __VA_ARGS__)
#define DHT_WARN(...) dht_log(DHT_LOG_WARN, __VA_ARGS__)
#define DHT_INFO(...) dht_log(DHT_LOG_INFO, __VA_ARGS__)
#define DHT_DEBUG(...) \
    do { if (dht_log_enabled(DHT_LOG_DEBUG)) dht_log(DHT_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
