/* Unit tests of the replica state machine: lock, lease, fencing by version,
 * write apply rules, recovering reads, persistence failures. */
#include <errno.h>

#include "protocol/replica.h"
#include "test.h"
#include "base/util.h"

static dht_msg handle(dht_replica *r, int64_t now, dht_msg req)
{
    dht_msg rep;
    dht_replica_handle(r, now, &req, &rep);
    return rep;
}

static dht_msg lock(dht_replica *r, int64_t now, int64_t key, uint64_t owner, uint32_t lease)
{
    return handle(r, now, (dht_msg){.type = DHT_MSG_LOCK, .key = key, .owner = owner,
                                    .lease_ms = lease});
}

static dht_msg write_(dht_replica *r, int64_t key, int64_t value, uint64_t c, uint64_t wtr,
                      uint64_t release)
{
    return handle(r, 0, (dht_msg){.type = DHT_MSG_WRITE, .key = key, .value = value,
                                  .version = {c, wtr}, .owner = release});
}

static dht_msg read_(dht_replica *r, int64_t key)
{
    return handle(r, 0, (dht_msg){.type = DHT_MSG_READ, .key = key});
}

static void test_unwritten_reads_zero(void)
{
    dht_replica *r = dht_replica_new();
    dht_msg m = read_(r, 12345);
    CHECK(m.ok);
    CHECK_EQ(m.value, 0);
    CHECK_EQ(m.version.counter, 0);
    CHECK_EQ(m.version.writer, 0);
    m = read_(r, INT64_MIN);
    CHECK(m.ok && m.value == 0);
    dht_replica_free(r);
}

static void test_lock_grant_refuse_reenter(void)
{
    dht_replica *r = dht_replica_new();
    int64_t t = DHT_NS_PER_SEC;
    CHECK(lock(r, t, 1, 100, 500).ok);
    CHECK(!lock(r, t + 1, 1, 200, 500).ok);  /* held by 100 */
    CHECK(lock(r, t + 2, 1, 100, 500).ok);   /* owner again: renewed */
    CHECK(lock(r, t + 3, 2, 200, 500).ok);   /* other key is independent */
    dht_replica_free(r);
}

static void test_lease_expiry_frees_lock(void)
{
    dht_replica *r = dht_replica_new();
    int64_t t = DHT_NS_PER_SEC;
    CHECK(lock(r, t, 1, 100, 500).ok);
    CHECK(!lock(r, t + 499 * DHT_NS_PER_MS, 1, 200, 500).ok);
    CHECK(lock(r, t + 500 * DHT_NS_PER_MS, 1, 200, 500).ok);
    dht_replica_free(r);
}

static void test_unlock_only_by_owner(void)
{
    dht_replica *r = dht_replica_new();
    CHECK(lock(r, 0, 1, 100, 500).ok);
    CHECK(!handle(r, 0, (dht_msg){.type = DHT_MSG_UNLOCK, .key = 1, .owner = 200}).ok);
    CHECK(!lock(r, 1, 1, 200, 500).ok);
    CHECK(handle(r, 0, (dht_msg){.type = DHT_MSG_UNLOCK, .key = 1, .owner = 100}).ok);
    CHECK(lock(r, 2, 1, 200, 500).ok);
    /* unlock of a key never seen, and owner 0, are harmless no-ops */
    CHECK(!handle(r, 0, (dht_msg){.type = DHT_MSG_UNLOCK, .key = 99, .owner = 0}).ok);
    dht_replica_free(r);
}

static void test_write_newer_only(void)
{
    dht_replica *r = dht_replica_new();
    CHECK(write_(r, 1, 10, 1, 5, 0).ok);
    CHECK_EQ(read_(r, 1).value, 10);
    /* older or equal versions are fenced off but acknowledged: the replica
     * holds that version or a newer one */
    dht_msg m = write_(r, 1, 11, 1, 4, 0);
    CHECK(m.ok);
    CHECK_EQ(m.version.writer, 5);
    CHECK_EQ(read_(r, 1).value, 10);
    CHECK(write_(r, 1, 12, 1, 6, 0).ok); /* same counter, larger writer wins */
    CHECK_EQ(read_(r, 1).value, 12);
    CHECK(write_(r, 1, 13, 2, 1, 0).ok); /* larger counter wins */
    CHECK_EQ(read_(r, 1).value, 13);
    CHECK(write_(r, 1, 14, 1, 999, 0).ok);
    CHECK_EQ(read_(r, 1).value, 13);
    dht_replica_free(r);
}

