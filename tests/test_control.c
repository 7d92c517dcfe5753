/* Control messages (protocol/control.h): round trips of every type at
 * typical and extreme values, the encoder's and the decoder's refusals
 * rule by rule, every truncation of valid encodings, single-byte
 * mutations and a seeded fuzz loop.
 *
 * The property behind the last three: a decoder given hostile bytes
 * either refuses them or returns a message that re-encodes to exactly
 * those bytes (one encoding per message), and never reads outside the
 * buffer.  Every buffer handed to the decoder is a malloc'ed block of
 * exactly its length, so that under ASan a read one byte past the end is
 * reported rather than landing in the rest of a larger buffer. */
#include "protocol/control.h"

#include <stdint.h>
#include <stdio.h>

#include "base/le.h"
#include "base/util.h"
#include "test.h"

/* ---- Helpers ---- */

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool view_eq(const dht_control_view *a, const dht_control_view *b)
{
    return a->epoch == b->epoch && same_bytes(a->cur, a->cur_len, b->cur, b->cur_len) &&
           same_bytes(a->next, a->next_len, b->next, b->next_len) &&
           a->cluster_id == b->cluster_id && a->transfer_done == b->transfer_done &&
           a->removed == b->removed;
}

/* Equal in every field that the type carries, pointers by content. */
static bool msg_eq(const dht_control_msg *a, const dht_control_msg *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case DHT_CTL_AGREE:
        return a->agree.type == b->agree.type && a->agree.epoch == b->agree.epoch &&
               a->agree.ballot.round == b->agree.ballot.round &&
               a->agree.ballot.id == b->agree.ballot.id &&
               a->agree.accepted.round == b->agree.accepted.round &&
               a->agree.accepted.id == b->agree.accepted.id &&
               same_bytes(a->agree.value, a->agree.len, b->agree.value, b->agree.len);
    case DHT_CTL_QUERY:
        return true;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL:
        return view_eq(&a->view, &b->view);
    case DHT_CTL_CHANGE:
        return a->op == b->op && same_bytes(a->addr, a->addr_len, b->addr, b->addr_len);
    case DHT_CTL_CHANGED:
        return a->ok == b->ok && same_bytes(a->text, a->text_len, b->text, b->text_len) &&
               view_eq(&a->view, &b->view);
    default:
        return false;
    }
}

static bool inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
    const uint8_t *q = p;
    return n == 0 || (q >= buf && q + n <= buf + len);
}

static bool view_zero(const dht_control_view *v)
{
    return v->epoch == 0 && v->cur == NULL && v->cur_len == 0 && v->next == NULL &&
           v->next_len == 0 && v->cluster_id == 0 && !v->transfer_done && !v->removed;
}

/* What a successful decode promises beyond equality: pointers into buf,
 * the documented empty conventions, and zeros in the fields the type
 * does not carry. */
static void check_decoded_shape(const dht_control_msg *d, const uint8_t *buf, size_t len)
{
    bool has_agree = d->type == DHT_CTL_AGREE;
    bool has_view = d->type == DHT_CTL_VIEW || d->type == DHT_CTL_INSTALL ||
                    d->type == DHT_CTL_CHANGED;
    bool has_change = d->type == DHT_CTL_CHANGE;
    bool has_changed = d->type == DHT_CTL_CHANGED;
    if (has_agree) {
        CHECK(inside(d->agree.value, d->agree.len, buf, len));
        CHECK((d->agree.value == NULL) == (d->agree.len == 0));
    } else {
        CHECK(d->agree.type == 0 && d->agree.epoch == 0 && d->agree.value == NULL &&
              d->agree.len == 0 && d->agree.ballot.round == 0 && d->agree.ballot.id == 0 &&
              d->agree.accepted.round == 0 && d->agree.accepted.id == 0);
    }
    if (has_view) {
        CHECK(inside(d->view.cur, d->view.cur_len, buf, len));
        CHECK(inside(d->view.next, d->view.next_len, buf, len));
        CHECK(d->view.cur != NULL);
        CHECK(d->view.cur_len > 0 || d->view.cur[0] == '\0');
        CHECK((d->view.next == NULL) == (d->view.next_len == 0));
    } else {
        CHECK(view_zero(&d->view));
    }
    if (has_change) {
        CHECK(inside(d->addr, d->addr_len, buf, len));
    } else {
        CHECK(d->op == 0 && d->addr == NULL && d->addr_len == 0);
    }
    if (has_changed) {
        CHECK(inside(d->text, d->text_len, buf, len));
        CHECK(d->text != NULL);
        CHECK(d->text_len > 0 || d->text[0] == '\0');
    } else {
        CHECK(!d->ok && d->text == NULL && d->text_len == 0);
    }
}

static uint8_t *copy_exact(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n > 0 ? n : 1);
    CHECK(c != NULL);
    if (n > 0)
        memcpy(c, p, n);
    return c;
}

/* The hostile-input property for one buffer (which must be an exact-size
 * block): refused with a one-line reason, or accepted and re-encoded to
 * the same bytes.  Returns whether it was accepted. */
static bool decode_property(const uint8_t *buf, size_t len)
{
    dht_control_msg d;
    memset(&d, 0xa5, sizeof d); /* untouched on refusal: we look below */
    dht_control_msg before = d;
    char err[256] = "";
    if (dht_control_decode(buf, len, &d, err, sizeof err) != 0) {
        CHECK(err[0] != '\0');
        CHECK(strchr(err, '\n') == NULL);
        CHECK(memcmp(&d, &before, sizeof d) == 0);
        return false;
    }
    check_decoded_shape(&d, buf, len);
    uint8_t *re = NULL;
    size_t relen = 0;
    CHECK(dht_control_encode(&d, &re, &relen) == 0);
    CHECK(same_bytes(re, relen, buf, len));
    free(re);
    return true;
}

static bool decode_copy_property(const uint8_t *p, size_t n)
{
    uint8_t *c = copy_exact(p, n);
    bool ok = decode_property(c, n);
    free(c);
    return ok;
}

/* Encodes m (which must be valid), decodes it back from an exact-size
 * copy and checks every field; the encoding is returned (caller frees). */
