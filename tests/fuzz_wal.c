/*
 * fuzz_wal.c - fuzz target for dht_wal_parse (lib/storage/wal_replay.c).
 *
 * Built with -DDHT_LIBFUZZER -fsanitize=fuzzer: only LLVMFuzzerTestOneInput
 * is defined and libFuzzer drives it.
 * Built without (plain gcc/clang): a main() driver runs
 *     fuzz_wal [N] [FILE...]
 * N (default 20000) generated inputs from a fixed seed - random bytes, valid
 * record streams, valid streams with mutations and torn tails - plus every
 * FILE given (e.g. a libFuzzer corpus or a real log segment), bounded by
 * FUZZ_WAL_SECONDS (default 60) of wall time.  Any invariant violation prints
 * the reason and aborts; success prints a summary and exits 0.
 *
 * Invariants checked for every input:
 *   - the return code is OK, TORN or CORRUPT, and err is set accordingly;
 *   - valid_len <= len, a multiple of the record size, and apply was called
 *     exactly valid_len / record size times;
 *   - OK <=> valid_len == len; TORN => 0 < len - valid_len <= MAX_TORN;
 *   - the same result without apply/err buffers (no hidden dependence);
 *   - re-parsing buf[0..valid_len) gives OK, the same records, no error;
 *   - re-encoding the records reproduces buf[0..valid_len) byte for byte.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "storage/wal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define R DHT_WAL_RECORD_SIZE

typedef struct {
    int64_t key, value;
    uint64_t counter, writer;
} rec_t;

typedef struct {
    rec_t *v;
    size_t n, cap;
} recs_t;

static void collect(void *arg, int64_t key, int64_t value, uint64_t counter, uint64_t writer)
{
    recs_t *r = arg;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
    }
    r->v[r->n++] = (rec_t){key, value, counter, writer};
}

static void die(const char *what, const uint8_t *data, size_t size, int rc, size_t valid,
                const char *err)
{
    fprintf(stderr, "fuzz_wal: invariant violated: %s (len %zu, rc %d, valid_len %zu, err '%s')\n",
            what, size, rc, valid, err ? err : "");
    fprintf(stderr, "input:");
    for (size_t i = 0; i < size && i < 512; i++)
        fprintf(stderr, "%s%02x", i % 32 ? "" : "\n  ", data[i]);
    fprintf(stderr, "\n");
    abort();
}

static unsigned long n_ok, n_torn, n_corrupt;

static void check_one(const uint8_t *data, size_t size)
{
    recs_t a = {0}, b = {0};
    char err[512], err2[512];
    size_t valid = (size_t)-1, valid2 = (size_t)-1, valid3 = (size_t)-1;

    int rc = dht_wal_parse(data, size, collect, &a, &valid, err, sizeof err);
    if (rc != DHT_WAL_PARSE_OK && rc != DHT_WAL_PARSE_TORN && rc != DHT_WAL_PARSE_CORRUPT)
        die("unknown return code", data, size, rc, valid, err);
    if (valid > size)
        die("valid_len > len", data, size, rc, valid, err);
    if (valid % R != 0)
        die("valid_len not a multiple of the record size", data, size, rc, valid, err);
    if (a.n != valid / R)
        die("apply count != valid_len / record size", data, size, rc, valid, err);
    if ((rc == DHT_WAL_PARSE_OK) != (valid == size))
        die("OK <=> valid_len == len", data, size, rc, valid, err);
    if (rc == DHT_WAL_PARSE_OK && err[0] != '\0')
        die("error message on OK", data, size, rc, valid, err);
    if (rc != DHT_WAL_PARSE_OK && (err[0] == '\0' || !strstr(err, "offset")))
        die("no error message with an offset", data, size, rc, valid, err);
    if (rc == DHT_WAL_PARSE_TORN && size - valid > DHT_WAL_MAX_TORN_BYTES)
        die("torn tail longer than the maximum", data, size, rc, valid, err);

    int rc3 = dht_wal_parse(data, size, NULL, NULL, &valid3, NULL, 0);
    if (rc3 != rc || valid3 != valid)
        die("result depends on apply/err arguments", data, size, rc, valid, err);

    int rc2 = dht_wal_parse(data, valid, collect, &b, &valid2, err2, sizeof err2);
    if (rc2 != DHT_WAL_PARSE_OK || valid2 != valid || err2[0] != '\0')
        die("re-parse of the valid prefix is not clean", data, size, rc2, valid2, err2);
    if (b.n != a.n || (a.n && memcmp(a.v, b.v, a.n * sizeof *a.v) != 0))
        die("re-parse of the valid prefix gives different records", data, size, rc, valid, err);

    for (size_t i = 0; i < a.n; i++) {
        uint8_t enc[R];
        dht_wal_encode(enc, a.v[i].key, a.v[i].value, a.v[i].counter, a.v[i].writer);
        if (memcmp(enc, data + i * R, R) != 0)
            die("re-encoding a parsed record differs from the input", data, size, rc, valid,
                err);
    }
    if (rc == DHT_WAL_PARSE_OK)
        n_ok++;
    else if (rc == DHT_WAL_PARSE_TORN)
        n_torn++;
    else
        n_corrupt++;
    free(a.v);
    free(b.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    return 0;
}

#ifndef DHT_LIBFUZZER

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static uint64_t rnd_field(void)
{
    switch (rnd() % 4) {
    case 0: return 0;
    case 1: return (uint64_t)-1;
    case 2: return rnd() % 1000;
    default: return rnd();
    }
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->n + extra > b->cap) {
        b->cap = (b->n + extra) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
}

static void put_records(buf_t *b, size_t k)
{
    buf_reserve(b, k * R);
    for (size_t i = 0; i < k; i++) {
        /* one call per statement: argument evaluation order is unspecified,
         * and the input sequence must not depend on the compiler */
        int64_t key = (int64_t)rnd_field();
        int64_t value = (int64_t)rnd_field();
        uint64_t counter = rnd_field();
        uint64_t writer = rnd_field();
        dht_wal_encode(b->p + b->n, key, value, counter, writer);
        b->n += R;
    }
}

