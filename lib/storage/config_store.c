/* The node's configuration record (config_store.h).  Load is strict on
 * purpose: the record is written only by save, in one canonical form, so
 * anything else in the file is damage or a hand edit, and either could
 * make a node act on a configuration nobody chose. */
#include "storage/config_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/membership.h"
#include "storage/wal.h"

#define FILE_NAME "config"
#define TMP_NAME "config.tmp"
#define FORMAT_TAG "dht-config"
#define FORMAT_VERSION 1
#define CRC_KEY "crc32c = "
/* Twice the longest members list, the acceptor in hex and the small
 * fields fit in well under this; a larger file was not written by us. */
#define FILE_MAX (256 * 1024)
/* How much of a bad value an error message quotes: enough to recognise
 * it, while a 32 KiB members list still gives a readable line. */
#define QUOTE_MAX 80

/* ------------------------------------------------------------ helpers */

/* Error lines end up in logs: a control byte from a damaged file must not
 * split or garble them. */
static void scrub(char *err, size_t errlen)
{
    if (err == NULL || errlen == 0)
        return;
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = '?';
}

/* s[0..n) for a message: at most QUOTE_MAX bytes, marked when cut. */
static const char *quote(const char *s, size_t n, char *buf, size_t buflen)
{
    size_t keep = n > QUOTE_MAX ? QUOTE_MAX : n;
    snprintf(buf, buflen, "%.*s%s", (int)keep, s, n > keep ? "..." : "");
    return buf;
}

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

/* ------------------------------------------------------------ validation */

/* Walks a comma-separated list: *cur is the next entry, NULL after the
 * last.  Empty entries are yielded (as len 0) so that check_list can
 * refuse "a,,b" and "a," instead of skipping them. */
static bool next_entry(const char **cur, const char **start, size_t *len)
{
    if (*cur == NULL)
        return false;
    const char *comma = strchr(*cur, ',');
    *start = *cur;
    *len = comma ? (size_t)(comma - *cur) : strlen(*cur);
    *cur = comma ? comma + 1 : NULL;
    return true;
}

static bool list_has(const char *list, const char *addr)
{
    if (list == NULL)
        return false;
    size_t len, alen = strlen(addr);
    const char *e, *cur = list;
    while (next_entry(&cur, &e, &len))
        if (len == alen && memcmp(e, addr, len) == 0)
            return true;
    return false;
}

/* One address in normal form.  Holds the whole entry in a DHT_ADDR_MAX
 * buffer only after checking it fits, so nothing is cut silently. */