static uint8_t *roundtrip(const dht_control_msg *m, size_t *lenp)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(dht_control_encode(m, &buf, &len) == 0);
    CHECK(buf != NULL && len >= 2);
    CHECK(len <= DHT_CONTROL_ENCODED_MAX);
    dht_control_msg d;
    char err[256] = "";
    if (dht_control_decode(buf, len, &d, err, sizeof err) != 0) {
        fprintf(stderr, "decode of a valid %s refused: %s\n", dht_control_type_name(m->type),
                err);
        CHECK(0);
    }
    CHECK(msg_eq(m, &d));
    check_decoded_shape(&d, buf, len);
    CHECK(decode_property(buf, len));
    *lenp = len;
    return buf;
}

static void roundtrip_free(const dht_control_msg *m)
{
    size_t len;
    free(roundtrip(m, &len));
}

static bool encodes(const dht_control_msg *m)
{
    uint8_t *buf = (uint8_t *)"untouched";
    size_t len = 12345;
    if (dht_control_encode(m, &buf, &len) != 0) {
        CHECK(len == 12345 && memcmp(buf, "untouched", 9) == 0);
        return false;
    }
    free(buf);
    return true;
}

/* Printable filler, including bytes above 0x7f (UTF-8 is allowed). */
static char big_cur[DHT_CONTROL_TEXT_MAX + 1];
static char big_next[DHT_CONTROL_TEXT_MAX + 1];
static char big_text[DHT_CONTROL_CHANGED_TEXT_MAX + 1];
static char big_addr[DHT_CONTROL_ADDR_MAX + 1];
static uint8_t big_value[DHT_AGREE_VALUE_MAX + 1];

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c = 0x20 + (unsigned)((i * 7 + seed) % 0xe0);
        p[i] = (char)(c == 0x7f ? 'x' : c);
    }
}

static void init_big(void)
{
    fill(big_cur, sizeof big_cur, 1);
    fill(big_next, sizeof big_next, 2);
    fill(big_text, sizeof big_text, 3);
    fill(big_addr, sizeof big_addr, 4);
    for (size_t i = 0; i < sizeof big_value; i++)
        big_value[i] = (uint8_t)(i * 131 + 7); /* every byte, NUL included */
}

static const char CUR[] = "replicas=3 partitions=8 members=a:1,b:2,c:3";
static const char NEXT[] = "replicas=3 partitions=8 members=a:1,b:2,c:3,d:4";

static dht_control_view view_of(uint64_t epoch, const char *cur, size_t cur_len,
                                const char *next, size_t next_len)
{
    dht_control_view v = {0};
    v.epoch = epoch;
    v.cur = cur;
    v.cur_len = cur_len;
    v.next = next;
    v.next_len = next_len;
    return v;
}

static dht_control_msg msg_view(dht_control_type t, dht_control_view v)
{
    dht_control_msg m = {0};
    m.type = t;
    m.view = v;
    return m;
}

/* A corpus of valid messages, typical and extreme, for the truncation and
 * mutation tests.  big: include those at their maximal lengths. */
static int corpus(dht_control_msg *out, int cap, bool big)
{
    int n = 0;
    dht_control_msg m;
#define ADD(x)                   \
    do {                         \
        CHECK(n < cap);          \
        out[n++] = (x);          \
    } while (0)
    m = (dht_control_msg){.type = DHT_CTL_QUERY};
    ADD(m);
    m = (dht_control_msg){.type = DHT_CTL_AGREE};
    m.agree = (dht_agree_msg){DHT_AGREE_PREPARE, 5, {3, 77}, {0, 0}, NULL, 0};
    ADD(m);
    m.agree = (dht_agree_msg){DHT_AGREE_PROMISE, 5, {3, 77}, {2, 9}, (const uint8_t *)CUR,
                              strlen(CUR)};
    ADD(m);
    m.agree = (dht_agree_msg){DHT_AGREE_STALE, UINT64_MAX, {UINT64_MAX, UINT64_MAX},
                              {UINT64_MAX, 1}, (const uint8_t *)"\0\1\2", 3};
    ADD(m);
    ADD(msg_view(DHT_CTL_VIEW, view_of(0, NULL, 0, NULL, 0)));
    m = msg_view(DHT_CTL_VIEW, view_of(7, CUR, strlen(CUR), NEXT, strlen(NEXT)));
    m.view.cluster_id = 0x0123456789abcdefULL;
    m.view.transfer_done = true;
    ADD(m);
    m = msg_view(DHT_CTL_INSTALL, view_of(1, "r", 1, NULL, 0));
    m.view.removed = true;
    ADD(m);
    m = (dht_control_msg){.type = DHT_CTL_CHANGE, .op = DHT_CHANGE_ADD, .addr = "d:4",
                          .addr_len = 3};
    ADD(m);
    m.op = DHT_CHANGE_REMOVE;
    m.addr = "h";
    m.addr_len = 1;
    ADD(m);
    m = msg_view(DHT_CTL_CHANGED, view_of(2, CUR, strlen(CUR), NULL, 0));
    m.ok = true;
    m.text = "added d:4";
    m.text_len = 9;
    ADD(m);
    m = msg_view(DHT_CTL_CHANGED, view_of(0, NULL, 0, NULL, 0));
    ADD(m);
    if (big) {
        m = (dht_control_msg){.type = DHT_CTL_AGREE};
        m.agree = (dht_agree_msg){DHT_AGREE_ACCEPT, 9, {1, 2}, {0, 0}, big_value,
                                  DHT_AGREE_VALUE_MAX};
        ADD(m);
        m = msg_view(DHT_CTL_CHANGED, view_of(UINT64_MAX - 1, big_cur, DHT_CONTROL_TEXT_MAX,
                                              big_next, DHT_CONTROL_TEXT_MAX));
        m.view.cluster_id = UINT64_MAX;
        m.text = big_text;
        m.text_len = DHT_CONTROL_CHANGED_TEXT_MAX;
        ADD(m);
        m = (dht_control_msg){.type = DHT_CTL_CHANGE, .op = DHT_CHANGE_REMOVE,
                              .addr = big_addr, .addr_len = DHT_CONTROL_ADDR_MAX};
        ADD(m);
    }
#undef ADD
    return n;
}

/* ---- Round trips ---- */