static void test_lock_reply_carries_version(void)
{
    dht_replica *r = dht_replica_new();
    write_(r, 7, 70, 3, 9, 0);
    dht_msg m = lock(r, 0, 7, 100, 500);
    CHECK(m.ok);
    CHECK_EQ(m.version.counter, 3);
    CHECK_EQ(m.version.writer, 9);
    m = lock(r, 1, 7, 200, 500); /* refused replies carry it too */
    CHECK(!m.ok);
    CHECK_EQ(m.version.counter, 3);
    dht_replica_free(r);
}

static void test_write_releases_owner_lock(void)
{
    dht_replica *r = dht_replica_new();
    CHECK(lock(r, 0, 1, 100, 500).ok);
    CHECK(write_(r, 1, 5, 1, 100, 200).ok); /* releases 200's lock: not held */
    CHECK(!lock(r, 1, 1, 300, 500).ok);
    CHECK(write_(r, 1, 6, 2, 100, 100).ok); /* releases 100's */
    CHECK(lock(r, 2, 1, 300, 500).ok);
    /* a stale write (older version) still releases its own lock */
    CHECK(write_(r, 1, 1, 1, 1, 300).ok);
    CHECK(lock(r, 3, 1, 400, 500).ok);
    CHECK_EQ(read_(r, 1).value, 6);
    dht_replica_free(r);
}

static void test_recovering_refuses_reads_accepts_writes(void)
{
    dht_replica *r = dht_replica_new();
    dht_replica_set_recovering(r, true);
    CHECK(!read_(r, 1).ok);
    CHECK(write_(r, 1, 5, 1, 1, 0).ok);
    /* locks too: a grant's version could be older than what the node had
     * acknowledged before it lost its state */
    CHECK(!lock(r, 0, 1, 9, 500).ok);
    dht_replica_set_recovering(r, false);
    CHECK(lock(r, 0, 1, 9, 500).ok);
    CHECK(read_(r, 1).ok);
    CHECK_EQ(read_(r, 1).value, 5);
    dht_replica_free(r);
}

static int persist_calls;
static int failing_persist(void *arg, const dht_entry *w, size_t n)
{
    (void)arg;
    (void)w;
    (void)n;
    persist_calls++;
    return -ENOSPC;
}

static void test_persist_failure_not_applied(void)
{
    dht_replica *r = dht_replica_new();
    write_(r, 1, 5, 1, 1, 0);
    dht_replica_set_persist(r, failing_persist, NULL);
    dht_msg m = write_(r, 1, 6, 2, 1, 0);
    CHECK(!m.ok);
    CHECK_EQ(persist_calls, 1);
    CHECK_EQ(read_(r, 1).value, 5);
    /* a write the replica already has needs no persisting: acknowledged */
    CHECK(write_(r, 1, 5, 1, 1, 0).ok);
    CHECK_EQ(persist_calls, 1);
    dht_replica_free(r);
}

static void count_visit(void *arg, int64_t key, int64_t value, dht_version ver)
{
    (void)ver;
    long long *sum = arg;
    sum[0]++;
    sum[1] += key + value;
}

static void test_many_keys_grow_and_visit(void)
{
    dht_replica *r = dht_replica_new();
    for (int64_t k = -5000; k < 5000; k++)
        CHECK(write_(r, k, k * 3, 1, 1, 0).ok);
    for (int64_t k = -5000; k < 5000; k++)
        CHECK_EQ(read_(r, k).value, k * 3);
    lock(r, 0, 777777, 1, 10); /* locked but never written: not visited */
    long long sum[2] = {0, 0};
    dht_replica_foreach(r, count_visit, sum);
    CHECK_EQ(sum[0], 10000);
    CHECK_EQ(sum[1], 4 * (-5000LL)); /* sum of k + 3k over -5000..4999 */
    CHECK(dht_replica_apply(r, 1, 99, (dht_version){5, 5}) == 1);
    CHECK(dht_replica_apply(r, 1, 98, (dht_version){4, 5}) == 0);
    CHECK_EQ(read_(r, 1).value, 99);
    dht_replica_free(r);
}