static void put_random(buf_t *b, size_t k, int zeros)
{
    buf_reserve(b, k);
    for (size_t i = 0; i < k; i++)
        b->p[b->n++] = zeros ? 0 : (uint8_t)rnd();
}

static void mutate(buf_t *b)
{
    size_t pos = rnd_below(b->n + 1);
    switch (rnd() % 9) {
    case 0: /* flip a bit */
        if (b->n) {
            size_t at = rnd_below(b->n);
            b->p[at] ^= (uint8_t)(1u << (rnd() % 8));
        }
        break;
    case 1: /* set a byte */
        if (b->n) {
            size_t at = rnd_below(b->n);
            b->p[at] = (uint8_t)rnd();
        }
        break;
    case 2: /* truncate */
        b->n = pos;
        break;
    case 3: /* append random bytes */
        put_random(b, rnd_below(2 * R), 0);
        break;
    case 4: { /* insert bytes */
        size_t k = 1 + rnd_below(R);
        buf_reserve(b, k);
        memmove(b->p + pos + k, b->p + pos, b->n - pos);
        for (size_t i = 0; i < k; i++)
            b->p[pos + i] = (uint8_t)rnd();
        b->n += k;
        break;
    }
    case 5: { /* delete a range */
        size_t k = rnd_below(b->n - pos + 1);
        memmove(b->p + pos, b->p + pos + k, b->n - pos - k);
        b->n -= k;
        break;
    }
    case 6: { /* zero a range */
        size_t k = rnd_below(b->n - pos + 1);
        memset(b->p + pos, 0, k);
        break;
    }
    case 7: /* append a valid record (possibly misaligned) */
        put_records(b, 1);
        break;
    default: { /* overwrite with a valid record at a random offset */
        if (b->n >= R) {
            size_t at = rnd_below(b->n - R + 1);
            dht_wal_encode(b->p + at, (int64_t)rnd(), 1, 2, 3);
        }
        break;
    }
    }
}

static void run_exact(const buf_t *b)
{
    /* exact-size heap copy so that ASan catches any over-read */
    uint8_t *p = malloc(b->n ? b->n : 1);
    if (!p)
        abort();
    if (b->n)
        memcpy(p, b->p, b->n);
    check_one(p, b->n);
    free(p);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    buf_t b = {0};
    for (;;) {
        buf_reserve(&b, 65536);
        size_t k = fread(b.p + b.n, 1, 65536, f);
        b.n += k;
        if (k == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: read error\n", path);
        free(b.p);
        return -1;
    }
    run_exact(&b);
    free(b.p);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long n = 20000, files = 0;
    double limit = 60;
    const char *env = getenv("FUZZ_WAL_SECONDS");
    if (env && atof(env) > 0)
        limit = atof(env);
    int first_file = 1;
    if (argc > 1) {
        char *end;
        unsigned long v = strtoul(argv[1], &end, 10);
        if (*argv[1] && *end == '\0') {
            n = v;
            first_file = 2;
        }
    }
    double t0 = now_s();
    for (int i = first_file; i < argc; i++) {
        if (run_file(argv[i]) != 0)
            return 2;
        files++;
    }

    buf_t b = {0};
    unsigned long done = 0;
    for (; done < n; done++) {
        if ((done & 255) == 0 && now_s() - t0 > limit) {
            fprintf(stderr, "fuzz_wal: time limit of %.0f s reached\n", limit);
            break;
        }
        b.n = 0;
        switch (rnd() % 5) {
        case 0: /* random bytes */
            put_random(&b, rnd_below(5 * R), 0);
            break;
        case 1: /* valid stream */
            put_records(&b, rnd_below(20));
            break;
        case 2: /* valid stream + torn tail */
            put_records(&b, rnd_below(20));
        {
            size_t k = 1 + rnd_below(3 * R);
            put_random(&b, k, rnd() % 2);
        }
            break;
        default: { /* valid stream + mutations */
            put_records(&b, 1 + rnd_below(20));
            int m = 1 + (int)rnd_below(4);
            while (m--)
                mutate(&b);
            break;
        }
        }
        /* now and then, an invalid tail around the torn-write limit */
        if (done % 4000 == 3999) {
            size_t over = rnd() % 2 ? DHT_WAL_MAX_TORN_BYTES : DHT_WAL_MAX_TORN_BYTES + 1;
            put_random(&b, over, 1);
        }
        run_exact(&b);
    }
    free(b.p);
    printf("fuzz_wal: %lu generated inputs + %lu files in %.1f s: %lu ok, %lu torn, %lu corrupt; "
           "all invariants held\n",
           done, files, now_s() - t0, n_ok, n_torn, n_corrupt);
    return 0;
}
#endif /* DHT_LIBFUZZER */
