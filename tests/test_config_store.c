/* The node's durable configuration record (lib/storage/config_store.h):
 * round trips, strict loading of damaged or hand-made files, refusal of
 * incoherent records, and failures of the write path (which must leave
 * the previous record in place).  Each test runs in its own mkdtemp
 * directory, removed at the end, also when a CHECK fails. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "protocol/membership.h"
#include "storage/config_store.h"
#include "storage/wal.h"
#include "test.h"

/* ------------------------------------------------------------ fixtures */

static char tmp_path[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_rf(const char *path)
{
    chmod(path, 0755); /* the unwritable-directory test may have left it 0555 */
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A failed CHECK exits: the directory must go then too. */
static void cleanup_at_exit(void)
{
    if (tmp_path[0] != '\0')
        rm_rf(tmp_path);
    tmp_path[0] = '\0';
}

static const char *dir_new(void)
{
    static int registered;
    if (!registered) {
        atexit(cleanup_at_exit);
        registered = 1;
    }
    const char *base = getenv("TMPDIR");
    snprintf(tmp_path, sizeof tmp_path, "%s/cfgstore.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(tmp_path) != NULL);
    return tmp_path;
}

static void dir_done(void)
{
    cleanup_at_exit();
}

/* Rotating buffers: rename(path_of(..), path_of(..)) needs two at once. */
static char *path_of(const char *dir, const char *name)
{
    static char p[4][512];
    static int next;
    char *out = p[next++ % 4];
    snprintf(out, sizeof p[0], "%s/%s", dir, name);
    return out;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static bool rec_equal(const dht_config_record *a, const dht_config_record *b)
{
    return str_eq(a->self, b->self) && a->cluster_id == b->cluster_id && a->epoch == b->epoch &&
           a->replicas == b->replicas && str_eq(a->members, b->members) &&
           a->next_epoch == b->next_epoch && a->next_replicas == b->next_replicas &&
           str_eq(a->next_members, b->next_members) && a->transfer_done == b->transfer_done &&
           a->removed_epoch == b->removed_epoch && a->acceptor_len == b->acceptor_len &&
           (a->acceptor_len == 0 || memcmp(a->acceptor, b->acceptor, a->acceptor_len) == 0);
}

/* The longest address dht_member_addr_normalise keeps (255 characters),
 * distinct and in strcmp order by i. */
static void long_addr(int i, char *out)
{
    int n = snprintf(out, DHT_ADDR_MAX, "n%03d", i);
    for (; n < 249; n++)
        out[n] = (char)('a' + (i + n) % 26);
    /* i is 0..127: the port has five digits (the compiler cannot know). */
    snprintf(out + n, (size_t)(DHT_ADDR_MAX - n), ":%05u", (unsigned)(10000 + (i & 0xffff)) % 100000u);
    CHECK(strlen(out) == DHT_ADDR_MAX - 1);
}

static char *long_list(int from, int count)
{
    char *list = malloc((size_t)count * DHT_ADDR_MAX);
    CHECK(list != NULL);
    size_t used = 0;
    for (int i = from; i < from + count; i++) {
        char a[DHT_ADDR_MAX];
        long_addr(i, a);
        used += (size_t)sprintf(list + used, "%s%s", i > from ? "," : "", a);
    }
    return list;
}

static void make_minimal(dht_config_record *r)
{
    memset(r, 0, sizeof *r);
    r->self = strdup("127.0.0.1:50001");
    r->epoch = 1;
    r->replicas = 1;
    r->members = strdup("127.0.0.1:50001");
}

/* Joint state, 128 members of 255 characters on both sides, the largest
 * acceptor with zeros and 0xff in it. */
static void make_full(dht_config_record *r)
{
    memset(r, 0, sizeof *r);
    char self[DHT_ADDR_MAX];
    long_addr(5, self);
    r->self = strdup(self);
    r->cluster_id = UINT64_C(0xfedcba9876543210);
    r->epoch = UINT64_C(18446744073709551614); /* the last epoch with a successor */
    r->replicas = 3;
    r->members = long_list(0, DHT_MAX_MEMBERS);
    r->next_epoch = r->epoch + 1;
    r->next_replicas = 5;
    r->next_members = long_list(1, DHT_MAX_MEMBERS);
    r->transfer_done = true;
    r->acceptor_len = DHT_CONFIG_ACCEPTOR_MAX;
    r->acceptor = malloc(r->acceptor_len);
    CHECK(r->acceptor != NULL);
    for (size_t i = 0; i < r->acceptor_len; i++)
        r->acceptor[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? 0xff : (uint8_t)(i * 7);
}

/* Small enough to corrupt every byte of, yet with every field set. */
static void make_joint(dht_config_record *r)
{
    memset(r, 0, sizeof *r);
    r->self = strdup("10.0.0.2:7000");
    r->cluster_id = UINT64_C(0x00ff00ff12345678);
    r->epoch = 3;
    r->replicas = 3;
    r->members = strdup("10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000");
    r->next_epoch = 4;
    r->next_replicas = 3;
    r->next_members = strdup("10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000,10.0.0.4:7000");
    r->transfer_done = false;
    static const uint8_t acc[] = {0x00, 0xff, 0x00, 0x7f, 0x80, 0x0a, 0x0d, 0xff, 0x00};
    r->acceptor_len = sizeof acc;
    r->acceptor = malloc(sizeof acc);
    memcpy(r->acceptor, acc, sizeof acc);
}

static void save_ok(const char *dir, const dht_config_record *r)
{
    char err[1024] = "";
    int rc = dht_config_store_save(dir, r, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "save: %s\n", err);
    CHECK_EQ(rc, 0);
}

static void load_same(const char *dir, const dht_config_record *want)
{
    dht_config_record got;
    char err[1024] = "";
    int rc = dht_config_store_load(dir, &got, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "load: %s\n", err);
    CHECK_EQ(rc, 0);
    CHECK(rec_equal(&got, want));
    dht_config_record_free(&got);
}

/* Loads and demands -1 with a one-line reason naming the file; returns the
 * reason for further checks. */
static const char *load_fails(const char *dir)
{
    static char err[1024];
    dht_config_record got;
    memset(err, 0, sizeof err);
    memset(&got, 0x5a, sizeof got); /* must come back zeroed */
    int rc = dht_config_store_load(dir, &got, err, sizeof err);
    if (rc != -1) {
        char *d = rc == 0 ? dht_config_record_describe(&got) : NULL;
        fprintf(stderr, "load returned %d (%s)\n", rc, d ? d : "");
        free(d);
    }
    CHECK_EQ(rc, -1);
    CHECK(strstr(err, "/config") != NULL);
    CHECK(strchr(err, '\n') == NULL);
    CHECK(got.self == NULL && got.members == NULL && got.next_members == NULL &&
          got.acceptor == NULL && got.epoch == 0);
    return err;
}

/* Rewrites the checksum line so a hand-made body is judged on its content. */
static void spit_with_crc(const char *path, const char *body)
{
    size_t n = strlen(body);
    char *buf = malloc(n + 32);
    CHECK(buf != NULL);
    memcpy(buf, body, n);
    int k = sprintf(buf + n, "crc32c = %08" PRIx32 "\n", dht_crc32c(0, body, n));
    spit(path, buf, n + (size_t)k);
    free(buf);
}

/* The saved file without its checksum line, for tests to edit. */
static char *body_of(const char *dir)
{
    size_t n;
    char *buf = slurp(path_of(dir, "config"), &n);
    char *crc = strstr(buf, "\ncrc32c = ");
    CHECK(crc != NULL);
    crc[1] = '\0';
    return buf;
}

/* body with the first "from" replaced by "to" (which must occur). */
static char *replaced(const char *body, const char *from, const char *to)
{
    const char *at = strstr(body, from);
    CHECK(at != NULL);
    size_t pre = (size_t)(at - body);
    char *out = malloc(strlen(body) - strlen(from) + strlen(to) + 1);
    CHECK(out != NULL);
    sprintf(out, "%.*s%s%s", (int)pre, body, to, at + strlen(from));
    return out;
}

/* ------------------------------------------------------------ tests */

static void test_round_trip_full(void)
{
    const char *dir = dir_new();
    dht_config_record r;
    make_full(&r);
    save_ok(dir, &r);
    load_same(dir, &r);
    /* Saving what was loaded gives the same bytes: one canonical form. */
    size_t n1, n2;
    char *first = slurp(path_of(dir, "config"), &n1);
    CHECK(strncmp(first, "dht-config 1\n", 13) == 0);
    dht_config_record back;
    char err[256];
    CHECK_EQ(dht_config_store_load(dir, &back, err, sizeof err), 0);
    save_ok(dir, &back);
    char *second = slurp(path_of(dir, "config"), &n2);
    CHECK(n1 == n2 && memcmp(first, second, n1) == 0);
    CHECK(!exists(path_of(dir, "config.tmp")));
    free(first);
    free(second);
    dht_config_record_free(&back);
    dht_config_record_free(&r);
    dir_done();
}

static void test_round_trip_minimal(void)
{
    const char *dir = dir_new();
    dht_config_record r;
    make_minimal(&r);
    save_ok(dir, &r);
    load_same(dir, &r);
    dht_config_record got;
    char err[256];
    CHECK_EQ(dht_config_store_load(dir, &got, err, sizeof err), 0);
    CHECK(got.next_members == NULL && got.acceptor == NULL && got.acceptor_len == 0);
    dht_config_record_free(&got);

    /* A removed node, recorded with the configuration that removed it. */
    free(r.members);
    r.members = strdup("127.0.0.1:50002,127.0.0.1:50003");
    r.epoch = 7;
    r.removed_epoch = 7;
    r.cluster_id = 1;
    save_ok(dir, &r);
    load_same(dir, &r);
    /* ... and one that only heard of its removal from a later epoch. */
    free(r.members);
    r.members = strdup("127.0.0.1:50001,127.0.0.1:50002");
    r.epoch = 5;
    r.removed_epoch = 9;
    save_ok(dir, &r);
    load_same(dir, &r);
    /* Joining: not yet in the current members, in the next. */
    dht_config_record_free(&r);
    make_minimal(&r);
    free(r.members);
    r.members = strdup("127.0.0.1:50002");
    r.next_epoch = 2;
    r.next_replicas = 2;
    r.next_members = strdup("127.0.0.1:50001,127.0.0.1:50002");
    save_ok(dir, &r);
    load_same(dir, &r);
    dht_config_record_free(&r);
    dir_done();
}

static void test_absent(void)
{
    const char *dir = dir_new();
    dht_config_record got;
    char err[256] = "";
    memset(&got, 0x5a, sizeof got);
    CHECK_EQ(dht_config_store_load(dir, &got, err, sizeof err), 1);
    CHECK(got.self == NULL && got.members == NULL && got.acceptor == NULL);
    /* A directory that does not exist yet is a fresh one too. */
    CHECK_EQ(dht_config_store_load(path_of(dir, "not-yet"), &got, err, sizeof err), 1);
    /* An old-format directory: meta files but no record. */
    spit(path_of(dir, "meta.config"), "x", 1);
    CHECK_EQ(dht_config_store_load(dir, &got, err, sizeof err), 1);
    dir_done();
}

static void test_leftover_tmp(void)
{
    const char *dir = dir_new();
    dht_config_record got, r;
    char err[256];
    make_joint(&r);
    /* A crash mid-save, before any record existed: not a record. */
    spit(path_of(dir, "config.tmp"), "dht-config 1\nself = 10.0", 24);
    CHECK_EQ(dht_config_store_load(dir, &got, err, sizeof err), 1);
    /* A complete tmp is still only a tmp: the rename is the commit. */
    save_ok(dir, &r);
    size_t n;
    char *whole = slurp(path_of(dir, "config"), &n);
    CHECK_EQ(unlink(path_of(dir, "config")), 0);
    spit(path_of(dir, "config.tmp"), whole, n);
    CHECK_EQ(dht_config_store_load(dir, &got, err, sizeof err), 1);
    /* With a record beside it, the record wins. */
    dht_config_record m;
    make_minimal(&m);
    save_ok(dir, &m);
    spit(path_of(dir, "config.tmp"), whole, n / 2);
    load_same(dir, &m);
    /* The next save replaces the leftover. */
    save_ok(dir, &r);
    CHECK(!exists(path_of(dir, "config.tmp")));
    load_same(dir, &r);
    free(whole);
    dht_config_record_free(&m);
    dht_config_record_free(&r);
    dir_done();
}

static void flip_all(const char *dir, size_t stride)
{
    static const uint8_t masks[] = {0x01, 0x20, 0x80, 0xff};
    size_t n;
    const char *path = path_of(dir, "config");
    char *orig = slurp(path, &n);
    char *bad = malloc(n);
    CHECK(bad != NULL);
    size_t tried = 0;
    for (size_t i = 0; i < n; i += (i + stride < n || i == n - 1) ? stride : n - 1 - i) {
        for (size_t m = 0; m < sizeof masks; m++) {
            memcpy(bad, orig, n);
            bad[i] = (char)(bad[i] ^ masks[m]);
            spit(path, bad, n);
            const char *why = load_fails(dir);
            CHECK(why[0] != '\0');
            tried++;
        }
        if (i == n - 1)
            break;
    }
    CHECK(tried >= sizeof masks * (n / stride));
    spit(path, orig, n);
    free(orig);
    free(bad);
}

static void test_every_byte_flipped(void)
{
    const char *dir = dir_new();
    dht_config_record r;
    make_joint(&r);
    save_ok(dir, &r);
    flip_all(dir, 1);
    load_same(dir, &r); /* the original is intact again */
    dht_config_record_free(&r);
    make_minimal(&r);
    save_ok(dir, &r);
    flip_all(dir, 1);
    dht_config_record_free(&r);
    /* The big one: a sample (every 997th byte, and the last). */
    make_full(&r);
    save_ok(dir, &r);
    flip_all(dir, 997);
    load_same(dir, &r);
    dht_config_record_free(&r);
    dir_done();
}

static void truncate_all(const char *dir, size_t stride)
{
    size_t n;
    const char *path = path_of(dir, "config");
    char *orig = slurp(path, &n);
    for (size_t len = 0; len < n; len += len + 200 >= n ? 1 : stride) {
        spit(path, orig, len);
        load_fails(dir);
    }
    spit(path, orig, n);
    free(orig);
}

static void test_every_truncation(void)
{
    const char *dir = dir_new();
    dht_config_record r;
    make_joint(&r);
    save_ok(dir, &r);
    truncate_all(dir, 1);
    load_same(dir, &r);
    dht_config_record_free(&r);
    make_full(&r);
    save_ok(dir, &r);
    truncate_all(dir, 97); /* sampled, then every length of the last 200 */
    load_same(dir, &r);
    /* Extra bytes after the checksum line are damage too. */
    size_t n;
    char *orig = slurp(path_of(dir, "config"), &n);
    char *longer = malloc(n + 2);
    memcpy(longer, orig, n);
    memcpy(longer + n, "x\n", 2);
    spit(path_of(dir, "config"), longer, n + 1);
    load_fails(dir);
    spit(path_of(dir, "config"), longer, n + 2);
    load_fails(dir);
    free(orig);
    free(longer);
    dht_config_record_free(&r);
    dir_done();
}

typedef void (*mutate_fn)(dht_config_record *r);

static void set_str(char **field, const char *v)
{
    free(*field);
    *field = v ? strdup(v) : NULL;
}

static void m_unsorted(dht_config_record *r) { set_str(&r->members, "10.0.0.2:7000,10.0.0.1:7000,10.0.0.3:7000"); }
static void m_dup(dht_config_record *r) { set_str(&r->members, "10.0.0.1:7000,10.0.0.2:7000,10.0.0.2:7000"); }
static void m_dup_norm(dht_config_record *r) { set_str(&r->next_members, "10.0.0.2:7000,127.0.0.1:7000,localhost:7000"); }
static void m_not_norm(dht_config_record *r) { set_str(&r->members, "10.0.0.1:7000,10.0.0.2:7000,LOCALHOST:7000"); }
static void m_empty_entry(dht_config_record *r) { set_str(&r->members, "10.0.0.1:7000,,10.0.0.2:7000"); }
static void m_trailing_comma(dht_config_record *r) { set_str(&r->members, "10.0.0.1:7000,10.0.0.2:7000,"); }
static void m_empty(dht_config_record *r) { set_str(&r->members, ""); }
static void m_null(dht_config_record *r) { set_str(&r->members, NULL); }
static void m_bad_addr(dht_config_record *r) { set_str(&r->members, "10.0.0.1,10.0.0.2:7000"); }
static void m_r0(dht_config_record *r) { r->replicas = 0; }
static void m_r_big(dht_config_record *r) { r->replicas = 4; }
static void m_next_r0(dht_config_record *r) { r->next_replicas = 0; }
static void m_next_r_big(dht_config_record *r) { r->next_replicas = 5; }
static void m_epoch0(dht_config_record *r) { r->epoch = 0; r->next_epoch = 1; }
static void m_next_skip(dht_config_record *r) { r->next_epoch = 5; }
static void m_next_same(dht_config_record *r) { r->next_epoch = 3; }
static void m_no_joint_leftovers(dht_config_record *r) { r->next_epoch = 0; }
static void m_transfer_alone(dht_config_record *r)
{
    r->next_epoch = 0;
    r->next_replicas = 0;
    set_str(&r->next_members, NULL);
    r->transfer_done = true;
}
static void m_removed_joint(dht_config_record *r) { r->removed_epoch = 4; }
static void m_removed_old(dht_config_record *r)
{
    r->next_epoch = 0;
    r->next_replicas = 0;
    set_str(&r->next_members, NULL);
    r->removed_epoch = 2;
}
static void m_removed_but_member(dht_config_record *r)
{
    m_removed_old(r);
    r->removed_epoch = 3;
}
static void m_self_absent(dht_config_record *r) { set_str(&r->self, "10.0.0.9:7000"); }
static void m_self_not_norm(dht_config_record *r) { set_str(&r->self, "localhost:7000"); }
static void m_self_null(dht_config_record *r) { set_str(&r->self, NULL); }
static void m_acceptor_big(dht_config_record *r)
{
    free(r->acceptor);
    r->acceptor_len = DHT_CONFIG_ACCEPTOR_MAX + 1;
    r->acceptor = calloc(1, r->acceptor_len);
}
static void m_acceptor_null(dht_config_record *r)
{
    free(r->acceptor);
    r->acceptor = NULL;
}
static void m_too_many(dht_config_record *r)
{
    free(r->members);
    char *list = malloc(200 * 24);
    size_t used = 0;
    for (int i = 0; i <= DHT_MAX_MEMBERS; i++)
        used += (size_t)sprintf(list + used, "%s10.0.0.2:%d", i ? "," : "", 7000 + i);
    r->members = list;
}
static void m_too_long(dht_config_record *r)
{
    char *list = malloc(DHT_ADDR_MAX + 40);
    char a[DHT_ADDR_MAX];
    long_addr(0, a);
    sprintf(list, "10.0.0.2:7000,%sz:1", a); /* 256 characters: one too many */
    free(r->members);
    r->members = list;
}

static void test_invalid_refused(void)
{
    static const struct {
        const char *name;
        mutate_fn fn;
        const char *mentions;
    } cases[] = {
        {"unsorted", m_unsorted, "out of order"},
        {"duplicate", m_dup, "listed twice"},
        {"duplicate after normalisation", m_dup_norm, "not in normal form"},
        {"not normalised", m_not_norm, "not in normal form"},
        {"empty entry", m_empty_entry, "members: entry 2 is empty"},
        {"trailing comma", m_trailing_comma, "entry 3 is empty"},
        {"empty members", m_empty, "members is empty"},
        {"no members", m_null, "members is empty"},
        {"bad address", m_bad_addr, "members"},
        {"R = 0", m_r0, "replicas = 0"},
        {"R > count", m_r_big, "replicas = 4"},
        {"next R = 0", m_next_r0, "next_replicas = 0"},
        {"next R > count", m_next_r_big, "next_replicas = 5"},
        {"epoch 0", m_epoch0, "epoch is 0"},
        {"next skips", m_next_skip, "next_epoch = 5"},
        {"next same", m_next_same, "next_epoch = 3"},
        {"next fields without next", m_no_joint_leftovers, "next_replicas"},
        {"transfer without next", m_transfer_alone, "transfer_done"},
        {"removed and joint", m_removed_joint, "removed_epoch = 4"},
        {"removed before epoch", m_removed_old, "removed_epoch = 2"},
        {"removed but member", m_removed_but_member, "self = 10.0.0.2:7000"},
        {"self in neither", m_self_absent, "self = 10.0.0.9:7000"},
        {"self not normalised", m_self_not_norm, "self"},
        {"no self", m_self_null, "self is missing"},
        {"acceptor too big", m_acceptor_big, "acceptor"},
        {"acceptor NULL", m_acceptor_null, "acceptor"},
        {"too many members", m_too_many, "more than 128"},
        {"address too long", m_too_long, "longer than 255"},
    };
    const char *dir = dir_new();
    dht_config_record good, bad;
    make_joint(&good);
    char err[1024];
    /* Nothing is written for an invalid record, not even a tmp file. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ(dht_config_record_copy(&bad, &good), 0);
        cases[i].fn(&bad);
        err[0] = '\0';
        int rc = dht_config_store_save(dir, &bad, err, sizeof err);
        if (rc != -1 || strstr(err, cases[i].mentions) == NULL ||
            strstr(err, "refusing to save") == NULL)
            fprintf(stderr, "%s: rc %d, '%s'\n", cases[i].name, rc, err);
        CHECK_EQ(rc, -1);
        CHECK(strstr(err, cases[i].mentions) != NULL);
        CHECK(strchr(err, '\n') == NULL);
        CHECK_EQ(dht_config_record_validate(&bad, err, sizeof err), -1);
        CHECK(!exists(path_of(dir, "config")) && !exists(path_of(dir, "config.tmp")));
        dht_config_record_free(&bad);
    }
    /* ... and an existing record is left as it was, byte for byte. */
    save_ok(dir, &good);
    size_t n0, n1;
    char *before = slurp(path_of(dir, "config"), &n0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ(dht_config_record_copy(&bad, &good), 0);
        cases[i].fn(&bad);
        CHECK_EQ(dht_config_store_save(dir, &bad, err, sizeof err), -1);
        dht_config_record_free(&bad);
        char *after = slurp(path_of(dir, "config"), &n1);
        CHECK(n0 == n1 && memcmp(before, after, n0) == 0);
        CHECK(!exists(path_of(dir, "config.tmp")));
        free(after);
    }
    free(before);
    load_same(dir, &good);
    dht_config_record_free(&good);
    dir_done();
}

/* Files with a correct checksum but content save never writes: the
 * parser's own strictness, not the checksum's. */
static void test_strict_parse(void)
{
    static const struct {
        const char *from, *to, *mentions;
    } cases[] = {
        {"epoch = 3\n", "epoch = 3\nflavour = x\n", "unknown key 'flavour'"},
        {"epoch = 3\n", "epoch = 3\nepoch = 3\n", "epoch given twice"},
        {"epoch = 3\n", "", "epoch is missing"},
        {"acceptor = ", "x", "line 12: 'x00ff007f800a0dff00' is not 'key = value'"},
        {"acceptor = 00ff007f800a0dff00\n", "", "acceptor is missing"},
        {"epoch = 3\n", "epoch = three\n", "epoch = 'three': not a decimal number"},
        {"epoch = 3\n", "epoch = 03\n", "epoch = '03'"},
        {"epoch = 3\n", "epoch = -3\n", "epoch = '-3'"},
        {"epoch = 3\n", "epoch = +3\n", "epoch = '+3'"},
        {"epoch = 3\n", "epoch = 3 \n", "epoch = '3 '"},
        {"epoch = 3\n", "epoch = \n", "epoch = ''"},
        {"epoch = 3\n", "epoch = 18446744073709551616\n", "out of range"},
        {"replicas = 3\n", "replicas = 129\n", "replicas = '129': out of range"},
        {"replicas = 3\n", "replicas = 2147483648\n", "out of range"},
        {"cluster_id = 00ff00ff12345678\n", "cluster_id = 00FF00FF12345678\n", "cluster_id"},
        {"cluster_id = 00ff00ff12345678\n", "cluster_id = ff00ff12345678\n", "cluster_id"},
        {"transfer_done = no\n", "transfer_done = 0\n", "transfer_done = '0'"},
        {"acceptor = 00ff", "acceptor = 00FF", "acceptor = '00FF"},
        {"acceptor = 00ff", "acceptor = 0ff", "odd number"},
        {"epoch = 3\n", "epoch=3\n", "not 'key = value'"},
        {"epoch = 3\n", "epoch = 3\r\n", "epoch = '3?'"},
        {"epoch = 3\n", "\n", "not 'key = value'"},
        {"dht-config 1\n", "dht-config 2\n", "unknown format version 2"},
        {"dht-config 1\n", "dht-config 1.0\n", "not a configuration record"},
        {"dht-config 1\n", "", "not a configuration record"},
        {"members = 10.0.0.1:7000,10.0.0.2:7000", "members = 10.0.0.2:7000,10.0.0.1:7000",
         "invalid record: members: '10.0.0.1:7000' is out of order"},
        {"next_epoch = 4\n", "next_epoch = 5\n", "invalid record: next_epoch = 5"},
        {"removed_epoch = 0\n", "removed_epoch = 9\n", "invalid record: removed_epoch = 9"},
        {"self = 10.0.0.2:7000\n", "self = 10.0.0.2:07000\n", "not in normal form"},
    };
    const char *dir = dir_new();
    dht_config_record r;
    make_joint(&r);
    save_ok(dir, &r);
    char *body = body_of(dir);
    /* The unedited body with a recomputed checksum is the record itself. */
    spit_with_crc(path_of(dir, "config"), body);
    load_same(dir, &r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *edited = replaced(body, cases[i].from, cases[i].to);
        spit_with_crc(path_of(dir, "config"), edited);
        const char *why = load_fails(dir);
        if (strstr(why, cases[i].mentions) == NULL)
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, why, cases[i].mentions);
        CHECK(strstr(why, cases[i].mentions) != NULL);
        free(edited);
    }
    /* Every line may come in another order: only content is judged. */
    const char *tail = strstr(body, "acceptor = ");
    CHECK(tail != NULL);
    size_t head = (size_t)(tail - body), first = strlen("dht-config 1\n");
    char *reordered = malloc(strlen(body) + 1);
    sprintf(reordered, "dht-config 1\n%s%.*s", tail, (int)(head - first), body + first);
    spit_with_crc(path_of(dir, "config"), reordered);
    load_same(dir, &r);
    free(reordered);
    /* A NUL byte inside a value, checksummed, is still refused. */
    size_t n = strlen(body);
    char *withnul = malloc(n + 32);
    memcpy(withnul, body, n);
    char *at = strstr(withnul, "self = 10") + 7;
    *at = '\0';
    int k = sprintf(withnul + n, "crc32c = %08" PRIx32 "\n", dht_crc32c(0, withnul, n));
    spit(path_of(dir, "config"), withnul, n + (size_t)k);
    CHECK(strstr(load_fails(dir), "NUL") != NULL);
    free(withnul);
    /* Wrong checksums name themselves. */
    spit(path_of(dir, "config"), body, strlen(body));
    load_fails(dir);
    free(body);
    dht_config_record_free(&r);
    dir_done();
}

static void test_unwritable(void)
{
    const char *dir = dir_new();
    dht_config_record r, m;
    make_joint(&r);
    make_minimal(&m);
    char err[1024];
    /* The data directory is not a directory, or does not exist. */
    spit(path_of(dir, "file"), "x", 1);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/file", dir);
    CHECK_EQ(dht_config_store_save(sub, &r, err, sizeof err), -1);
    CHECK(strstr(err, sub) != NULL && strstr(err, "directory") != NULL);
    snprintf(sub, sizeof sub, "%s/missing", dir);
    CHECK_EQ(dht_config_store_save(sub, &r, err, sizeof err), -1);
    CHECK(strstr(err, "No such file") != NULL);
    save_ok(dir, &m);

    /* config.tmp cannot be created (a directory in the way): root or not. */
    CHECK_EQ(mkdir(path_of(dir, "config.tmp"), 0755), 0);
    CHECK_EQ(dht_config_store_save(dir, &r, err, sizeof err), -1);
    CHECK(strstr(err, "config.tmp: cannot create") != NULL);
    CHECK(strstr(err, "unchanged") != NULL);
    load_same(dir, &m);
    CHECK_EQ(rmdir(path_of(dir, "config.tmp")), 0);

    /* The rename fails (config is a non-empty directory): the tmp goes. */
    CHECK_EQ(rename(path_of(dir, "config"), path_of(dir, "keep")), 0);
    CHECK_EQ(mkdir(path_of(dir, "config"), 0755), 0);
    spit(path_of(dir, "config/x"), "x", 1);
    CHECK_EQ(dht_config_store_save(dir, &r, err, sizeof err), -1);
    CHECK(strstr(err, "cannot rename") != NULL);
    CHECK(!exists(path_of(dir, "config.tmp")));
    CHECK_EQ(unlink(path_of(dir, "config/x")), 0);
    CHECK_EQ(rmdir(path_of(dir, "config")), 0);
    CHECK_EQ(rename(path_of(dir, "keep"), path_of(dir, "config")), 0);

    /* Permissions, where they bind (not for root). */
    CHECK_EQ(chmod(dir, 0555), 0);
    int probe = open(path_of(dir, "probe"), O_WRONLY | O_CREAT, 0644);
    if (probe >= 0) {
        close(probe);
        unlink(path_of(dir, "probe"));
        printf("  (running as root: the permission case is covered by the cases above)\n");
    } else {
        CHECK_EQ(dht_config_store_save(dir, &r, err, sizeof err), -1);
        CHECK(strstr(err, "config.tmp: cannot create: Permission denied") != NULL);
    }
    CHECK_EQ(chmod(dir, 0755), 0);
    load_same(dir, &m);

    /* An unreadable record is an error, not "no record". */
    CHECK_EQ(unlink(path_of(dir, "config")), 0);
    CHECK_EQ(mkdir(path_of(dir, "config"), 0755), 0);
    CHECK(strstr(load_fails(dir), "cannot read") != NULL);
    CHECK_EQ(rmdir(path_of(dir, "config")), 0);
    dht_config_record_free(&r);
    dht_config_record_free(&m);
    dir_done();
}

/* A write that fails half-way (the file size limit stands in for a full
 * disk): the old record stays, the partial tmp goes. */
static void test_write_fails_midway(void)
{
    const char *dir = dir_new();
    dht_config_record r, m;
    make_full(&r);
    make_minimal(&m);
    save_ok(dir, &m);
    struct rlimit old, small = {8192, 0};
    CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    char err[1024];
    int rc = dht_config_store_save(dir, &r, err, sizeof err);
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    CHECK_EQ(rc, -1);
    CHECK(strstr(err, "config.tmp: cannot write") != NULL);
    CHECK(!exists(path_of(dir, "config.tmp")));
    load_same(dir, &m);
    dht_config_record_free(&r);
    dht_config_record_free(&m);
    dir_done();
}

/* A process killed at random points of back-to-back saves: the record is
 * always one of the two, whole.  (A process crash, not a power cut: it
 * checks the commit point is the rename, not that fsync is honest.) */
static void test_killed_while_saving(void)
{
    const char *dir = dir_new();
    dht_config_record a, b;
    make_joint(&a);
    make_full(&b);
    save_ok(dir, &a);
    srand((unsigned)time(NULL));
    int saw_b = 0;
    for (int round = 0; round < 25; round++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            char err[256];
            for (int i = 0;; i++)
                dht_config_store_save(dir, i % 2 ? &a : &b, err, sizeof err);
        }
        struct timespec ts = {0, (long)(rand() % 20000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        dht_config_record got;
        char err[1024] = "";
        int rc = dht_config_store_load(dir, &got, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "round %d: %s\n", round, err);
        CHECK_EQ(rc, 0);
        CHECK(rec_equal(&got, &a) || rec_equal(&got, &b));
        saw_b += rec_equal(&got, &b);
        dht_config_record_free(&got);
    }
    printf("  (%d of 25 kills found the second record)\n", saw_b);
    dht_config_record_free(&a);
    dht_config_record_free(&b);
    dir_done();
}

static void test_describe(void)
{
    dht_config_record r;
    make_joint(&r);
    char *d = dht_config_record_describe(&r);
    CHECK(d != NULL);
    CHECK(strcmp(d, "epoch 3, R=3, members 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000; "
                    "joining epoch 4, R=3, members "
                    "10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000,10.0.0.4:7000") == 0);
    free(d);
    r.transfer_done = true;
    d = dht_config_record_describe(&r);
    CHECK(d != NULL && strstr(d, "10.0.0.4:7000, transfer done") != NULL);
    free(d);
    dht_config_record_free(&r);

    make_minimal(&r);
    d = dht_config_record_describe(&r);
    CHECK(d != NULL && strcmp(d, "epoch 1, R=1, members 127.0.0.1:50001") == 0);
    free(d);
    set_str(&r.members, "127.0.0.1:50002");
    r.removed_epoch = 1;
    d = dht_config_record_describe(&r);
    CHECK(d != NULL && strcmp(d, "epoch 1, R=1, members 127.0.0.1:50002; removed in epoch 1") == 0);
    free(d);
    dht_config_record_free(&r);

    /* Nothing cut: the longest lists come out whole. */
    make_full(&r);
    d = dht_config_record_describe(&r);
    CHECK(d != NULL);
    CHECK(strstr(d, r.members) != NULL && strstr(d, r.next_members) != NULL);
    free(d);
    dht_config_record_free(&r);

    /* An empty record still describes (for logging a failed load). */
    memset(&r, 0, sizeof r);
    d = dht_config_record_describe(&r);
    CHECK(d != NULL && strcmp(d, "epoch 0, R=0, members (none)") == 0);
    free(d);
}

static void test_copy_and_free(void)
{
    dht_config_record a, b;
    make_full(&a);
    CHECK_EQ(dht_config_record_copy(&b, &a), 0);
    CHECK(rec_equal(&a, &b));
    CHECK(a.members != b.members && a.acceptor != b.acceptor && a.self != b.self);
    b.acceptor[0] ^= 1;
    CHECK(!rec_equal(&a, &b));
    dht_config_record_free(&a);
    CHECK(a.self == NULL && a.members == NULL && a.acceptor == NULL && a.acceptor_len == 0);
    dht_config_record_free(&a); /* twice is harmless */
    dht_config_record_free(NULL);
    dht_config_record_free(&b);
    make_minimal(&a);
    CHECK_EQ(dht_config_record_copy(&b, &a), 0);
    CHECK(b.next_members == NULL && b.acceptor == NULL && rec_equal(&a, &b));
    dht_config_record_free(&a);
    dht_config_record_free(&b);
}

static const test_case tests[] = {
    {"round_trip_full", test_round_trip_full},
    {"round_trip_minimal", test_round_trip_minimal},
    {"absent", test_absent},
    {"leftover_tmp", test_leftover_tmp},
    {"every_byte_flipped", test_every_byte_flipped},
    {"every_truncation", test_every_truncation},
    {"invalid_refused", test_invalid_refused},
    {"strict_parse", test_strict_parse},
    {"unwritable", test_unwritable},
    {"write_fails_midway", test_write_fails_midway},
    {"killed_while_saving", test_killed_while_saving},
    {"describe", test_describe},
    {"copy_and_free", test_copy_and_free},
    {0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
