/* Latency histogram with log-linear buckets (about 3% resolution from 1 us
 * to hours), fixed size, no allocation: one per thread, merged at the end. */
#ifndef DHT_LATENCY_H
#define DHT_LATENCY_H

#include <stdint.h>

#define DHT_LATENCY_BUCKETS 2048

typedef struct {
    uint64_t counts[DHT_LATENCY_BUCKETS];
    uint64_t n;
    int64_t max_ns;
} dht_latency;

void dht_latency_init(dht_latency *h);
void dht_latency_add(dht_latency *h, int64_t ns);
void dht_latency_merge(dht_latency *into, const dht_latency *from);
/* Latency at quantile q in [0,1] (bucket lower bound), in ns; 0 if empty. */
int64_t dht_latency_quantile(const dht_latency *h, double q);

#endif
