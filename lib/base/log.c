/* Logging: one fprintf per line under the stdio lock, so concurrent threads
 * never interleave within a line. */
#include "base/log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static char g_name[64] = "dht";
static dht_log_level g_level = DHT_LOG_INFO;
static FILE *g_out;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void dht_log_init(const char *name, dht_log_level level, FILE *out)
{
    snprintf(g_name, sizeof g_name, "%s", name);
    g_level = level;
    g_out = out;
}

int dht_log_level_parse(const char *s, dht_log_level *out)
{
    for (int i = 0; i <= DHT_LOG_DEBUG; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (dht_log_level)i;
            return 0;
        }
    }
    return -1;
}

int dht_log_enabled(dht_log_level level)
{
    return level <= g_level;
}

void dht_log_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void dht_log(dht_log_level level, const char *fmt, ...)
{
    if (!dht_log_enabled(level))
        return;
    FILE *out = g_out ? g_out : stderr;
    char ts[40], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dht_log_timestamp(ts, sizeof ts);
    flockfile(out);
    fprintf(out, "%s [%s] %-5s %s\n", ts, g_name, level_names[level], msg);
    fflush(out);
    funlockfile(out);
}