static void test_roundtrip_agree(void)
{
    init_big();
    const uint64_t epochs[] = {0, 1, 42, UINT64_MAX};
    const dht_agree_ballot ballots[] = {{0, 0}, {1, 1}, {UINT64_MAX, UINT64_MAX}, {7, UINT64_MAX}};
    const size_t lens[] = {0, 1, 3, 1000, DHT_AGREE_VALUE_MAX};
    for (int t = DHT_AGREE_PREPARE; t <= DHT_AGREE_BEHIND; t++)
        for (int e = 0; e < 4; e++)
            for (int b = 0; b < 4; b++)
                for (int l = 0; l < 5; l++) {
                    dht_control_msg m = {.type = DHT_CTL_AGREE};
                    m.agree.type = (dht_agree_type)t;
                    m.agree.epoch = epochs[e];
                    m.agree.ballot = ballots[b];
                    m.agree.accepted = ballots[(b + 1) % 4];
                    m.agree.value = lens[l] ? big_value : NULL;
                    m.agree.len = lens[l];
                    size_t len;
                    uint8_t *buf = roundtrip(&m, &len);
                    CHECK_EQ(len, 2 + 1 + 40 + 4 + lens[l]);
                    free(buf);
                }
    /* A non-NULL pointer with length 0 is an empty value, as NULL is. */
    dht_control_msg m = {.type = DHT_CTL_AGREE};
    m.agree = (dht_agree_msg){DHT_AGREE_NACK, 1, {2, 3}, {0, 0}, big_value, 0};
    roundtrip_free(&m);
}

static void test_roundtrip_query(void)
{
    dht_control_msg m = {.type = DHT_CTL_QUERY};
    size_t len;
    uint8_t *buf = roundtrip(&m, &len);
    CHECK_EQ(len, 2);
    CHECK(buf[0] == 1 && buf[1] == DHT_CTL_QUERY);
    free(buf);
    /* Fields a QUERY does not carry are ignored, not sent. */
    m.view.epoch = 9;
    m.addr = "x";
    m.addr_len = 1;
    m.op = 77;
    buf = roundtrip(&m, &len);
    CHECK_EQ(len, 2);
    free(buf);
}

static void test_roundtrip_views(void)
{
    init_big();
    const dht_control_type types[] = {DHT_CTL_VIEW, DHT_CTL_INSTALL, DHT_CTL_CHANGED};
    dht_control_view vs[8];
    int nv = 0;
    vs[nv++] = view_of(0, NULL, 0, NULL, 0);
    vs[nv++] = view_of(0, "ignored", 0, "ignored", 0); /* lengths rule */
    vs[nv++] = view_of(1, CUR, strlen(CUR), NULL, 0);
    vs[nv++] = view_of(5, CUR, strlen(CUR), NEXT, strlen(NEXT));
    vs[nv++] = view_of(UINT64_MAX, CUR, strlen(CUR), NULL, 0);
    vs[nv++] = view_of(UINT64_MAX - 1, "a", 1, "b", 1);
    vs[nv++] = view_of(3, big_cur, DHT_CONTROL_TEXT_MAX, big_next, DHT_CONTROL_TEXT_MAX);
    vs[nv++] = view_of(3, big_cur, DHT_CONTROL_TEXT_MAX, NULL, 0);
    const uint64_t cids[] = {0, 1, UINT64_MAX};
    for (int t = 0; t < 3; t++)
        for (int v = 0; v < nv; v++)
            for (int c = 0; c < 3; c++)
                for (int flags = 0; flags < 4; flags++) {
                    dht_control_msg m = msg_view(types[t], vs[v]);
                    m.view.cluster_id = cids[c];
                    m.view.transfer_done = flags & 1;
                    m.view.removed = (flags & 2) != 0;
                    if (types[t] == DHT_CTL_CHANGED) {
                        m.ok = flags & 1;
                        m.text = v % 3 == 0 ? NULL : v % 3 == 1 ? "done" : big_text;
                        m.text_len = v % 3 == 0 ? 0 : v % 3 == 1 ? 4
                                                                 : DHT_CONTROL_CHANGED_TEXT_MAX;
                    }
                    roundtrip_free(&m);
                }
}

static void test_roundtrip_change(void)
{
    init_big();
    const dht_change_op ops[] = {DHT_CHANGE_ADD, DHT_CHANGE_REMOVE};
    const size_t lens[] = {1, 14, 254, DHT_CONTROL_ADDR_MAX};
    for (int o = 0; o < 2; o++)
        for (int l = 0; l < 4; l++) {
            dht_control_msg m = {.type = DHT_CTL_CHANGE, .op = ops[o]};
            m.addr = l == 1 ? "10.0.0.1:50051" : big_addr;
            m.addr_len = lens[l];
            size_t len;
            uint8_t *buf = roundtrip(&m, &len);
            CHECK_EQ(len, 2 + 1 + 4 + lens[l]);
            free(buf);
        }
}

/* The exact bytes of one message, so that the format is pinned by a test
 * and not only by agreement between encoder and decoder. */
static void test_wire_bytes(void)
{
    dht_control_msg m = {.type = DHT_CTL_CHANGE, .op = DHT_CHANGE_REMOVE, .addr = "h:1",
                         .addr_len = 3};
    const uint8_t want[] = {1, DHT_CTL_CHANGE, DHT_CHANGE_REMOVE, 3, 0, 0, 0, 'h', ':', '1'};
    uint8_t *buf;
    size_t len;
    CHECK(dht_control_encode(&m, &buf, &len) == 0);
    CHECK(same_bytes(buf, len, want, sizeof want));
    free(buf);

    m = msg_view(DHT_CTL_VIEW, view_of(0x0102, "c", 1, "n", 1));
    m.view.cluster_id = 0xff;
    m.view.removed = true;
    const uint8_t want2[] = {1, DHT_CTL_VIEW, 2, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'c',
                             1, 0, 0, 0, 'n', 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK(dht_control_encode(&m, &buf, &len) == 0);
    CHECK(same_bytes(buf, len, want2, sizeof want2));
    free(buf);
}

/* Seeded random valid messages: the generator covers every type and
 * draws lengths mostly small, sometimes at the limit. */
typedef struct {
    char cur[DHT_CONTROL_TEXT_MAX], next[DHT_CONTROL_TEXT_MAX];
    char text[DHT_CONTROL_CHANGED_TEXT_MAX], addr[DHT_CONTROL_ADDR_MAX];
    uint8_t value[DHT_AGREE_VALUE_MAX];
} gen_store;

static size_t rand_len(dht_rng *r, size_t min, size_t max, bool small)
{
    uint64_t k = dht_rng_below(r, 100);
    if (k < 3)
        return min;
    if (k < 6 && !small)
        return max;
    size_t top = max < min + 40 ? max : min + 40;
    return min + (size_t)dht_rng_below(r, top - min + 1);
}

static void rand_text(dht_rng *r, char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c = 0x20 + (unsigned)dht_rng_below(r, 0xe0);
        p[i] = (char)(c == 0x7f ? '~' : c);
    }
}

