/* Control messages on the wire (control.h).
 *
 * Format, version 1.  Integers are little-endian; a "str" is a u32 length
 * followed by that many bytes; a "bool" is one byte, 0 or 1.
 *
 *   u8 version (1)   u8 type (dht_control_type)   then by type:
 *
 *   AGREE    u8 agree.type  u64 epoch  u64 ballot.round  u64 ballot.id
 *            u64 accepted.round  u64 accepted.id  str value
 *   QUERY    (nothing)
 *   VIEW     view
 *   INSTALL  view
 *   CHANGE   u8 op  str addr
 *   CHANGED  bool ok  str text  view
 *
 *   view =   u64 epoch  str cur  str next  u64 cluster_id
 *            bool transfer_done  bool removed
 *
 * Rules, the same for encode and decode (one function, check(), applies
 * them to both, so that every message one node can send every node
 * accepts, and vice versa):
 *   - agree.type is a dht_agree_type, the value at most DHT_AGREE_VALUE_MAX
 *     bytes (opaque: not checked as text);
 *   - op is a dht_change_op; addr is 1..DHT_CONTROL_ADDR_MAX bytes;
 *   - text is at most DHT_CONTROL_CHANGED_TEXT_MAX bytes; cur and next at
 *     most DHT_CONTROL_TEXT_MAX each;
 *   - addr, text, cur and next hold no control character (below 0x20, or
 *     DEL): operators read them on terminals, and a peer must not be able
 *     to forge log lines or drive a terminal through them;
 *   - a view of epoch 0 (a node with no configuration yet) has no cur and
 *     no next; from epoch 1 on cur is non-empty; a next (epoch+1's
 *     configuration) needs an epoch+1, so none at UINT64_MAX.
 * The decoder also refuses: another version, an unknown type, a buffer
 * longer than DHT_CONTROL_ENCODED_MAX (before parsing), a length beyond
 * its field's limit or beyond the buffer, and bytes left over.
 *
 * Since every field has one fixed place and one fixed width, and the
 * decoder accepts no slack (booleans exact, nothing trailing), there is
 * exactly one encoding per message: decode followed by encode gives back
 * the same bytes.  The decoder allocates nothing: a decoded message points
 * into the caller's buffer, so no length from the network ever sizes an
 * allocation.
 */
#include "protocol/control.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/le.h"

#define CONTROL_VERSION 1

/* A u32 length prefix must be able to carry every limit. */
_Static_assert(DHT_AGREE_VALUE_MAX <= UINT32_MAX && DHT_CONTROL_TEXT_MAX <= UINT32_MAX,
               "limits must fit a u32 length");

#define VIEW_WIRE_MAX (8 + 4 + DHT_CONTROL_TEXT_MAX + 4 + DHT_CONTROL_TEXT_MAX + 8 + 1 + 1)
#define AGREE_WIRE_MAX (1 + 5 * 8 + 4 + DHT_AGREE_VALUE_MAX)
#define CHANGED_WIRE_MAX (1 + 4 + DHT_CONTROL_CHANGED_TEXT_MAX + VIEW_WIRE_MAX)
/* The up-front size refusal must never turn away a valid message. */
_Static_assert(2 + AGREE_WIRE_MAX <= DHT_CONTROL_ENCODED_MAX &&
                   2 + CHANGED_WIRE_MAX <= DHT_CONTROL_ENCODED_MAX,
               "DHT_CONTROL_ENCODED_MAX below the largest valid message");

