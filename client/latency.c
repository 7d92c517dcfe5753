#include "latency.h"

#include <string.h>

/* Bucket of a latency in microseconds: exact below 64 us, then 32 buckets
 * per power of two. */
static int bucket_of(uint64_t us)
{
    if (us < 64)
        return (int)us;
    int e = 63 - __builtin_clzll(us); /* >= 6 */
    int sub = (int)((us >> (e - 5)) & 31);
    int idx = 64 + (e - 6) * 32 + sub;
    return idx < DHT_LATENCY_BUCKETS ? idx : DHT_LATENCY_BUCKETS - 1;
}

static uint64_t bucket_floor_us(int idx)
{
    if (idx < 64)
        return (uint64_t)idx;
    int e = (idx - 64) / 32 + 6;
    uint64_t sub = (uint64_t)((idx - 64) % 32);
    return (1ULL << e) | (sub << (e - 5));
}

void dht_latency_init(dht_latency *h)
{
    memset(h, 0, sizeof *h);
}

void dht_latency_add(dht_latency *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    h->counts[bucket_of((uint64_t)ns / 1000)]++;
    h->n++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void dht_latency_merge(dht_latency *into, const dht_latency *from)
{
    for (int i = 0; i < DHT_LATENCY_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

int64_t dht_latency_quantile(const dht_latency *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->n - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < DHT_LATENCY_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            return (int64_t)bucket_floor_us(i) * 1000;
    }
    return h->max_ns;
}