static void test_scan_returns_every_key_once(void)
{
    dht_replica *r = dht_replica_new();
    for (int64_t k = 0; k < 1000; k++)
        write_(r, (k * 7919) % 1000 - 500, k, 1, 1, 0); /* keys -500..499, shuffled */
    lock(r, 0, 5000, 1, 10); /* touched, never written: not scanned */
    static bool seen[1000];
    dht_scan_cursor cur = {0, 0, true};
    bool more = true;
    int pages = 0, total = 0;
    while (more) {
        dht_entry *e;
        int n = dht_replica_scan(r, &cur, 64, &e, &more);
        CHECK(n >= 0 && n <= 64);
        for (int i = 0; i < n; i++) {
            if (e[i].key >= 1000)
                continue; /* written mid-scan: may or may not be seen */
            CHECK(e[i].key >= -500 && e[i].key < 500);
            CHECK(!seen[e[i].key + 500]);
            seen[e[i].key + 500] = true;
            /* more keys written mid-scan may or may not show up, but the
             * table growing must not make the scan skip or repeat any */
            if (total == 300)
                for (int64_t k = 1000; k < 3000; k++)
                    write_(r, k, k, 1, 1, 0);
            if (e[i].key < 500)
                total++;
        }
        free(e);
        pages++;
        CHECK(pages < 1000);
    }
    CHECK_EQ(total, 1000);
    /* the replica message form; limit 0 only reports recovering */
    dht_msg m = handle(r, 0, (dht_msg){.type = DHT_MSG_SCAN, .limit = 0});
    CHECK(m.ok && !m.recovering && m.nentries == 0);
    dht_replica_set_recovering(r, true);
    m = handle(r, 0, (dht_msg){.type = DHT_MSG_SCAN, .from_start = true, .limit = 10});
    CHECK(m.ok && m.recovering && m.more && m.nentries <= 10);
    free(m.entries);
    dht_replica_free(r);
}

/* Recovering is per partition: one partition's keys refuse reads and
 * locks while the others serve. */
static void test_recovering_per_partition(void)
{
    dht_replica *r = dht_replica_new();
    int64_t a = 1, b = 2;
    while (dht_partition_of(b) == dht_partition_of(a))
        b++;
    write_(r, a, 10, 1, 1, 0);
    write_(r, b, 20, 1, 1, 0);
    dht_replica_set_partition_recovering(r, dht_partition_of(a), true);
    CHECK(dht_replica_recovering(r));
    CHECK(!read_(r, a).ok);
    CHECK(!lock(r, 0, a, 9, 500).ok);
    CHECK(read_(r, b).ok && read_(r, b).value == 20);
    CHECK(lock(r, 0, b, 9, 500).ok);
    dht_replica_set_partition_recovering(r, dht_partition_of(a), false);
    CHECK(!dht_replica_recovering(r));
    CHECK(read_(r, a).ok && read_(r, a).value == 10);
    /* all at once, and back */
    dht_replica_set_recovering(r, true);
    CHECK(!read_(r, b).ok);
    dht_replica_set_recovering(r, false);
    CHECK(read_(r, b).ok);
    dht_replica_free(r);
}

static bool even_only(void *arg, int64_t key)
{
    (void)arg;
    return key % 2 == 0;
}

/* A filtered scan returns exactly the kept keys, each once, across pages. */
static void test_scan_filtered(void)
{
    dht_replica *r = dht_replica_new();
    for (int64_t k = 0; k < 1000; k++)
        write_(r, k, k, 1, 1, 0);
    dht_scan_cursor cur = {0, 0, true};
    bool more = true, seen[1000] = {false};
    int total = 0;
    while (more) {
        dht_entry *e = NULL;
        int n = dht_replica_scan_filtered(r, &cur, 37, even_only, NULL, &e, &more);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            CHECK(e[i].key % 2 == 0 && !seen[e[i].key]);
            seen[e[i].key] = true;
            total++;
        }
        free(e);
    }
    CHECK_EQ(total, 500);
    dht_replica_free(r);
}