static uint64_t rand_u64(dht_rng *r)
{
    switch (dht_rng_below(r, 5)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return UINT64_MAX;
    case 3: return dht_rng_below(r, 1000);
    default: return dht_rng_next(r);
    }
}

static void rand_view(dht_rng *r, gen_store *s, dht_control_view *v, bool small)
{
    v->epoch = rand_u64(r);
    v->cur_len = v->epoch == 0 ? 0 : rand_len(r, 1, DHT_CONTROL_TEXT_MAX, small);
    rand_text(r, s->cur, v->cur_len);
    v->cur = v->cur_len || dht_rng_below(r, 2) ? s->cur : NULL;
    v->next_len = v->epoch == 0 || v->epoch == UINT64_MAX || dht_rng_below(r, 2)
                      ? 0
                      : rand_len(r, 1, DHT_CONTROL_TEXT_MAX, small);
    rand_text(r, s->next, v->next_len);
    v->next = v->next_len ? s->next : NULL;
    v->cluster_id = rand_u64(r);
    v->transfer_done = dht_rng_below(r, 2);
    v->removed = dht_rng_below(r, 2);
}

static dht_control_msg rand_msg(dht_rng *r, gen_store *s, bool small)
{
    dht_control_msg m = {0};
    m.type = (dht_control_type)(DHT_CTL_AGREE + dht_rng_below(r, DHT_CTL_TYPE_MAX - 1));
    switch (m.type) {
    case DHT_CTL_AGREE:
        m.agree.type = (dht_agree_type)(DHT_AGREE_PREPARE + dht_rng_below(r, 8));
        m.agree.epoch = rand_u64(r);
        m.agree.ballot = (dht_agree_ballot){rand_u64(r), rand_u64(r)};
        m.agree.accepted = (dht_agree_ballot){rand_u64(r), rand_u64(r)};
        m.agree.len = rand_len(r, 0, DHT_AGREE_VALUE_MAX, small);
        for (size_t i = 0; i < m.agree.len; i++)
            s->value[i] = (uint8_t)dht_rng_next(r);
        m.agree.value = m.agree.len ? s->value : NULL;
        break;
    case DHT_CTL_QUERY:
        break;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL:
        rand_view(r, s, &m.view, small);
        break;
    case DHT_CTL_CHANGE:
        m.op = (dht_change_op)(DHT_CHANGE_ADD + dht_rng_below(r, 2));
        m.addr_len = rand_len(r, 1, DHT_CONTROL_ADDR_MAX, small);
        rand_text(r, s->addr, m.addr_len);
        m.addr = s->addr;
        break;
    case DHT_CTL_CHANGED:
        m.ok = dht_rng_below(r, 2);
        m.text_len = rand_len(r, 0, DHT_CONTROL_CHANGED_TEXT_MAX, small);
        rand_text(r, s->text, m.text_len);
        m.text = s->text;
        rand_view(r, s, &m.view, small);
        break;
    default:
        break;
    }
    return m;
}

static void test_roundtrip_random(void)
{
    static gen_store s;
    dht_rng r;
    dht_rng_seed(&r, 11);
    for (int i = 0; i < 3000; i++) {
        dht_control_msg m = rand_msg(&r, &s, false);
        roundtrip_free(&m);
    }
}

/* ---- The encoder's refusals ---- */