const char *dht_control_type_name(dht_control_type t)
{
    static const char *const names[] = {"?",      "AGREE",   "QUERY",  "VIEW",
                                        "INSTALL", "CHANGE", "CHANGED"};
    _Static_assert(sizeof names / sizeof names[0] == DHT_CTL_TYPE_MAX, "a name per type");
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- The rules ---- */

static int check_text(const char *what, const char *s, size_t len, size_t min, size_t max,
                      char *err, size_t errlen)
{
    if (len < min || len > max)
        return fail(err, errlen, "control: %s length %zu not in %zu..%zu", what, len, min, max);
    if (len > 0 && s == NULL)
        return fail(err, errlen, "control: %s of %zu bytes is NULL", what, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return fail(err, errlen, "control: %s has control byte 0x%02x at %zu", what, c, i);
    }
    return 0;
}

static int check_view(const dht_control_view *v, char *err, size_t errlen)
{
    if (check_text("cur", v->cur, v->cur_len, 0, DHT_CONTROL_TEXT_MAX, err, errlen) ||
        check_text("next", v->next, v->next_len, 0, DHT_CONTROL_TEXT_MAX, err, errlen))
        return -1;
    if (v->epoch == 0 && (v->cur_len != 0 || v->next_len != 0))
        return fail(err, errlen, "control: view of epoch 0 with a configuration");
    if (v->epoch != 0 && v->cur_len == 0)
        return fail(err, errlen, "control: view of epoch %llu without a configuration",
                    (unsigned long long)v->epoch);
    if (v->epoch == UINT64_MAX && v->next_len != 0)
        return fail(err, errlen, "control: view with a next at the last epoch");
    return 0;
}

static int check(const dht_control_msg *m, char *err, size_t errlen)
{
    switch (m->type) {
    case DHT_CTL_AGREE:
        if (m->agree.type < DHT_AGREE_PREPARE || m->agree.type > DHT_AGREE_BEHIND)
            return fail(err, errlen, "control: bad agree type %d", (int)m->agree.type);
        if (m->agree.len > DHT_AGREE_VALUE_MAX)
            return fail(err, errlen, "control: agree value of %zu bytes, over %d", m->agree.len,
                        DHT_AGREE_VALUE_MAX);
        if (m->agree.len > 0 && m->agree.value == NULL)
            return fail(err, errlen, "control: agree value of %zu bytes is NULL", m->agree.len);
        return 0;
    case DHT_CTL_QUERY:
        return 0;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL:
        return check_view(&m->view, err, errlen);
    case DHT_CTL_CHANGE:
        if (m->op != DHT_CHANGE_ADD && m->op != DHT_CHANGE_REMOVE)
            return fail(err, errlen, "control: bad change op %d", (int)m->op);
        return check_text("addr", m->addr, m->addr_len, 1, DHT_CONTROL_ADDR_MAX, err, errlen);
    case DHT_CTL_CHANGED:
        if (check_text("text", m->text, m->text_len, 0, DHT_CONTROL_CHANGED_TEXT_MAX, err,
                       errlen))
            return -1;
        return check_view(&m->view, err, errlen);
    default:
        return fail(err, errlen, "control: bad message type %d", (int)m->type);
    }
}

/* ---- Encoding ---- */

static uint8_t *put_u8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    dht_le_put64(p, v);
    return p + 8;
}

static uint8_t *put_str(uint8_t *p, const void *s, size_t len)
{
    dht_le_put32(p, (uint32_t)len);
    if (len > 0)
        memcpy(p + 4, s, len);
    return p + 4 + len;
}

static size_t view_size(const dht_control_view *v)
{
    return 8 + 4 + v->cur_len + 4 + v->next_len + 8 + 1 + 1;
}

static uint8_t *put_view(uint8_t *p, const dht_control_view *v)
{
    p = put_u64(p, v->epoch);
    p = put_str(p, v->cur, v->cur_len);
    p = put_str(p, v->next, v->next_len);
    p = put_u64(p, v->cluster_id);
    p = put_u8(p, v->transfer_done ? 1 : 0);
    return put_u8(p, v->removed ? 1 : 0);
}

