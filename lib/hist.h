/* Latency histogram with log-linear buckets (about 3% resolution from 1 us
 * to hours), fixed size, no allocation: one per thread, merged at the end. */
#ifndef DHT_HIST_H
#define DHT_HIST_H

#include <stdint.h>

#define DHT_HIST_BUCKETS 2048

typedef struct {
    uint64_t counts[DHT_HIST_BUCKETS];
    uint64_t n;
    int64_t max_ns;
} dht_hist;

void dht_hist_init(dht_hist *h);
void dht_hist_add(dht_hist *h, int64_t ns);
void dht_hist_merge(dht_hist *into, const dht_hist *from);
/* Latency at quantile q in [0,1] (bucket lower bound), in ns; 0 if empty. */
int64_t dht_hist_quantile(const dht_hist *h, double q);

#endif