static void test_encode_refuses(void)
{
    init_big();
    uint8_t *buf;
    size_t len;
    dht_control_msg ok = {.type = DHT_CTL_QUERY};
    CHECK(dht_control_encode(NULL, &buf, &len) != 0);
    CHECK(dht_control_encode(&ok, NULL, &len) != 0);
    CHECK(dht_control_encode(&ok, &buf, NULL) != 0);

    dht_control_msg m = {0};
    CHECK(!encodes(&m)); /* type 0 */
    m.type = DHT_CTL_TYPE_MAX;
    CHECK(!encodes(&m));
    m.type = (dht_control_type)(256 + DHT_CTL_QUERY); /* would truncate to QUERY */
    CHECK(!encodes(&m));
    m.type = (dht_control_type)-1;
    CHECK(!encodes(&m));

    /* AGREE */
    dht_control_msg a = {.type = DHT_CTL_AGREE};
    a.agree = (dht_agree_msg){DHT_AGREE_PREPARE, 1, {1, 1}, {0, 0}, NULL, 0};
    CHECK(encodes(&a));
    a.agree.type = 0;
    CHECK(!encodes(&a));
    a.agree.type = DHT_AGREE_BEHIND + 1;
    CHECK(!encodes(&a));
    a.agree.type = (dht_agree_type)(256 + DHT_AGREE_PREPARE);
    CHECK(!encodes(&a));
    a.agree.type = DHT_AGREE_ACCEPT;
    a.agree.value = big_value;
    a.agree.len = DHT_AGREE_VALUE_MAX;
    CHECK(encodes(&a));
    a.agree.len = DHT_AGREE_VALUE_MAX + 1;
    CHECK(!encodes(&a));
    a.agree.len = SIZE_MAX;
    CHECK(!encodes(&a));
    a.agree.value = NULL;
    a.agree.len = 1;
    CHECK(!encodes(&a));

    /* Views, in each type that carries one. */
    const dht_control_type vt[] = {DHT_CTL_VIEW, DHT_CTL_INSTALL, DHT_CTL_CHANGED};
    for (int t = 0; t < 3; t++) {
        dht_control_msg v = msg_view(vt[t], view_of(1, CUR, strlen(CUR), NEXT, strlen(NEXT)));
        CHECK(encodes(&v));
        dht_control_msg b;
#define REFUSED(stmt)    \
    do {                 \
        b = v;           \
        stmt;            \
        CHECK(!encodes(&b)); \
    } while (0)
#define ACCEPTED(stmt)   \
    do {                 \
        b = v;           \
        stmt;            \
        CHECK(encodes(&b)); \
    } while (0)
        ACCEPTED((b.view.cur = big_cur, b.view.cur_len = DHT_CONTROL_TEXT_MAX));
        REFUSED((b.view.cur = big_cur, b.view.cur_len = DHT_CONTROL_TEXT_MAX + 1));
        ACCEPTED((b.view.next = big_next, b.view.next_len = DHT_CONTROL_TEXT_MAX));
        REFUSED((b.view.next = big_next, b.view.next_len = DHT_CONTROL_TEXT_MAX + 1));
        REFUSED((b.view.cur_len = SIZE_MAX));
        REFUSED((b.view.cur = NULL));
        REFUSED((b.view.next = NULL));
        /* epoch 0: no configuration at all */
        REFUSED((b.view.epoch = 0, b.view.next = NULL, b.view.next_len = 0));
        REFUSED((b.view.epoch = 0, b.view.cur_len = 0));
        ACCEPTED((b.view.epoch = 0, b.view.cur_len = 0, b.view.next_len = 0));
        /* epoch >= 1: a configuration */
        REFUSED((b.view.cur_len = 0));
        REFUSED((b.view.cur_len = 0, b.view.next_len = 0));
        REFUSED((b.view.epoch = 99, b.view.cur = NULL, b.view.cur_len = 0));
        /* no epoch+1 after UINT64_MAX */
        REFUSED((b.view.epoch = UINT64_MAX));
        ACCEPTED((b.view.epoch = UINT64_MAX, b.view.next_len = 0));
        ACCEPTED((b.view.epoch = UINT64_MAX - 1));
        /* texts: no NUL, no control bytes */
        REFUSED((b.view.cur = "a\0b", b.view.cur_len = 3));
        REFUSED((b.view.cur = "a\nb", b.view.cur_len = 3));
        REFUSED((b.view.cur = "\x1f", b.view.cur_len = 1));
        REFUSED((b.view.cur = "ab\x7f", b.view.cur_len = 3));
        REFUSED((b.view.next = "x\ty", b.view.next_len = 3));
        REFUSED((b.view.next = "\x1b[2J", b.view.next_len = 4));
        ACCEPTED((b.view.cur = " ~\x80\xff", b.view.cur_len = 4));
        if (vt[t] == DHT_CTL_CHANGED) {
            ACCEPTED((b.text = big_text, b.text_len = DHT_CONTROL_CHANGED_TEXT_MAX));
            REFUSED((b.text = big_text, b.text_len = DHT_CONTROL_CHANGED_TEXT_MAX + 1));
            REFUSED((b.text = NULL, b.text_len = 1));
            REFUSED((b.text = "oops\r\n", b.text_len = 6));
            REFUSED((b.text = "\0", b.text_len = 1));
            ACCEPTED((b.text = NULL, b.text_len = 0));
        }
#undef REFUSED
#undef ACCEPTED
    }

    /* CHANGE */
    dht_control_msg c = {.type = DHT_CTL_CHANGE, .op = DHT_CHANGE_ADD, .addr = "a:1",
                         .addr_len = 3};
    CHECK(encodes(&c));
    c.op = 0;
    CHECK(!encodes(&c));
    c.op = DHT_CHANGE_REMOVE + 1;
    CHECK(!encodes(&c));
    c.op = (dht_change_op)(256 + DHT_CHANGE_ADD);
    CHECK(!encodes(&c));
    c.op = DHT_CHANGE_REMOVE;
    c.addr_len = 0;
    CHECK(!encodes(&c));
    c.addr = NULL;
    c.addr_len = 3;
    CHECK(!encodes(&c));
    c.addr = big_addr;
    c.addr_len = DHT_CONTROL_ADDR_MAX;
    CHECK(encodes(&c));
    c.addr_len = DHT_CONTROL_ADDR_MAX + 1;
    CHECK(!encodes(&c));
    c.addr = "a\0b";
    c.addr_len = 3;
    CHECK(!encodes(&c));
    c.addr = "a:1\n";
    c.addr_len = 4;
    CHECK(!encodes(&c));
}

/* ---- The decoder's refusals, rule by rule, on hand-built bytes ---- */

typedef struct {
    uint8_t b[2 * DHT_CONTROL_TEXT_MAX + 8192];
    size_t n;
} wbuf;

static void w8(wbuf *w, uint8_t v)
{
    CHECK(w->n + 1 <= sizeof w->b);
    w->b[w->n++] = v;
}

static void w32(wbuf *w, uint32_t v)
{
    CHECK(w->n + 4 <= sizeof w->b);
    dht_le_put32(w->b + w->n, v);
    w->n += 4;
}

static void w64(wbuf *w, uint64_t v)
{
    CHECK(w->n + 8 <= sizeof w->b);
    dht_le_put64(w->b + w->n, v);
    w->n += 8;
}