int dht_control_encode(const dht_control_msg *m, uint8_t **out, size_t *len)
{
    if (m == NULL || out == NULL || len == NULL || check(m, NULL, 0) != 0)
        return -1;
    /* check() bounded every length, so these sums cannot overflow. */
    size_t n = 2;
    switch (m->type) {
    case DHT_CTL_AGREE: n += 1 + 5 * 8 + 4 + m->agree.len; break;
    case DHT_CTL_QUERY: break;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL: n += view_size(&m->view); break;
    case DHT_CTL_CHANGE: n += 1 + 4 + m->addr_len; break;
    case DHT_CTL_CHANGED: n += 1 + 4 + m->text_len + view_size(&m->view); break;
    default: return -1;
    }
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return -1;
    uint8_t *p = put_u8(buf, CONTROL_VERSION);
    p = put_u8(p, (uint8_t)m->type);
    switch (m->type) {
    case DHT_CTL_AGREE:
        p = put_u8(p, (uint8_t)m->agree.type);
        p = put_u64(p, m->agree.epoch);
        p = put_u64(p, m->agree.ballot.round);
        p = put_u64(p, m->agree.ballot.id);
        p = put_u64(p, m->agree.accepted.round);
        p = put_u64(p, m->agree.accepted.id);
        p = put_str(p, m->agree.value, m->agree.len);
        break;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL:
        p = put_view(p, &m->view);
        break;
    case DHT_CTL_CHANGE:
        p = put_u8(p, (uint8_t)m->op);
        p = put_str(p, m->addr, m->addr_len);
        break;
    case DHT_CTL_CHANGED:
        p = put_u8(p, m->ok ? 1 : 0);
        p = put_str(p, m->text, m->text_len);
        p = put_view(p, &m->view);
        break;
    default:
        break;
    }
    if ((size_t)(p - buf) != n) {
        /* The size and the writes above disagree: a bug here, never input. */
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* ---- Decoding ---- */

/* The first failure sticks and later reads return zeros without touching
 * the buffer, so the parsers below read field after field and look once
 * at the end, with no path that reads on past a failure. */
typedef struct {
    const uint8_t *p;
    size_t left;
    const char *field; /* of the first failure */
    const char *why;
} reader;

static bool rd_need(reader *r, const char *field, size_t n)
{
    if (r->why != NULL)
        return false;
    if (n > r->left) {
        r->field = field;
        r->why = "truncated";
        return false;
    }
    return true;
}

static uint8_t rd_u8(reader *r, const char *field)
{
    if (!rd_need(r, field, 1))
        return 0;
    uint8_t v = r->p[0];
    r->p++;
    r->left--;
    return v;
}

static bool rd_bool(reader *r, const char *field)
{
    uint8_t v = rd_u8(r, field);
    if (v > 1 && r->why == NULL) {
        r->field = field;
        r->why = "not 0 or 1";
    }
    return v == 1;
}

static uint64_t rd_u64(reader *r, const char *field)
{
    if (!rd_need(r, field, 8))
        return 0;
    uint64_t v = dht_le_get64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

/* The length is held against the field's limit and then against what is
 * left before anything is read through it.  Returns NULL when empty. */
static const uint8_t *rd_str(reader *r, const char *field, size_t max, size_t *len)
{
    *len = 0;
    if (!rd_need(r, field, 4))
        return NULL;
    size_t n = dht_le_get32(r->p);
    r->p += 4;
    r->left -= 4;
    if (n > max) {
        r->field = field;
        r->why = "length over its limit";
        return NULL;
    }
    if (!rd_need(r, field, n))
        return NULL;
    const uint8_t *s = n > 0 ? r->p : NULL;
    r->p += n;
    r->left -= n;
    *len = n;
    return s;
}

/* Empty texts become "" so that a caller may print any decoded text with
 * "%.*s" without a NULL check; next stays NULL, its "not joint" marker. */
static const char *text_or_empty(const uint8_t *s)
{
    return s != NULL ? (const char *)s : "";
}

static void rd_view(reader *r, dht_control_view *v)
{
    v->epoch = rd_u64(r, "view epoch");
    v->cur = text_or_empty(rd_str(r, "view cur", DHT_CONTROL_TEXT_MAX, &v->cur_len));
    v->next = (const char *)rd_str(r, "view next", DHT_CONTROL_TEXT_MAX, &v->next_len);
    v->cluster_id = rd_u64(r, "view cluster_id");
    v->transfer_done = rd_bool(r, "view transfer_done");
    v->removed = rd_bool(r, "view removed");
}

int dht_control_decode(const uint8_t *buf, size_t len, dht_control_msg *m, char *err,
                       size_t errlen)
{
    if (m == NULL || (buf == NULL && len > 0))
        return fail(err, errlen, "control: no buffer or no message");
    if (len > DHT_CONTROL_ENCODED_MAX)
        return fail(err, errlen, "control: %zu bytes, over %zu", len,
                    (size_t)DHT_CONTROL_ENCODED_MAX);
    if (len < 2)
        return fail(err, errlen, "control: %zu bytes, too short", len);
    if (buf[0] != CONTROL_VERSION)
        return fail(err, errlen, "control: version %u, not %d", buf[0], CONTROL_VERSION);
    if (buf[1] < DHT_CTL_AGREE || buf[1] >= DHT_CTL_TYPE_MAX)
        return fail(err, errlen, "control: unknown message type %u", buf[1]);

    dht_control_msg d;
    memset(&d, 0, sizeof d);
    d.type = (dht_control_type)buf[1];
    reader r = {buf + 2, len - 2, NULL, NULL};
    switch (d.type) {
    case DHT_CTL_AGREE:
        /* A byte always fits the enum's type; check() judges its range. */
        d.agree.type = (dht_agree_type)rd_u8(&r, "agree type");
        d.agree.epoch = rd_u64(&r, "agree epoch");
        d.agree.ballot.round = rd_u64(&r, "agree ballot");
        d.agree.ballot.id = rd_u64(&r, "agree ballot");
        d.agree.accepted.round = rd_u64(&r, "agree accepted");
        d.agree.accepted.id = rd_u64(&r, "agree accepted");
        d.agree.value = rd_str(&r, "agree value", DHT_AGREE_VALUE_MAX, &d.agree.len);
        break;
    case DHT_CTL_QUERY:
        break;
    case DHT_CTL_VIEW:
    case DHT_CTL_INSTALL:
        rd_view(&r, &d.view);
        break;
    case DHT_CTL_CHANGE:
        d.op = (dht_change_op)rd_u8(&r, "change op");
        d.addr = (const char *)rd_str(&r, "change addr", DHT_CONTROL_ADDR_MAX, &d.addr_len);
        break;
    case DHT_CTL_CHANGED:
        d.ok = rd_bool(&r, "changed ok");
        d.text = text_or_empty(rd_str(&r, "changed text", DHT_CONTROL_CHANGED_TEXT_MAX,
                                      &d.text_len));
        rd_view(&r, &d.view);
        break;
    default:
        break;
    }
    const char *name = dht_control_type_name(d.type);
    if (r.why != NULL)
        return fail(err, errlen, "control: %s: %s %s", name, r.field, r.why);
    if (r.left != 0)
        return fail(err, errlen, "control: %s: %zu bytes left over", name, r.left);
    char why[160];
    if (check(&d, why, sizeof why) != 0)
        return fail(err, errlen, "%s (in %s)", why, name);
    *m = d;
    return 0;
}
