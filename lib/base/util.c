#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t dht_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * DHT_NS_PER_SEC + ts.tv_nsec;
}

int dht_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int dht_parse_double(const char *s, double min, double max, double *out)
{
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || isnan(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int dht_parse_hostport(const char *s, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", s);
        return -1;
    }
    size_t hostlen = (size_t)(colon - s);
    for (size_t i = 0; i < hostlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_' && c != '[' && c != ']' && c != ':') {
            snprintf(err, errlen, "'%s': bad character in host", s);
            return -1;
        }
    }
    int64_t port;
    if (dht_parse_i64(colon + 1, 1, 65535, &port) != 0) {
        snprintf(err, errlen, "'%s': port must be a number in 1..65535", s);
        return -1;
    }
    if (hostlen + 7 > outlen) {
        snprintf(err, errlen, "'%s': address too long", s);
        return -1;
    }
    snprintf(out, outlen, "%.*s:%d", (int)hostlen, s, (int)port);
    return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
    return dht_mix64(*x += DHT_GOLDEN_GAMMA);
}

void dht_rng_seed(dht_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t dht_rng_next(dht_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t dht_rng_below(dht_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Rejection sampling: no modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = dht_rng_next(r);
    while (x >= limit);
    return x % n;
}

double dht_rng_double(dht_rng *r)
{
    return (double)(dht_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t dht_random_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (uint64_t)dht_now_ns() ^ ((uint64_t)clock() << 32);
    return v;
}

void dht_latch_init(dht_latch *l)
{
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->open = false;
}

void dht_latch_open(dht_latch *l)
{
    pthread_mutex_lock(&l->mu);
    l->open = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void dht_latch_wait(dht_latch *l)
{
    pthread_mutex_lock(&l->mu);
    while (!l->open)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

void dht_latch_destroy(dht_latch *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}