static void wraw(wbuf *w, const void *p, size_t n)
{
    CHECK(w->n + n <= sizeof w->b);
    if (n > 0) /* p may be NULL then, which memcpy may not be given */
        memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void wstr(wbuf *w, const void *p, size_t n)
{
    w32(w, (uint32_t)n);
    wraw(w, p, n);
}

typedef struct {
    uint64_t epoch;
    const char *cur;
    size_t cur_len;
    const char *next;
    size_t next_len;
    uint64_t cid;
    uint8_t td, rm;
} raw_view;

static void wview(wbuf *w, const raw_view *v)
{
    w64(w, v->epoch);
    wstr(w, v->cur, v->cur_len);
    wstr(w, v->next, v->next_len);
    w64(w, v->cid);
    w8(w, v->td);
    w8(w, v->rm);
}

static bool decodes(const wbuf *w)
{
    return decode_copy_property(w->b, w->n);
}

static void start(wbuf *w, uint8_t version, uint8_t type)
{
    w->n = 0;
    w8(w, version);
    w8(w, type);
}

static void agree_bytes(wbuf *w, uint8_t atype, const void *v, size_t vlen)
{
    start(w, 1, DHT_CTL_AGREE);
    w8(w, atype);
    for (int i = 0; i < 5; i++)
        w64(w, (uint64_t)i + 1);
    wstr(w, v, vlen);
}

static void test_decode_refuses_rules(void)
{
    init_big();
    static wbuf w;
    dht_control_msg d;
    char err[256];

    /* framing */
    CHECK(dht_control_decode(NULL, 0, &d, err, sizeof err) != 0);
    CHECK(dht_control_decode((const uint8_t *)"\1\2", 2, NULL, err, sizeof err) != 0);
    CHECK(dht_control_decode((const uint8_t *)"\1\2", 2, &d, NULL, 0) == 0);
    CHECK(dht_control_decode((const uint8_t *)"\1", 1, &d, NULL, 0) != 0);
    CHECK(dht_control_decode((const uint8_t *)"\1\2", 2, &d, err, 1) == 0);
    CHECK(dht_control_decode((const uint8_t *)"\2\2", 2, &d, err, 1) != 0 && err[0] == '\0');
    start(&w, 1, DHT_CTL_QUERY);
    CHECK(decodes(&w));
    for (int v = 0; v < 256; v++) {
        start(&w, (uint8_t)v, DHT_CTL_QUERY);
        CHECK(decodes(&w) == (v == 1));
    }
    /* Unknown types are refused; every known type but QUERY has fields,
     * so its two bytes alone are a truncation. */
    for (int t = 0; t < 256; t++) {
        start(&w, 1, (uint8_t)t);
        CHECK(decodes(&w) == (t == DHT_CTL_QUERY));
    }
    start(&w, 1, DHT_CTL_QUERY);
    w8(&w, 0); /* trailing */
    CHECK(!decodes(&w));

    /* AGREE */
    agree_bytes(&w, DHT_AGREE_PREPARE, NULL, 0);
    CHECK(decodes(&w));
    w8(&w, 0);
    CHECK(!decodes(&w)); /* trailing */
    for (int t = 0; t < 256; t++) {
        agree_bytes(&w, (uint8_t)t, "v", 1);
        CHECK(decodes(&w) == (t >= DHT_AGREE_PREPARE && t <= DHT_AGREE_BEHIND));
    }
    agree_bytes(&w, DHT_AGREE_ACCEPT, big_value, DHT_AGREE_VALUE_MAX);
    CHECK(decodes(&w));
    agree_bytes(&w, DHT_AGREE_ACCEPT, big_value, DHT_AGREE_VALUE_MAX + 1);
    CHECK(!decodes(&w));
    agree_bytes(&w, DHT_AGREE_ACCEPT, NULL, 0);
    w.n -= 4;
    w32(&w, UINT32_MAX); /* a huge length with nothing behind it */
    CHECK(!decodes(&w));
    /* judged against the field's limit before the buffer is looked at */
    CHECK(dht_control_decode(w.b, w.n, &d, err, sizeof err) != 0);
    CHECK(strstr(err, "limit") != NULL);
    w.n -= 4;
    w32(&w, 5); /* a length beyond the buffer */
    wraw(&w, "abcd", 4);
    CHECK(!decodes(&w));
    w8(&w, 'e');
    CHECK(decodes(&w));

    /* views, in each type that carries one */
    const uint8_t vt[] = {DHT_CTL_VIEW, DHT_CTL_INSTALL, DHT_CTL_CHANGED};
    for (int t = 0; t < 3; t++) {
        raw_view good = {7, CUR, strlen(CUR), NEXT, strlen(NEXT), 5, 1, 0};
        raw_view v;
#define VIEW_BYTES(tail)                       \
    do {                                       \
        start(&w, 1, vt[t]);                   \
        if (vt[t] == DHT_CTL_CHANGED) {        \
            w8(&w, 1);                         \
            wstr(&w, "done", 4);               \
        }                                      \
        wview(&w, &v);                         \
        for (int k = 0; k < (tail); k++)       \
            w8(&w, 0);                         \
    } while (0)
#define EXPECT(stmt, want)            \
    do {                              \
        v = good;                     \
        stmt;                         \
        VIEW_BYTES(0);                \
        CHECK(decodes(&w) == (want)); \
    } while (0)
        EXPECT((void)0, true);
        v = good;
        VIEW_BYTES(1);
        CHECK(!decodes(&w)); /* trailing */
        EXPECT((v.cur = big_cur, v.cur_len = DHT_CONTROL_TEXT_MAX), true);
        EXPECT((v.cur = big_cur, v.cur_len = DHT_CONTROL_TEXT_MAX + 1), false);
        EXPECT((v.next = big_next, v.next_len = DHT_CONTROL_TEXT_MAX), true);
        EXPECT((v.next = big_next, v.next_len = DHT_CONTROL_TEXT_MAX + 1), false);
        EXPECT((v.epoch = 0), false);
        EXPECT((v.epoch = 0, v.next_len = 0), false);
        EXPECT((v.epoch = 0, v.cur_len = 0), false);
        EXPECT((v.epoch = 0, v.cur_len = 0, v.next_len = 0), true);
        EXPECT((v.cur_len = 0), false);
        EXPECT((v.cur_len = 0, v.next_len = 0), false);
        EXPECT((v.epoch = UINT64_MAX), false);
        EXPECT((v.epoch = UINT64_MAX, v.next_len = 0), true);
        EXPECT((v.epoch = UINT64_MAX - 1), true);
        EXPECT((v.cur = "a\0b", v.cur_len = 3), false);
        EXPECT((v.cur = "\x1f", v.cur_len = 1), false);
        EXPECT((v.cur = "\x7f", v.cur_len = 1), false);
        EXPECT((v.next = "x\ny", v.next_len = 3), false);
        EXPECT((v.next = "x\0", v.next_len = 2), false);
        EXPECT((v.cur = " ~\x80\xff", v.cur_len = 4), true);
        for (int b = 0; b < 256; b++) {
            EXPECT((v.td = (uint8_t)b), b <= 1);
            EXPECT((v.rm = (uint8_t)b), b <= 1);
        }
        /* a length field claiming more than is there */
        v = good;
        VIEW_BYTES(0);
        dht_le_put32(w.b + w.n - (1 + 1 + 8 + strlen(NEXT) + 4), (uint32_t)strlen(NEXT) + 1);
        CHECK(!decodes(&w));
        dht_le_put32(w.b + w.n - (1 + 1 + 8 + strlen(NEXT) + 4), UINT32_MAX);
        CHECK(!decodes(&w));
#undef EXPECT
#undef VIEW_BYTES
    }

    /* CHANGED's own fields */
    raw_view v0 = {0, NULL, 0, NULL, 0, 0, 0, 0};
    for (int ok = 0; ok < 256; ok++) {
        start(&w, 1, DHT_CTL_CHANGED);
        w8(&w, (uint8_t)ok);
        wstr(&w, "t", 1);
        wview(&w, &v0);
        CHECK(decodes(&w) == (ok <= 1));
    }
    const struct {
        const char *s;
        size_t n;
        bool want;
    } texts[] = {{"", 0, true},
                 {big_text, DHT_CONTROL_CHANGED_TEXT_MAX, true},
                 {big_text, DHT_CONTROL_CHANGED_TEXT_MAX + 1, false},
                 {"a\rb", 3, false},
                 {"\0", 1, false},
                 {"tab\there", 8, false}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        start(&w, 1, DHT_CTL_CHANGED);
        w8(&w, 0);
        wstr(&w, texts[i].s, texts[i].n);
        wview(&w, &v0);
        CHECK(decodes(&w) == texts[i].want);
    }

    /* CHANGE */
    for (int op = 0; op < 256; op++) {
        start(&w, 1, DHT_CTL_CHANGE);
        w8(&w, (uint8_t)op);
        wstr(&w, "a:1", 3);
        CHECK(decodes(&w) == (op == DHT_CHANGE_ADD || op == DHT_CHANGE_REMOVE));
    }
    const struct {
        const char *s;
        size_t n;
        bool want;
    } addrs[] = {{"", 0, false},
                 {"h", 1, true},
                 {big_addr, DHT_CONTROL_ADDR_MAX, true},
                 {big_addr, DHT_CONTROL_ADDR_MAX + 1, false},
                 {"a:1\n", 4, false},
                 {"a\0:1", 4, false}};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        start(&w, 1, DHT_CTL_CHANGE);
        w8(&w, DHT_CHANGE_ADD);
        wstr(&w, addrs[i].s, addrs[i].n);
        CHECK(decodes(&w) == addrs[i].want);
        w8(&w, 'x'); /* trailing, or a longer address than the length says */
        CHECK(!decodes(&w));
    }
}

