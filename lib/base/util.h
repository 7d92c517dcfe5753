/* Small helpers shared by the binaries and the protocol: clocks, strict
 * number parsing, addresses, a seeded PRNG.  Member lists are
 * protocol/membership.h's. */
#ifndef DHT_UTIL_H
#define DHT_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHT_NS_PER_MS 1000000LL
#define DHT_NS_PER_SEC 1000000000LL

int64_t dht_now_ns(void); /* CLOCK_MONOTONIC */

/* Strict parsers: the whole string must be a number in [min, max]. */
int dht_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int dht_parse_double(const char *s, double min, double max, double *out);

/* "host:port" with port 1..65535 and a non-empty host of sane characters.
 * Writes a normalised copy to out. */
int dht_parse_hostport(const char *s, char *out, size_t outlen, char *err, size_t errlen);

/* splitmix64's finaliser: a bijection of 64 bits whose every output bit
 * depends on every input bit.  Hashing for placement, stripes and ids
 * (nothing an adversary chooses), and the seeding of dht_rng. */
static inline uint64_t dht_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}
#define DHT_GOLDEN_GAMMA UINT64_C(0x9e3779b97f4a7c15)

/* xoshiro256** seeded via splitmix64: fast, reproducible from one seed. */
typedef struct { uint64_t s[4]; } dht_rng;
void dht_rng_seed(dht_rng *r, uint64_t seed);
uint64_t dht_rng_next(dht_rng *r);
uint64_t dht_rng_below(dht_rng *r, uint64_t n); /* uniform in [0, n) */
double dht_rng_double(dht_rng *r);              /* uniform in [0, 1) */
uint64_t dht_random_seed(void);                 /* from the OS */

/* One-shot completion for a thread that waits for one callback: the
 * callback writes its results, then opens the latch; the waiter's
 * dht_latch_wait returns after that (the mutex orders the writes). */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} dht_latch;
void dht_latch_init(dht_latch *l);
void dht_latch_open(dht_latch *l);
void dht_latch_wait(dht_latch *l);
void dht_latch_destroy(dht_latch *l);

#endif