static void test_non_replica_message_refused(void)
{
    dht_replica *r = dht_replica_new();
    CHECK(!handle(r, 0, (dht_msg){.type = DHT_MSG_PUT, .key = 1, .value = 1}).ok);
    CHECK(!handle(r, 0, (dht_msg){.type = (dht_msg_type)99}).ok);
    dht_replica_free(r);
}

/* Requests outside the protocol's bounds are refused and change nothing,
 * one by one and inside a batch, where the valid items still apply. */
static void test_out_of_range_requests_change_nothing(void)
{
    dht_replica *r = dht_replica_new();
    CHECK(write_(r, 5, 1, 3, 7, 0).ok);
    const dht_msg bad[] = {
        {.type = DHT_MSG_WRITE, .key = 5, .value = 666, .version = {UINT64_MAX, UINT64_MAX}},
        {.type = DHT_MSG_WRITE, .key = 5, .value = 666, .version = {DHT_COUNTER_MAX + 1, 1}},
        {.type = DHT_MSG_WRITE, .key = 5, .value = 666, .version = {9, 0}},
        {.type = DHT_MSG_WRITE, .key = 5, .value = 666, .version = {0, 9}},
        {.type = DHT_MSG_LOCK, .key = 5, .owner = 1, .lease_ms = UINT32_MAX},
        {.type = DHT_MSG_LOCK, .key = 5, .owner = 1, .lease_ms = 0},
        {.type = DHT_MSG_LOCK, .key = 5, .owner = 0, .lease_ms = 500},
        {.type = DHT_MSG_UNLOCK, .key = 5, .owner = 0},
        {.type = DHT_MSG_SCAN, .limit = DHT_SCAN_PAGE_MAX + 1},
        {.type = DHT_MSG_SCAN, .limit = 1, .stripe = DHT_REPLICA_STRIPES + 1},
        {.type = DHT_MSG_PUT, .key = 5, .value = 666},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[160] = "";
        CHECK(dht_replica_check(&bad[i], why, sizeof why) != 0);
        CHECK(why[0] != '\0');
        CHECK(!handle(r, 0, bad[i]).ok);
    }
    /* The ceiling itself is a valid version (room is left above it). */
    dht_msg top = {.type = DHT_MSG_WRITE, .key = 6, .value = 6, .version = {DHT_COUNTER_MAX, 1}};
    CHECK_EQ(dht_replica_check(&top, NULL, 0), 0);
    /* A batch: the bad items refused, the good ones applied. */
    dht_msg reqs[3] = {bad[0], top,
                       {.type = DHT_MSG_LOCK, .key = 7, .owner = 3, .lease_ms = 500}};
    dht_msg reps[3];
    dht_replica_handle_batch(r, 0, reqs, reps, 3);
    CHECK(!reps[0].ok);
    CHECK(reps[1].ok);
    CHECK(reps[2].ok);
    dht_msg m = read_(r, 5);
    CHECK_EQ(m.value, 1);
    CHECK_EQ(m.version.counter, 3);
    /* Key 5 is not locked for 49 days: another owner takes it at once. */
    CHECK(lock(r, 0, 5, 2, 500).ok);
    CHECK_EQ(read_(r, 6).value, 6);
    dht_replica_free(r);
}

static const test_case tests[] = {
    {"unwritten_reads_zero", test_unwritten_reads_zero},
    {"lock_grant_refuse_reenter", test_lock_grant_refuse_reenter},
    {"lease_expiry_frees_lock", test_lease_expiry_frees_lock},
    {"unlock_only_by_owner", test_unlock_only_by_owner},
    {"write_newer_only", test_write_newer_only},
    {"lock_reply_carries_version", test_lock_reply_carries_version},
    {"write_releases_owner_lock", test_write_releases_owner_lock},
    {"recovering_refuses_reads_accepts_writes", test_recovering_refuses_reads_accepts_writes},
    {"recovering_per_partition", test_recovering_per_partition},
    {"scan_filtered", test_scan_filtered},
    {"persist_failure_not_applied", test_persist_failure_not_applied},
    {"many_keys_grow_and_visit", test_many_keys_grow_and_visit},
    {"scan_returns_every_key_once", test_scan_returns_every_key_once},
    {"non_replica_message_refused", test_non_replica_message_refused},
    {"out_of_range_requests_change_nothing", test_out_of_range_requests_change_nothing},
    {0, 0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