/* The size bound: refused before parsing, and never in the way of a
 * valid message. */
static void test_size_bound(void)
{
    size_t n = DHT_CONTROL_ENCODED_MAX + 1;
    uint8_t *big = calloc(1, n);
    CHECK(big != NULL);
    big[0] = 1;
    big[1] = DHT_CTL_QUERY;
    char err[256] = "";
    dht_control_msg d;
    /* Any buffer this long is invalid anyway: what the bound adds is that
     * it is refused for its size, up front, not after a parse. */
    CHECK(dht_control_decode(big, n, &d, err, sizeof err) != 0);
    CHECK(strstr(err, "over") != NULL && strstr(err, "left over") == NULL);
    /* A buffer just within the bound is parsed, and fails only for its
     * trailing bytes. */
    CHECK(dht_control_decode(big, n - 1, &d, err, sizeof err) != 0);
    CHECK(strstr(err, "left over") != NULL);
    /* A length that claims the whole remaining buffer is not trusted. */
    CHECK(dht_control_decode(big, SIZE_MAX, &d, err, sizeof err) != 0);
    free(big);

    init_big();
    static dht_control_msg ms[32];
    int nm = corpus(ms, 32, true);
    size_t largest = 0;
    for (int i = 0; i < nm; i++) {
        uint8_t *buf;
        size_t len;
        CHECK(dht_control_encode(&ms[i], &buf, &len) == 0);
        largest = len > largest ? len : largest;
        free(buf);
    }
    CHECK(largest < DHT_CONTROL_ENCODED_MAX);
    CHECK(largest <= DHT_CONTROL_MAX); /* the transport's bound, transport.h */
    printf("  largest valid message: %zu bytes\n", largest);
}

/* ---- Truncations and mutations ---- */

static void test_truncations(void)
{
    init_big();
    static dht_control_msg ms[32];
    int nm = corpus(ms, 32, true);
    long refused = 0;
    for (int i = 0; i < nm; i++) {
        uint8_t *buf;
        size_t len;
        CHECK(dht_control_encode(&ms[i], &buf, &len) == 0);
        /* The prefix is placed at the end of one exact-size block, so the
         * byte after it is outside the allocation for every k. */
        uint8_t *tail = malloc(len);
        CHECK(tail != NULL);
        for (size_t k = 0; k < len; k++) {
            memcpy(tail + (len - k), buf, k);
            dht_control_msg d;
            char err[128] = "";
            CHECK(dht_control_decode(tail + (len - k), k, &d, err, sizeof err) != 0);
            CHECK(err[0] != '\0');
            refused++;
        }
        free(tail);
        free(buf);
    }
    printf("  %ld truncations refused\n", refused);
}

/* Byte positions that are not inside a string's contents: the framing,
 * the fixed-width fields and the length prefixes. */
static size_t structural_positions(const dht_control_msg *m, size_t *pos, size_t cap)
{
    size_t n = 0, at = 0;
#define FIXED(w)                                  \
    do {                                          \
        for (size_t i_ = 0; i_ < (w); i_++) {     \
            CHECK(n < cap);                       \
            pos[n++] = at++;                      \
        }                                         \
    } while (0)
#define STR(l)       \
    do {             \
        FIXED(4);    \
        at += (l);   \
    } while (0)
#define VIEW(v)               \
    do {                      \
        FIXED(8);             \
        STR((v).cur_len);     \
        STR((v).next_len);    \
        FIXED(8 + 1 + 1);     \
    } while (0)
    FIXED(2);
    switch (m->type) {
    case DHT_CTL_AGREE: FIXED(1 + 40); STR(m->agree.len); break;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL: VIEW(m->view); break;
    case DHT_CTL_CHANGE: FIXED(1); STR(m->addr_len); break;
    case DHT_CTL_CHANGED: FIXED(1); STR(m->text_len); VIEW(m->view); break;
    default: break;
    }
#undef VIEW
#undef STR
#undef FIXED
    return n;
}

static void mutate_at(uint8_t *buf, size_t len, size_t i, long *acc, long *tot)
{
    uint8_t orig = buf[i];
    for (int v = 0; v < 256; v++) {
        if (v == orig)
            continue;
        buf[i] = (uint8_t)v;
        *acc += decode_property(buf, len);
        (*tot)++;
    }
    buf[i] = orig;
}

static void test_mutations(void)
{
    init_big();
    static dht_control_msg ms[32];
    int nm = corpus(ms, 32, true);
    long accepted = 0, total = 0;
    dht_rng r;
    dht_rng_seed(&r, 5);
    for (int k = 0; k < nm; k++) {
        uint8_t *buf;
        size_t len;
        CHECK(dht_control_encode(&ms[k], &buf, &len) == 0);
        if (len <= 512) {
            /* Small: every position, every other byte value. */
            for (size_t i = 0; i < len; i++)
                mutate_at(buf, len, i, &accepted, &total);
        } else {
            /* Large: every value at every structural position, and a
             * sample of content positions (each decode costs the whole
             * message, so all of them would take minutes). */
            size_t pos[128];
            size_t np = structural_positions(&ms[k], pos, 128);
            for (size_t j = 0; j < np; j++)
                mutate_at(buf, len, pos[j], &accepted, &total);
            for (int j = 0; j < 300; j++) {
                size_t i = (size_t)dht_rng_below(&r, len);
                uint8_t orig = buf[i];
                const uint8_t vals[] = {0x00, 0x0a, 0x1f, 0x20, 0x7f, 0x80, 0xff,
                                        (uint8_t)(orig ^ 1)};
                for (size_t x = 0; x < sizeof vals; x++) {
                    if (vals[x] == orig)
                        continue;
                    buf[i] = vals[x];
                    accepted += decode_property(buf, len);
                    total++;
                }
                buf[i] = orig;
            }
        }
        CHECK(decode_property(buf, len)); /* restored */
        free(buf);
    }
    printf("  %ld single-byte mutations: %ld decoded (and re-encoded exactly), %ld refused\n",
           total, accepted, total - accepted);
    CHECK(accepted > 0 && accepted < total);
}