static int check_addr(const char *field, const char *s, size_t n, char *err, size_t errlen)
{
    char addr[DHT_ADDR_MAX], norm[DHT_ADDR_MAX], why[160], q[QUOTE_MAX + 4];
    if (n == 0) {
        snprintf(err, errlen, "%s: empty address", field);
        return -1;
    }
    if (n >= DHT_ADDR_MAX) {
        snprintf(err, errlen, "%s: '%s' is longer than %d characters", field,
                 quote(s, n, q, sizeof q), DHT_ADDR_MAX - 1);
        return -1;
    }
    memcpy(addr, s, n);
    addr[n] = '\0';
    if (dht_member_addr_normalise(addr, norm, sizeof norm, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", field, why);
        return -1;
    }
    if (strcmp(addr, norm) != 0) {
        snprintf(err, errlen, "%s: '%s' is not in normal form (it reads '%s')", field, addr,
                 norm);
        return -1;
    }
    return 0;
}

/* Canonical form is what makes two records of one configuration equal
 * byte for byte, and what placement hashes (dht_membership_describe). */
static int check_list(const char *field, const char *list, int *count, char *err,
                      size_t errlen)
{
    char q[QUOTE_MAX + 4], q2[QUOTE_MAX + 4];
    if (list == NULL || *list == '\0') {
        snprintf(err, errlen, "%s is empty", field);
        return -1;
    }
    size_t len, plen = 0;
    const char *e, *prev = NULL, *cur = list;
    int n = 0;
    while (next_entry(&cur, &e, &len)) {
        if (++n > DHT_MAX_MEMBERS) {
            snprintf(err, errlen, "%s: more than %d members", field, DHT_MAX_MEMBERS);
            return -1;
        }
        if (len == 0) {
            snprintf(err, errlen, "%s: entry %d is empty", field, n);
            return -1;
        }
        if (check_addr(field, e, len, err, errlen) != 0)
            return -1;
        if (prev != NULL) {
            int c = memcmp(prev, e, plen < len ? plen : len);
            if (c == 0)
                c = plen < len ? -1 : plen > len ? 1 : 0;
            if (c >= 0) {
                snprintf(err, errlen, "%s: '%s' %s '%s'", field, quote(e, len, q, sizeof q),
                         c == 0 ? "is listed twice, after" : "is out of order, after",
                         quote(prev, plen, q2, sizeof q2));
                return -1;
            }
        }
        prev = e;
        plen = len;
    }
    *count = n;
    return 0;
}

int dht_config_record_validate(const dht_config_record *rec, char *err, size_t errlen)
{
    int n = 0, nn = 0;
    if (rec->self == NULL) {
        snprintf(err, errlen, "self is missing");
        return -1;
    }
    if (check_addr("self", rec->self, strlen(rec->self), err, errlen) != 0)
        return -1;
    if (rec->epoch == 0) {
        snprintf(err, errlen, "epoch is 0 (epochs start at 1)");
        return -1;
    }
    if (check_list("members", rec->members, &n, err, errlen) != 0)
        return -1;
    if (rec->replicas < 1 || rec->replicas > n) {
        snprintf(err, errlen, "replicas = %d, but members lists %d address%s", rec->replicas,
                 n, n == 1 ? "" : "es");
        return -1;
    }
    if (rec->next_epoch == 0) {
        if (rec->next_replicas != 0 || rec->next_members != NULL || rec->transfer_done) {
            snprintf(err, errlen, "next_epoch = 0 (no change in progress), but %s is set",
                     rec->next_replicas != 0   ? "next_replicas"
                     : rec->next_members != NULL ? "next_members"
                                                 : "transfer_done");
            return -1;
        }
    } else {
        if (rec->epoch == UINT64_MAX || rec->next_epoch != rec->epoch + 1) {
            snprintf(err, errlen, "next_epoch = %" PRIu64 ", but epoch = %" PRIu64
                     " (a change installs the following epoch)", rec->next_epoch, rec->epoch);
            return -1;
        }
        if (check_list("next_members", rec->next_members, &nn, err, errlen) != 0)
            return -1;
        if (rec->next_replicas < 1 || rec->next_replicas > nn) {
            snprintf(err, errlen, "next_replicas = %d, but next_members lists %d address%s",
                     rec->next_replicas, nn, nn == 1 ? "" : "es");
            return -1;
        }
    }
    if (rec->removed_epoch == 0) {
        if (!list_has(rec->members, rec->self) && !list_has(rec->next_members, rec->self)) {
            snprintf(err, errlen, "self = %s is in neither members nor next_members, and "
                     "removed_epoch is 0", rec->self);
            return -1;
        }
    } else {
        if (rec->next_epoch != 0) {
            snprintf(err, errlen, "removed_epoch = %" PRIu64 " with a change in progress "
                     "(next_epoch = %" PRIu64 "): a removed node takes no part in changes",
                     rec->removed_epoch, rec->next_epoch);
            return -1;
        }
        if (rec->removed_epoch < rec->epoch) {
            snprintf(err, errlen, "removed_epoch = %" PRIu64 " is older than epoch = %" PRIu64
                     " (a removed node learns no later configuration)",
                     rec->removed_epoch, rec->epoch);
            return -1;
        }
        if (rec->removed_epoch == rec->epoch && list_has(rec->members, rec->self)) {
            snprintf(err, errlen, "removed_epoch = epoch = %" PRIu64 ", but self = %s is in "
                     "that epoch's members", rec->epoch, rec->self);
            return -1;
        }
    }
    if (rec->acceptor_len > DHT_CONFIG_ACCEPTOR_MAX ||
        (rec->acceptor_len > 0 && rec->acceptor == NULL)) {
        snprintf(err, errlen, "acceptor: %zu bytes%s (at most %d)", rec->acceptor_len,
                 rec->acceptor == NULL ? " without data" : "", DHT_CONFIG_ACCEPTOR_MAX);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ record */

void dht_config_record_free(dht_config_record *rec)
{
    if (rec == NULL)
        return;
    free(rec->self);
    free(rec->members);
    free(rec->next_members);
    free(rec->acceptor);
    memset(rec, 0, sizeof *rec);
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

int dht_config_record_copy(dht_config_record *dst, const dht_config_record *src)
{
    *dst = *src;
    dst->self = dst->members = dst->next_members = NULL;
    dst->acceptor = NULL;
    int rc = dup_str(&dst->self, src->self) | dup_str(&dst->members, src->members) |
             dup_str(&dst->next_members, src->next_members);
    if (rc == 0 && src->acceptor != NULL && src->acceptor_len > 0) {
        dst->acceptor = malloc(src->acceptor_len);
        if (dst->acceptor == NULL)
            rc = -1;
        else
            memcpy(dst->acceptor, src->acceptor, src->acceptor_len);
    }
    if (rc != 0) {
        dht_config_record_free(dst);
        return -1;
    }
    return 0;
}

char *dht_config_record_describe(const dht_config_record *rec)
{
    strbuf b = {0};
    sb_printf(&b, "epoch %" PRIu64 ", R=%d, members ", rec->epoch, rec->replicas);
    sb_str(&b, rec->members ? rec->members : "(none)");
    if (rec->next_epoch != 0) {
        sb_printf(&b, "; joining epoch %" PRIu64 ", R=%d, members ", rec->next_epoch,
                  rec->next_replicas);
        sb_str(&b, rec->next_members ? rec->next_members : "(none)");
        if (rec->transfer_done)
            sb_str(&b, ", transfer done");
    }
    if (rec->removed_epoch != 0)
        sb_printf(&b, "; removed in epoch %" PRIu64, rec->removed_epoch);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ------------------------------------------------------------ format */

static void render(const dht_config_record *rec, strbuf *b)
{
    static const char hex[] = "0123456789abcdef";
    sb_printf(b, FORMAT_TAG " %d\n", FORMAT_VERSION);
    sb_printf(b, "self = %s\n", rec->self);
    sb_printf(b, "cluster_id = %016" PRIx64 "\n", rec->cluster_id);
    sb_printf(b, "epoch = %" PRIu64 "\n", rec->epoch);
    sb_printf(b, "replicas = %d\n", rec->replicas);
    sb_str(b, "members = ");
    sb_str(b, rec->members);
    sb_printf(b, "\nnext_epoch = %" PRIu64 "\n", rec->next_epoch);
    sb_printf(b, "next_replicas = %d\n", rec->next_replicas);
    sb_str(b, "next_members = ");
    sb_str(b, rec->next_members ? rec->next_members : "");
    sb_printf(b, "\ntransfer_done = %s\n", rec->transfer_done ? "yes" : "no");
    sb_printf(b, "removed_epoch = %" PRIu64 "\n", rec->removed_epoch);
    sb_str(b, "acceptor = ");
    for (size_t i = 0; i < rec->acceptor_len; i++) {
        char two[2] = {hex[rec->acceptor[i] >> 4], hex[rec->acceptor[i] & 15]};
        sb_add(b, two, 2);
    }
    sb_str(b, "\n");
    if (!b->oom)
        sb_printf(b, CRC_KEY "%08" PRIx32 "\n", dht_crc32c(0, b->p, b->len));
}

enum {
    K_SELF,
    K_CLUSTER_ID,
    K_EPOCH,
    K_REPLICAS,
    K_MEMBERS,
    K_NEXT_EPOCH,
    K_NEXT_REPLICAS,
    K_NEXT_MEMBERS,
    K_TRANSFER_DONE,
    K_REMOVED_EPOCH,
    K_ACCEPTOR,
    K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "self",          "cluster_id",    "epoch",        "replicas",
    "members",       "next_epoch",    "next_replicas", "next_members",
    "transfer_done", "removed_epoch", "acceptor",
};

/* Canonical decimal only (no sign, no leading zeros), as render writes:
 * any other spelling means the file was not written by save. */
static const char *parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return "not a number";
    if (n > 1 && s[0] == '0')
        return "not in canonical decimal (leading zero)";
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return "not a decimal number";
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return "out of range";
        v = v * 10 + d;
    }
    *out = v;
    return NULL;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static const char *parse_field(dht_config_record *rec, int k, const char *v, size_t n)
{
    uint64_t x = 0;
    const char *why = NULL;
    switch (k) {
    case K_SELF:
    case K_MEMBERS:
    case K_NEXT_MEMBERS: {
        /* An empty next_members is how "no joint state" is written. */
        if (k == K_NEXT_MEMBERS && n == 0)
            return NULL;
        char *s = malloc(n + 1);
        if (s == NULL)
            return "out of memory";
        memcpy(s, v, n);
        s[n] = '\0';
        *(k == K_SELF ? &rec->self : k == K_MEMBERS ? &rec->members : &rec->next_members) = s;
        return NULL;
    }
    case K_CLUSTER_ID:
        if (n != 16)
            return "not 16 lowercase hex digits";
        for (size_t i = 0; i < n; i++) {
            int d = hex_digit(v[i]);
            if (d < 0)
                return "not 16 lowercase hex digits";
            x = x << 4 | (uint64_t)d;
        }
        rec->cluster_id = x;
        return NULL;
    case K_EPOCH:
    case K_NEXT_EPOCH:
    case K_REMOVED_EPOCH:
        why = parse_u64(v, n, UINT64_MAX, &x);
        if (why == NULL)
            *(k == K_EPOCH ? &rec->epoch : k == K_NEXT_EPOCH ? &rec->next_epoch
                                                              : &rec->removed_epoch) = x;
        return why;
    case K_REPLICAS:
    case K_NEXT_REPLICAS:
        why = parse_u64(v, n, DHT_MAX_MEMBERS, &x);
        if (why == NULL)
            *(k == K_REPLICAS ? &rec->replicas : &rec->next_replicas) = (int)x;
        return why;
    case K_TRANSFER_DONE:
        if (n == 3 && memcmp(v, "yes", 3) == 0)
            rec->transfer_done = true;
        else if (n == 2 && memcmp(v, "no", 2) == 0)
            rec->transfer_done = false;
        else
            return "neither yes nor no";
        return NULL;
    case K_ACCEPTOR:
        if (n % 2 != 0)
            return "odd number of hex digits";
        if (n / 2 > DHT_CONFIG_ACCEPTOR_MAX)
            return "longer than DHT_CONFIG_ACCEPTOR_MAX bytes";
        if (n == 0)
            return NULL;
        rec->acceptor = malloc(n / 2);
        if (rec->acceptor == NULL)
            return "out of memory";
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return "not lowercase hex";
            rec->acceptor[i] = (uint8_t)(hi << 4 | lo);
        }
        rec->acceptor_len = n / 2;
        return NULL;
    }
    return "unknown key";
}

/* Parses buf[0..n) (a whole file) into *rec; on failure the reason is in
 * err (without the file name) and rec may hold parts, for the caller to
 * free. */
static int parse(char *buf, size_t n, dht_config_record *rec, char *err, size_t errlen)
{
    char q[QUOTE_MAX + 4];
    if (n == 0) {
        snprintf(err, errlen, "empty file");
        return -1;
    }
    /* The version comes first and is judged before the checksum: a later
     * format may checksum differently, and "unknown version" is then the
     * useful answer, not "damaged". */
    char *nl = memchr(buf, '\n', n);
    size_t first = nl ? (size_t)(nl - buf) : n;
    size_t tag = strlen(FORMAT_TAG " ");
    uint64_t version = 0;
    if (first < tag || memcmp(buf, FORMAT_TAG " ", tag) != 0 ||
        parse_u64(buf + tag, first - tag, UINT64_MAX, &version) != NULL) {
        snprintf(err, errlen, "not a configuration record (first line '%s', expected '"
                 FORMAT_TAG " %d')", quote(buf, first, q, sizeof q), FORMAT_VERSION);
        return -1;
    }
    if (version != FORMAT_VERSION) {
        snprintf(err, errlen, "unknown format version %" PRIu64 " (this build reads %d)",
                 version, FORMAT_VERSION);
        return -1;
    }
    if (memchr(buf, '\0', n) != NULL) {
        snprintf(err, errlen, "contains a NUL byte: damaged");
        return -1;
    }
    if (buf[n - 1] != '\n') {
        snprintf(err, errlen, "does not end with a newline: truncated or damaged");
        return -1;
    }
    /* The checksum line is the last line; find where it starts. */
    size_t crc_at = n - 1;
    while (crc_at > 0 && buf[crc_at - 1] != '\n')
        crc_at--;
    size_t klen = strlen(CRC_KEY);
    if (crc_at == 0 || n - crc_at != klen + 8 + 1 || memcmp(buf + crc_at, CRC_KEY, klen) != 0) {
        snprintf(err, errlen, "the last line is not the checksum line: truncated, "
                 "damaged or followed by extra bytes");
        return -1;
    }
    uint32_t stored = 0;
    for (size_t i = 0; i < 8; i++) {
        int d = hex_digit(buf[crc_at + klen + i]);
        if (d < 0) {
            snprintf(err, errlen, "the checksum line holds '%s', not 8 lowercase hex digits",
                     quote(buf + crc_at + klen, 8, q, sizeof q));
            return -1;
        }
        stored = stored << 4 | (uint32_t)d;
    }
    uint32_t computed = dht_crc32c(0, buf, crc_at);
    if (stored != computed) {
        snprintf(err, errlen, "bad checksum (recorded %08" PRIx32 ", computed %08" PRIx32
                 "): damaged or edited", stored, computed);
        return -1;
    }
    bool seen[K_COUNT] = {false};
    size_t pos = first + 1;
    int line = 1;
    while (pos < crc_at) {
        line++;
        char *end = memchr(buf + pos, '\n', crc_at - pos);
        size_t len = (size_t)(end - (buf + pos));
        const char *s = buf + pos;
        const char *eq = NULL;
        for (size_t i = 0; i + 3 <= len; i++)
            if (memcmp(s + i, " = ", 3) == 0) {
                eq = s + i;
                break;
            }
        if (eq == NULL) {
            snprintf(err, errlen, "line %d: '%s' is not 'key = value'", line,
                     quote(s, len, q, sizeof q));
            return -1;
        }
        size_t kl = (size_t)(eq - s);
        int k = 0;
        while (k < K_COUNT && !(strlen(key_names[k]) == kl && memcmp(key_names[k], s, kl) == 0))
            k++;
        if (k == K_COUNT) {
            snprintf(err, errlen, "line %d: unknown key '%s'", line, quote(s, kl, q, sizeof q));
            return -1;
        }
        if (seen[k]) {
            snprintf(err, errlen, "line %d: %s given twice", line, key_names[k]);
            return -1;
        }
        seen[k] = true;
        const char *v = eq + 3;
        size_t vl = len - kl - 3;
        const char *why = parse_field(rec, k, v, vl);
        if (why != NULL) {
            snprintf(err, errlen, "line %d: %s = '%s': %s", line, key_names[k],
                     quote(v, vl, q, sizeof q), why);
            return -1;
        }
        pos += len + 1;
    }
    for (int k = 0; k < K_COUNT; k++)
        if (!seen[k]) {
            snprintf(err, errlen, "%s is missing", key_names[k]);
            return -1;
        }
    char why[512];
    if (dht_config_record_validate(rec, why, sizeof why) != 0) {
        snprintf(err, errlen, "invalid record: %s", why);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ files */

static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* One byte of room past the limit tells "too large" from "exactly at
     * the limit". */
    char *buf = malloc(FILE_MAX + 1);
    size_t n = 0;
    int rc = 0;
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = -1;
    }
    while (rc == 0 && n < FILE_MAX + 1) {
        ssize_t k = read(fd, buf + n, FILE_MAX + 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            rc = -1;
        } else if (k == 0) {
            break;
        } else {
            n += (size_t)k;
        }
    }
    close(fd);
    if (rc == 0 && n > FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes: not a configuration record", path,
                 FILE_MAX);
        rc = -1;
    }
    if (rc != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

int dht_config_store_load(const char *dir, dht_config_record *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *path = malloc(strlen(dir) + sizeof "/" FILE_NAME);
    if (path == NULL) {
        snprintf(err, errlen, "%s/" FILE_NAME ": out of memory", dir);
        return -1;
    }
    sprintf(path, "%s/" FILE_NAME, dir);
    char *buf = NULL;
    size_t n = 0;
    int rc = read_file(path, &buf, &n, err, errlen);
    if (rc == 0) {
        char why[600];
        if (parse(buf, n, out, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", path, why);
            dht_config_record_free(out);
            rc = -1;
        }
        free(buf);
    }
    free(path);
    scrub(err, errlen);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The sequence of wal.c's atomic_write (static there), with each step
 * named in the error: an operator reading the log needs to know whether
 * the new record may already be in place, and only a failed directory
 * fsync leaves that open. */
static int replace_file(const char *dir, const char *data, size_t n, char *err, size_t errlen)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, errlen, "%s: cannot open the data directory: %s", dir, strerror(errno));
        return -1;
    }
    const char *step = "create";
    int fd = openat(dfd, TMP_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0) {
        step = "write";
        if (write_all(fd, data, n) != 0) {
            e = errno;
        } else {
            step = "fsync";
            if (fsync(fd) != 0)
                e = errno;
        }
        if (close(fd) != 0 && e == 0) {
            step = "close";
            e = errno;
        }
    }
    if (e != 0) {
        snprintf(err, errlen, "%s/" TMP_NAME ": cannot %s: %s (the previous record is "
                 "unchanged)", dir, step, strerror(e));
        if (fd >= 0)
            unlinkat(dfd, TMP_NAME, 0);
        close(dfd);
        return -1;
    }
    if (renameat(dfd, TMP_NAME, dfd, FILE_NAME) != 0) {
        snprintf(err, errlen, "%s: cannot rename " TMP_NAME " to " FILE_NAME ": %s (the "
                 "previous record is unchanged)", dir, strerror(errno));
        unlinkat(dfd, TMP_NAME, 0);
        close(dfd);
        return -1;
    }
    if (fsync(dfd) != 0) {
        snprintf(err, errlen, "%s: cannot fsync the directory: %s (" FILE_NAME " holds the "
                 "new record, which may not survive a crash)", dir, strerror(errno));
        close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
}

int dht_config_store_save(const char *dir, const dht_config_record *rec, char *err,
                          size_t errlen)
{
    char why[600];
    if (dht_config_record_validate(rec, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s/" FILE_NAME ": refusing to save an invalid record: %s", dir,
                 why);
        scrub(err, errlen);
        return -1;
    }
    strbuf b = {0};
    render(rec, &b);
    int rc = -1;
    if (b.oom)
        snprintf(err, errlen, "%s/" FILE_NAME ": out of memory", dir);
    else
        rc = replace_file(dir, b.p, b.len, err, errlen);
    free(b.p);
    scrub(err, errlen);
    return rc;
}