/* ---- Fuzz ---- */

#define FUZZ_ITERS 200000
#define FUZZ_MAX 512

/* Random bytes with a plausible skeleton: mostly the right version and a
 * known type, then field-sized pieces whose lengths are small, so that
 * the decoder gets deep into every type and sometimes all the way. */
static size_t fuzz_structured(dht_rng *r, uint8_t *b)
{
    size_t n = 0;
    b[n++] = dht_rng_below(r, 10) ? 1 : (uint8_t)dht_rng_next(r);
    b[n++] = dht_rng_below(r, 10) ? (uint8_t)(1 + dht_rng_below(r, 6)) : (uint8_t)dht_rng_next(r);
    int pieces = (int)dht_rng_below(r, 10);
    for (int p = 0; p < pieces && n + 64 < FUZZ_MAX; p++) {
        switch (dht_rng_below(r, 5)) {
        case 0:
            b[n++] = (uint8_t)dht_rng_below(r, dht_rng_below(r, 2) ? 3 : 256);
            break;
        case 1: {
            uint64_t v = rand_u64(r);
            dht_le_put64(b + n, v);
            n += 8;
            break;
        }
        case 2: {
            uint32_t l = (uint32_t)dht_rng_below(r, 12);
            dht_le_put32(b + n, l);
            n += 4;
            for (uint32_t i = 0; i < l; i++)
                b[n++] = dht_rng_below(r, 20) ? (uint8_t)(0x20 + dht_rng_below(r, 0x5f))
                                              : (uint8_t)dht_rng_next(r);
            break;
        }
        case 3:
            dht_le_put32(b + n, (uint32_t)dht_rng_next(r));
            n += 4;
            break;
        default:
            b[n++] = (uint8_t)dht_rng_next(r);
            break;
        }
    }
    return n;
}

static size_t fuzz_mutated(dht_rng *r, gen_store *s, uint8_t *b)
{
    dht_control_msg m = rand_msg(r, s, true);
    uint8_t *enc;
    size_t n;
    CHECK(dht_control_encode(&m, &enc, &n) == 0);
    CHECK(n <= FUZZ_MAX);
    memcpy(b, enc, n);
    free(enc);
    int edits = 1 + (int)dht_rng_below(r, 4);
    for (int e = 0; e < edits; e++) {
        uint64_t k = dht_rng_below(r, 7);
        if (n == 0)
            k = 3;
        size_t i = n ? (size_t)dht_rng_below(r, n) : 0;
        switch (k) {
        case 0: b[i] = (uint8_t)dht_rng_next(r); break;
        case 1: b[i] ^= (uint8_t)(1u << dht_rng_below(r, 8)); break;
        case 2: /* delete a byte */
            memmove(b + i, b + i + 1, n - i - 1);
            n--;
            break;
        case 3: /* insert a byte */
            if (n < FUZZ_MAX) {
                memmove(b + i + 1, b + i, n - i);
                b[i] = (uint8_t)dht_rng_next(r);
                n++;
            }
            break;
        case 4: n = i; break; /* truncate */
        case 5:               /* append */
            if (n < FUZZ_MAX)
                b[n++] = (uint8_t)dht_rng_next(r);
            break;
        default: /* a small number at a random place: lengths, bools, enums */
            if (i + 4 <= n)
                dht_le_put32(b + i, (uint32_t)dht_rng_below(r, 16));
            break;
        }
    }
    return n;
}

static void test_fuzz(void)
{
    static gen_store s;
    static uint8_t b[FUZZ_MAX];
    dht_rng r;
    dht_rng_seed(&r, 20240611);
    long acc[3] = {0}, tot[3] = {0};
    for (int it = 0; it < FUZZ_ITERS; it++) {
        int mode = (int)dht_rng_below(&r, 3);
        size_t n;
        if (mode == 0) { /* plain random bytes */
            n = (size_t)dht_rng_below(&r, 64);
            for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t)dht_rng_next(&r);
            if (n >= 2 && dht_rng_below(&r, 2)) {
                b[0] = 1;
                b[1] = (uint8_t)(1 + dht_rng_below(&r, 6));
            }
        } else if (mode == 1) {
            n = fuzz_structured(&r, b);
        } else {
            n = fuzz_mutated(&r, &s, b);
        }
        acc[mode] += decode_copy_property(b, n);
        tot[mode]++;
    }
    printf("  fuzz: random %ld/%ld, structured %ld/%ld, mutated %ld/%ld decoded; the rest "
           "refused\n",
           acc[0], tot[0], acc[1], tot[1], acc[2], tot[2]);
    /* The loop must reach the accepting paths, or it tests little. */
    CHECK(acc[1] > 100 && acc[2] > 1000);
}

static void test_type_names(void)
{
    CHECK(strcmp(dht_control_type_name(DHT_CTL_AGREE), "AGREE") == 0);
    CHECK(strcmp(dht_control_type_name(DHT_CTL_CHANGED), "CHANGED") == 0);
    CHECK(strcmp(dht_control_type_name(0), "?") == 0);
    CHECK(strcmp(dht_control_type_name(DHT_CTL_TYPE_MAX), "?") == 0);
    CHECK(strcmp(dht_control_type_name((dht_control_type)-1), "?") == 0);
}

static const test_case tests[] = {{"roundtrip_agree", test_roundtrip_agree},
                                  {"roundtrip_query", test_roundtrip_query},
                                  {"roundtrip_views", test_roundtrip_views},
                                  {"roundtrip_change", test_roundtrip_change},
                                  {"roundtrip_random", test_roundtrip_random},
                                  {"wire_bytes", test_wire_bytes},
                                  {"encode_refuses", test_encode_refuses},
                                  {"decode_refuses_rules", test_decode_refuses_rules},
                                  {"size_bound", test_size_bound},
                                  {"truncations", test_truncations},
                                  {"mutations", test_mutations},
                                  {"fuzz", test_fuzz},
                                  {"type_names", test_type_names},
                                  {0}};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
