/*
 * lincheck.c - linearizability checker for per-key read/write registers.
 *
 * ======================================================================
 * DESIGN
 * ======================================================================
 *
 * Semantics of a history
 * ----------------------
 * Each key is an independent register holding an int64, initially 0.
 *  - put ok=false: definitely not applied -> dropped.
 *  - get with ok != true: carries no information -> dropped.
 *  - put with ok=null or return=null: "unknown".  It may take effect at any
 *    point after its call, or never: an OPTIONAL op with return = +inf.
 *  - everything else is DEFINITE: it must appear in the linearization, at a
 *    point inside [call, return] (a get with ok=true but return=null gets
 *    return = +inf).
 * Real-time order: a precedes b iff a.return < b.call.  Equal timestamps
 * count as concurrent (the conservative choice: it never invents a
 * violation).  A history is linearizable iff there is a sequence of all
 * definite ops plus any subset of the unknown puts that respects real-time
 * order and in which every get returns the value of the latest put before
 * it (or 0).
 *
 * P-compositionality
 * ------------------
 * Linearizability is local (Herlihy & Wing): the history is linearizable
 * iff every per-key sub-history is.  We check keys one by one, so the
 * exponential part of the search only ever sees one key.  All keys are
 * checked so that the failing key with the fewest ops can be reported.
 *
 * Reading FROM a put
 * ------------------
 * Get g can return the value of put p (p "serves" g) only if p is the last
 * put before g, so: same value, g does not precede p (g.ret >= p.call), and
 * no definite put p' lies strictly between them in real time
 * (p.ret < p'.call and p'.ret < g.call; p' would have to be placed between
 * p and g).  Such (p, g) are COMPATIBLE; this is static, computed once.
 *  - A definite put with no compatible get is UNREAD: it must be placed,
 *    but nothing ever observes its value (see R2).  Others are READ puts.
 *  - An unknown put with no compatible get is dropped (placed "never").
 *  - Fast failure: a get of w != 0 with no kept put of w called by its
 *    return, or a get of 0 after a definite put completed with no kept put
 *    of 0 called by its return, is reported at once (exact consequences
 *    of the above; they only save a search that would end the same way).
 *
 * The search (Wing & Gong, Lowe, with memoization)
 * ------------------------------------------------
 * A state is (S, v): the set S of ops already linearized and the register
 * value v.  An op x not in S is MINIMAL if x.call <= m, where m is the
 * earliest return among definite ops not in S: exactly the ops that may
 * come next without violating real-time order.  A sequence respects
 * real-time order iff each op is minimal when it is appended, so a
 * depth-first search over "append a minimal op whose semantics allow it" is
 * complete, and it succeeds once every definite op is in S.  The minimal
 * ops come from Lowe's event list: call and return events of the definite
 * ops sorted by time (calls before returns at equal times) in a doubly
 * linked list; linearizing an op unlinks ("lifts") both its events,
 * backtracking relinks them (dancing links, strictly LIFO).  The minimal
 * ops are the calls before the first remaining return, so enumerating them
 * costs O(concurrency), not O(history).
 *
 * Memoization: the outcome of the search from (S, v) does not depend on how
 * it was reached, so each state is explored at most once (hash set).  The
 * search stops with "inconclusive" when the set holds `budget` states.
 *
 * Reductions.  Plain search branches on every minimal op.  The reductions
 * below are exact: each claims "if some valid completion from the state
 * exists, one exists that the reduced search explores", shown by
 * rearranging a completion; soundness is immediate because every move
 * appends minimal ops with correct values.  The recurring argument: moving
 * a minimal op x EARLIER in a completion keeps real-time order, because
 * every op it jumps over is pending, so its return >= m >= x.call.
 *
 * (R1) Greedy reads.  A minimal get reading the current value is
 *      linearized at once, with no alternative: moving it to the front of
 *      any completion changes no value read.  Applied as a closure after
 *      every move; memoized states are post-closure.
 *
 * (R2) Wasted puts are absorbed.  A put nobody can still read from (UNREAD,
 *      or a READ put whose compatible gets are all in S: "dead", tracked by
 *      per-put counters) is followed in any completion by a put or by the
 *      end, never by a get.  Moving it to just before the first other put
 *      of the completion keeps it valid (that put overwrites it).  So when
 *      the search appends a put it first appends A*, the closure of
 *      "minimal wasted puts" (absorbing one may move m later and make
 *      another minimal).  Wasted puts are never appended on their own; the
 *      search succeeds once every remaining definite op is a wasted put
 *      (append them in call order: that respects real time, and nothing
 *      reads them).
 *
 * (R3) Unknown puts only feed reads.  An unknown put not immediately
 *      followed by a get of its value can be deleted (it is optional and
 *      its value is overwritten or never read), so it is only appended as
 *      a pair (u, g) with a minimal get g of its value.  Two minimal
 *      unknown puts of one value are interchangeable (returns are +inf), so
 *      the earliest-called is used.  Pairs for different gets of one value
 *      reach the same state after the R1 closure: one pair per value.
 *
 * (R4) One put per value.  Of the minimal live READ puts of one value only
 *      the one with the earliest return is tried: it can take any other's
 *      place now, and the other can take its place later (the later spot
 *      is before q1's return, hence before q2's).  Likewise a pair (u, g)
 *      is not tried when a minimal READ put of g's value exists: the
 *      definite put can take u's place and u can go where the put was.
 *
 * So a search node branches only on "which value is written next", and a
 * move is: append A*, then a READ put q or a pair (u, g), then the R1
 * closure.  Two more exact checks discard dead states early:
 *
 * (P1) When the register stops holding v, every get still waiting to read
 *      v needs an unlinearized put of v called by the time that get
 *      returns; checking the waiting get with the earliest return suffices.
 * (P2) The pending op y with the earliest return must be linearized before
 *      any op that is not minimal now.  If y is a get (of w != v, else R1
 *      took it), some move of this node must write w.
 *
 * Move order (heuristic only): puts whose value a minimal get is waiting
 * for, most urgent reader first; then the rest, earliest return first.
 *
 * Cost.  With distinct values per put (recommended for test workloads:
 * e.g. client << 32 | sequence number) P1 cuts every wrong branch almost
 * at once and several thousand ops with 32 clients and dozens of unknown
 * puts take milliseconds.  With heavily repeated values the problem is
 * NP-complete in general (Gibbons & Korach); typical histories still pass
 * quickly, but long-outstanding unknown puts of repeated values can make a
 * key inconclusive.
 *
 * Memo encoding.  A state's hash is a Zobrist hash (XOR of a random 64-bit
 * word per op in S) mixed with v, updated in O(1) per op.  Stored keys are
 * exact, so a hash collision can never prune the search: definite ops are
 * numbered in call order, so S is "a full prefix, a window, then nothing";
 * we store v, the index of the first non-full 64-bit word, the window up to
 * the last nonzero word, and the (small) bitset of unknown puts.  Typically
 * 5-10 words per state plus 8-16 bytes of hash slots (load <= 1/2), i.e.
 * about 60 bytes per state.
 *
 * Diagnostics: for a violation (or an inconclusive key) the deepest partial
 * linearization found (required ops placed) and the op with the earliest
 * return at that point, usually the read that cannot be explained.
 *
 * Memory ownership
 * ----------------
 *  - dht_history_load: the caller owns *ops (free()); the line buffer and
 *    the per-file staging array are local and freed before returning.
 *  - dht_lincheck*: every per-key array lives in an lc_key that is
 *    created and destroyed by key_check() (lc_key_free releases all of
 *    it, on every path); the sorted key index is freed by the caller of
 *    key_check.  The only allocation that outlives the call is res->sub,
 *    owned by the result and freed by dht_lincheck_result_free().
 *  - res->reason always points to a string literal.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline */
#endif

#include "lincheck.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#if defined(__GNUC__) || defined(__clang__)
#define LC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LC_PRINTF(a, b)
#endif

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    LC_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ======================================================================
 * JSON line parser.  A deliberately small, strict parser for one flat
 * object per line; unknown fields are validated and skipped.
 * ====================================================================== */

typedef struct {
    const char *start; /* beginning of the line (for column numbers) */
    const char *p;     /* cursor */
    char *err;
    size_t errlen;
} jparser;

static int jerr(jparser *jp, const char *fmt, ...) LC_PRINTF(2, 3);

static int jerr(jparser *jp, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (jp->err == NULL || jp->errlen == 0)
        return -1;
    k = snprintf(jp->err, jp->errlen, "column %zu: ",
                 (size_t)(jp->p - jp->start) + 1);
    if (k >= 0 && (size_t)k < jp->errlen) {
        va_start(ap, fmt);
        vsnprintf(jp->err + k, jp->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void jskip_ws(jparser *jp)
{
    while (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\r' ||
           *jp->p == '\n')
        jp->p++;
}

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '+' ||
           c == '-';
}

/* Match a bare literal (true/false/null) that is not a prefix of a longer
 * word ("nullx" is an error, not "null" followed by garbage). */
static int jliteral(jparser *jp, const char *lit)
{
    size_t len = strlen(lit);

    if (strncmp(jp->p, lit, len) != 0 || is_word_char(jp->p[len]))
        return 0;
    jp->p += len;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parse a JSON string at the cursor.  Its decoded text (non-ASCII escapes
 * become '?', which is enough to compare with our ASCII names) goes to buf
 * when buf != NULL; *fits says whether it fit in cap-1 bytes. */
static int jstring(jparser *jp, char *buf, size_t cap, int *fits)
{
    size_t len = 0;

    if (*jp->p != '"')
        return jerr(jp, "expected a string");
    jp->p++;
    if (fits)
        *fits = 1;
    for (;;) {
        char c = *jp->p;
        char out;

        if (c == '\0')
            return jerr(jp, "unterminated string");
        if ((unsigned char)c < 0x20)
            return jerr(jp, "control character in string");
        if (c == '"') {
            jp->p++;
            break;
        }
        if (c == '\\') {
            char e = jp->p[1];

            jp->p += 2;
            switch (e) {
            case '"': out = '"'; break;
            case '\\': out = '\\'; break;
            case '/': out = '/'; break;
            case 'b': out = '\b'; break;
            case 'f': out = '\f'; break;
            case 'n': out = '\n'; break;
            case 'r': out = '\r'; break;
            case 't': out = '\t'; break;
            case 'u': {
                int cp = 0;

                for (int i = 0; i < 4; i++) {
                    int h = hexval(jp->p[i]);

                    if (h < 0)
                        return jerr(jp, "bad \\u escape in string");
                    cp = cp * 16 + h;
                }
                jp->p += 4;
                out = cp < 0x80 ? (char)cp : '?';
                break;
            }
            default:
                jp->p -= 2;
                return jerr(jp, "bad escape in string");
            }
        } else {
            out = c;
            jp->p++;
        }
        if (buf != NULL) {
            if (len + 1 < cap)
                buf[len++] = out;
            else if (fits)
                *fits = 0;
        }
    }
    if (buf != NULL && cap > 0)
        buf[len] = '\0';
    return 0;
}

/* Parse a JSON integer that must fit int64 (no fraction, no exponent). */
static int jint64(jparser *jp, int64_t *out, const char *field)
{
    const char *s = jp->p;
    int neg = 0;
    uint64_t mag = 0, limit;

    if (*s == '-') {
        neg = 1;
        s++;
    }
    if (*s < '0' || *s > '9')
        return jerr(jp, "\"%s\" must be an integer", field);
    if (*s == '0' && s[1] >= '0' && s[1] <= '9')
        return jerr(jp, "\"%s\": leading zeros are not allowed", field);
    limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');

        if (mag > (limit - d) / 10u)
            return jerr(jp, "\"%s\" does not fit in int64", field);
        mag = mag * 10u + d;
        s++;
    }
    if (*s == '.' || *s == 'e' || *s == 'E')
        return jerr(jp, "\"%s\" must be an integer (no fraction/exponent)",
                    field);
    if (is_word_char(*s))
        return jerr(jp, "bad number for \"%s\"", field);
    if (neg)
        *out = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
    else
        *out = (int64_t)mag;
    jp->p = s;
    return 0;
}

/* Integer or null; *is_null tells which. */
static int jint_or_null(jparser *jp, int64_t *out, int *is_null,
                        const char *field)
{
    if (jliteral(jp, "null")) {
        *is_null = 1;
        *out = 0;
        return 0;
    }
    *is_null = 0;
    return jint64(jp, out, field);
}

/* Validate any JSON number (for skipped fields). */
static int jskip_number(jparser *jp)
{
    const char *s = jp->p;

    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return jerr(jp, "bad number");
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return jerr(jp, "bad number");
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return jerr(jp, "bad number");
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (is_word_char(*s))
        return jerr(jp, "bad number");
    jp->p = s;
    return 0;
}

/* Validate and skip any JSON value (unknown fields may hold anything). */
static int jskip_value(jparser *jp, int depth)
{
    char c = *jp->p;

    if (depth > 64)
        return jerr(jp, "nesting too deep");
    if (c == '"')
        return jstring(jp, NULL, 0, NULL);
    if (c == '-' || (c >= '0' && c <= '9'))
        return jskip_number(jp);
    if (jliteral(jp, "true") || jliteral(jp, "false") ||
        jliteral(jp, "null"))
        return 0;
    if (c == '[' || c == '{') {
        char close = c == '[' ? ']' : '}';

        jp->p++;
        jskip_ws(jp);
        if (*jp->p == close) {
            jp->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (jstring(jp, NULL, 0, NULL) < 0)
                    return -1;
                jskip_ws(jp);
                if (*jp->p != ':')
                    return jerr(jp, "expected ':'");
                jp->p++;
                jskip_ws(jp);
            }
            if (jskip_value(jp, depth + 1) < 0)
                return -1;
            jskip_ws(jp);
            if (*jp->p == close) {
                jp->p++;
                return 0;
            }
            if (*jp->p != ',')
                return jerr(jp, "expected ',' or '%c'", close);
            jp->p++;
            jskip_ws(jp);
        }
    }
    if (c == '\0')
        return jerr(jp, "unexpected end of line, expected a value");
    return jerr(jp, "expected a value");
}

/* The fields of a history line. */
enum { F_CLIENT, F_OP, F_KEY, F_VALUE, F_CALL, F_RETURN, F_OK, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "client", "op", "key", "value", "call", "return", "ok"};

typedef struct {
    int seen[F_COUNT];
    int value_null, ret_null;
} jfields;

static int parse_field(jparser *jp, int f, dht_history_op *op, jfields *st)
{
    int is_null = 0;
    int64_t tmp;
    char buf[8];
    int fits;

    switch (f) {
    case F_OP:
        if (jstring(jp, buf, sizeof buf, &fits) < 0)
            return -1;
        if (fits && strcmp(buf, "put") == 0)
            op->is_put = 1;
        else if (fits && strcmp(buf, "get") == 0)
            op->is_put = 0;
        else
            return jerr(jp, "\"op\" must be \"put\" or \"get\"");
        return 0;
    case F_OK:
        if (jliteral(jp, "true"))
            op->ok = 1;
        else if (jliteral(jp, "false"))
            op->ok = 0;
        else if (jliteral(jp, "null"))
            op->ok = -1;
        else
            return jerr(jp, "\"ok\" must be true, false or null");
        return 0;
    case F_VALUE:
        if (jint_or_null(jp, &op->value, &st->value_null, "value") < 0)
            return -1;
        return 0;
    case F_RETURN:
        if (jint_or_null(jp, &tmp, &st->ret_null, "return") < 0)
            return -1;
        op->ret = st->ret_null ? DHT_HISTORY_RET_UNKNOWN : tmp;
        return 0;
    default: /* client, key, call: non-null integers */
        if (jint_or_null(jp, &tmp, &is_null, field_names[f]) < 0)
            return -1;
        if (is_null)
            return jerr(jp, "\"%s\" must not be null", field_names[f]);
        if (f == F_CLIENT)
            op->client = tmp;
        else if (f == F_KEY)
            op->key = tmp;
        else
            op->call = tmp;
        return 0;
    }
}

/* Cross-field rules, checked once the whole object is read. */
static int check_fields(jparser *jp, const dht_history_op *op,
                        const jfields *st)
{
    for (int f = 0; f < F_COUNT; f++)
        if (!st->seen[f])
            return jerr(jp, "missing field \"%s\"", field_names[f]);
    if (st->value_null && (op->is_put || op->ok == 1))
        return jerr(jp, "\"value\" may be null only for a get that is "
                        "not ok=true");
    if (!st->ret_null && op->ret < op->call)
        return jerr(jp, "\"return\" (%lld) is before \"call\" (%lld)",
                    (long long)op->ret, (long long)op->call);
    return 0;
}

int dht_history_parse_line(const char *line, dht_history_op *op, char *err,
                           size_t errlen)
{
    jparser jp = {line, line, err, errlen};
    jfields st;
    dht_history_op o;

    memset(&st, 0, sizeof st);
    memset(&o, 0, sizeof o);
    o.ret = DHT_HISTORY_RET_UNKNOWN;
    jskip_ws(&jp);
    if (*jp.p == '\0')
        return 1;
    if (*jp.p != '{')
        return jerr(&jp, "expected '{' (one JSON object per line)");
    jp.p++;
    jskip_ws(&jp);
    if (*jp.p != '}') {
        for (;;) {
            char name[16];
            int fits, f;

            if (jstring(&jp, name, sizeof name, &fits) < 0)
                return -1;
            for (f = 0; f < F_COUNT; f++)
                if (fits && strcmp(name, field_names[f]) == 0)
                    break;
            jskip_ws(&jp);
            if (*jp.p != ':')
                return jerr(&jp, "expected ':'");
            jp.p++;
            jskip_ws(&jp);
            if (f < F_COUNT) {
                if (st.seen[f])
                    return jerr(&jp, "duplicate field \"%s\"",
                                field_names[f]);
                st.seen[f] = 1;
                if (parse_field(&jp, f, &o, &st) < 0)
                    return -1;
            } else if (jskip_value(&jp, 0) < 0) {
                return -1;
            }
            jskip_ws(&jp);
            if (*jp.p == '}')
                break;
            if (*jp.p != ',')
                return jerr(&jp, "expected ',' or '}'");
            jp.p++;
            jskip_ws(&jp);
        }
    }
    jp.p++; /* the '}' */
    jskip_ws(&jp);
    if (*jp.p != '\0')
        return jerr(&jp, "unexpected text after the object");
    if (check_fields(&jp, &o, &st) < 0)
        return -1;
    *op = o;
    return 0;
}

/* ======================================================================
 * Loader
 * ====================================================================== */

/* Growable staging array for one file's ops. */
typedef struct {
    dht_history_op *v;
    size_t n, cap;
} opvec;

static int opvec_push(opvec *ov, const dht_history_op *op)
{
    if (ov->n == ov->cap) {
        size_t ncap = ov->cap ? ov->cap * 2 : 256;
        dht_history_op *nv;

        if (ncap > SIZE_MAX / sizeof *nv)
            return -1;
        nv = realloc(ov->v, ncap * sizeof *nv);
        if (nv == NULL)
            return -1;
        ov->v = nv;
        ov->cap = ncap;
    }
    ov->v[ov->n++] = *op;
    return 0;
}

/* Read every line of f into ov.  Returns 0 or -1 (err filled). */
static int load_stream(FILE *f, const char *name, opvec *ov, char *err,
                       size_t errlen)
{
    char *line = NULL; /* owned here, freed below */
    size_t cap = 0, lineno = 0;
    ssize_t len;
    char perr[256];
    int rc = 0;

    for (;;) {
        dht_history_op op;
        int r;

        errno = 0;
        len = getline(&line, &cap, f);
        if (len < 0) {
            if (ferror(f) || errno == ENOMEM) {
                set_err(err, errlen, "%s:%zu: read error: %s", name,
                        lineno + 1, strerror(errno ? errno : EIO));
                rc = -1;
            }
            break;
        }
        lineno++;
        if (memchr(line, '\0', (size_t)len) != NULL) {
            set_err(err, errlen, "%s:%zu: NUL byte in line", name, lineno);
            rc = -1;
            break;
        }
        r = dht_history_parse_line(line, &op, perr, sizeof perr);
        if (r == 1)
            continue;
        if (r < 0) {
            set_err(err, errlen, "%s:%zu: %s", name, lineno, perr);
            rc = -1;
            break;
        }
        if (opvec_push(ov, &op) < 0) {
            set_err(err, errlen, "%s:%zu: out of memory", name, lineno);
            rc = -1;
            break;
        }
    }
    free(line);
    return rc;
}

int dht_history_load(const char *path, dht_history_op **ops, size_t *n,
                     char *err, size_t errlen)
{
    opvec ov = {NULL, 0, 0}; /* staging; freed before returning */
    const char *name = path;
    FILE *f;
    int rc;

    if (strcmp(path, "-") == 0) {
        f = stdin;
        name = "<stdin>";
    } else {
        f = fopen(path, "r");
        if (f == NULL) {
            set_err(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
    }
    rc = load_stream(f, name, &ov, err, errlen);
    if (f != stdin)
        fclose(f);
    if (rc == 0 && ov.n > 0) {
        dht_history_op *merged = NULL;

        if (*n <= (SIZE_MAX / sizeof *merged) - ov.n)
            merged = realloc(*ops, (*n + ov.n) * sizeof *merged);
        if (merged == NULL) {
            set_err(err, errlen, "%s: out of memory", name);
            rc = -1;
        } else {
            memcpy(merged + *n, ov.v, ov.n * sizeof *merged);
            *ops = merged;
            *n += ov.n;
        }
    }
    free(ov.v);
    return rc;
}

/* ======================================================================
 * Checker: per-key data
 * ====================================================================== */

#define LC_INF INT64_MAX
#define LC_NONE UINT32_MAX

enum lc_kind {
    LC_GET,         /* definite get */
    LC_PUT_READ,    /* definite put whose value some get reads */
    LC_PUT_UNREAD,  /* definite put whose value no get reads (R2) */
    LC_PUT_UNKNOWN  /* optional put whose value some get reads (R3) */
};

typedef struct {
    int64_t call, ret, value;
    int64_t horizon; /* puts: latest call of a get that can read from
                      * this put (see refine_unread); LC_INF if none */
    size_t orig;     /* index into the caller's ops[] */
    int kind;
    uint32_t vid;    /* index of value in lc_key.rvals; LC_NONE if unread */
} lc_op;

typedef struct {
    uint32_t op;     /* READ put, or the get of an (unknown put, get) pair */
    uint32_t u;      /* unknown put of the pair, LC_NONE for a plain put */
    uint32_t cls;    /* ordering heuristic: 0 = feeds a minimal get */
    int64_t due;     /* ordering heuristic: earliest deadline first */
} lc_move;

typedef struct {
    int64_t value, ret;
    uint32_t op;
} lc_cand;

typedef struct {
    uint32_t trail_mark;  /* trail length before the move that made us */
    int64_t value_before; /* register value before that move */
    size_t moves_off, moves_n, next_move;
    size_t absorb_off, absorb_n;
    int expanded;
} lc_frame;

typedef struct {
    uint64_t *slots;  /* (hash>>32)<<32 | (arena offset + 1); 0 = empty */
    size_t nslots;    /* power of two */
    size_t count;
    uint64_t *arena;  /* records: hash, value, lo<<32|len, window, ubits */
    size_t alen, acap;
} lc_memo;

/* Everything the search of one key needs.  All pointers are owned by this
 * struct and released by lc_key_free(). */
typedef struct {
    lc_op *op;            /* [0,nd) definite by call; [nd,nops) unknown by
                           * (value, call) */
    uint32_t nd, nu, nops;

    /* Event list: node i < nd is op i's call, node nd+i its return,
     * head = 2nd, tail = 2nd+1. */
    uint32_t *next, *prev;
    uint32_t head, tail;

    uint64_t *zob;        /* Zobrist word per op */
    uint64_t *dbits;      /* definite ops in S */
    uint32_t ndw, dlo, dhi; /* words; first non-full; last nonzero + 1 */
    uint64_t *ubits;      /* unknown puts in S */
    uint32_t nuw;

    uint64_t hset;        /* Zobrist hash of S */
    int64_t value;        /* register value */
    uint32_t must_left;   /* gets and live READ puts not yet in S: the
                           * search succeeds when this reaches 0 */
    uint32_t need;        /* its initial value (for diagnostics) */

    int64_t *rvals;       /* distinct values read by gets, sorted */
    uint32_t nrv;
    uint32_t *pend_reads; /* per vid: gets not yet in S */
    uint32_t *pend_puts;  /* per vid: puts (READ or unknown) not in S */

    uint32_t *trail;      /* ops added to S, in order (undo log) */
    uint32_t ntrail;
    lc_frame *frames;     /* DFS stack, capacity nd + 1 */
    uint32_t nframes;
    lc_move *moves;       /* per-frame move lists, stacked */
    size_t nmoves, moves_cap;
    uint32_t *absorb;     /* per-frame A* lists, stacked */
    size_t nabsorb, absorb_cap;
    lc_cand *cand;        /* scratch: minimal gets of one expansion */

    /* Per read value (index vid): its gets and READ puts in call order,
     * and its unknown puts (a range of [nd, nops)). */
    uint32_t *gl, *gl_off, *pl, *pl_off, *ul_off;

    /* Compatibility of READ puts and gets (get g can read from put q, see
     * refine_unread): for get g, cp[cp_off[g] .. cp_off[g+1]) are its
     * compatible READ puts; live[q] counts q's compatible gets not in S.
     * A READ put with live[q] == 0 can no longer be read from, so it is
     * treated as UNREAD from then on (R2). */
    uint32_t *cp, *cp_off, *live;

    lc_memo memo;
    uint64_t budget;

    uint32_t best_lin;    /* diagnostics: deepest point reached */
    uint32_t stuck_op;
} lc_key;

/* Outcome of one key. */
typedef struct {
    int verdict;          /* DHT_LIN_* or -1 (out of memory) */
    const char *reason;
    size_t bad_op;
    size_t lin_best, lin_need;
    size_t checked;       /* ops kept for the check */
    uint64_t states;
} lc_outcome;

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t value_hash(int64_t v)
{
    return splitmix64((uint64_t)v ^ 0x5bd1e9955bd1e995ull);
}

static void lc_key_free(lc_key *k)
{
    free(k->op);
    free(k->rvals);
    free(k->pend_reads);
    free(k->pend_puts);
    free(k->next);
    free(k->prev);
    free(k->zob);
    free(k->dbits);
    free(k->ubits);
    free(k->trail);
    free(k->frames);
    free(k->moves);
    free(k->absorb);
    free(k->cand);
    free(k->gl);
    free(k->gl_off);
    free(k->pl);
    free(k->pl_off);
    free(k->ul_off);
    free(k->cp);
    free(k->cp_off);
    free(k->live);
    free(k->memo.slots);
    free(k->memo.arena);
    memset(k, 0, sizeof *k);
}

/* ---------------------------------------------------------------------
 * Bitset of S, kept together with its Zobrist hash and window bounds.
 * --------------------------------------------------------------------- */

static uint64_t dword_full(const lc_key *k, uint32_t w)
{
    uint32_t tail_bits = k->nd % 64u;

    if (w == k->ndw - 1 && tail_bits != 0)
        return (1ull << tail_bits) - 1;
    return ~0ull;
}

static void dbit_set(lc_key *k, uint32_t i)
{
    uint32_t w = i / 64u;

    k->dbits[w] |= 1ull << (i % 64u);
    if (w + 1 > k->dhi)
        k->dhi = w + 1;
    while (k->dlo < k->ndw && k->dbits[k->dlo] == dword_full(k, k->dlo))
        k->dlo++;
}

static void dbit_clear(lc_key *k, uint32_t i)
{
    uint32_t w = i / 64u;

    k->dbits[w] &= ~(1ull << (i % 64u));
    if (w < k->dlo)
        k->dlo = w;
    while (k->dhi > 0 && k->dbits[k->dhi - 1] == 0)
        k->dhi--;
}

/* ---------------------------------------------------------------------
 * Event list (dancing links).  lift/unlift must be strictly LIFO.
 * --------------------------------------------------------------------- */

static void node_unlink(lc_key *k, uint32_t x)
{
    k->next[k->prev[x]] = k->next[x];
    k->prev[k->next[x]] = k->prev[x];
}

static void node_relink(lc_key *k, uint32_t x)
{
    k->next[k->prev[x]] = x;
    k->prev[k->next[x]] = x;
}

static void lift(lc_key *k, uint32_t i)
{
    node_unlink(k, i);
    node_unlink(k, k->nd + i);
}

static void unlift(lc_key *k, uint32_t i)
{
    node_relink(k, k->nd + i);
    node_relink(k, i);
}

static int64_t node_time(const lc_key *k, uint32_t node)
{
    if (node == k->tail)
        return LC_INF;
    return node < k->nd ? k->op[node].call : k->op[node - k->nd].ret;
}

/* ---------------------------------------------------------------------
 * Adding ops to S and undoing it.
 * --------------------------------------------------------------------- */

/* Is definite op i in S? */
static int def_in_s(const lc_key *k, uint32_t i)
{
    return (k->dbits[i / 64u] >> (i % 64u)) & 1u;
}

/* Is i a put that must still be placed for a reason, i.e. a READ put
 * that some get not yet in S could still read from? */
static int put_is_live(const lc_key *k, uint32_t i)
{
    return k->op[i].kind == LC_PUT_READ && k->live[i] > 0;
}

/* Counters for definite op i entering S (i is not yet marked in S). */
static void account_add(lc_key *k, uint32_t i)
{
    const lc_op *o = &k->op[i];

    if (o->kind == LC_GET) {
        k->pend_reads[o->vid]--;
        k->must_left--;
        for (uint32_t j = k->cp_off[i]; j < k->cp_off[i + 1]; j++) {
            uint32_t q = k->cp[j];

            if (--k->live[q] == 0 && !def_in_s(k, q))
                k->must_left--; /* q just stopped being needed */
        }
    } else if (o->kind == LC_PUT_READ) {
        k->pend_puts[o->vid]--;
        if (k->live[i] > 0)
            k->must_left--;
    }
}

/* Exact mirror of account_add, for undo (i is no longer marked). */
static void account_remove(lc_key *k, uint32_t i)
{
    const lc_op *o = &k->op[i];

    if (o->kind == LC_GET) {
        k->pend_reads[o->vid]++;
        k->must_left++;
        for (uint32_t j = k->cp_off[i]; j < k->cp_off[i + 1]; j++) {
            uint32_t q = k->cp[j];

            if (k->live[q]++ == 0 && !def_in_s(k, q))
                k->must_left++;
        }
    } else if (o->kind == LC_PUT_READ) {
        k->pend_puts[o->vid]++;
        if (k->live[i] > 0)
            k->must_left++;
    }
}

/* Linearize a definite op: unlink its events, record it for undo. */
static void add_definite(lc_key *k, uint32_t i)
{
    account_add(k, i);
    lift(k, i);
    dbit_set(k, i);
    k->hset ^= k->zob[i];
    k->trail[k->ntrail++] = i;
}

/* Linearize an unknown put (it has no events in the list). */
static void add_unknown(lc_key *k, uint32_t i)
{
    uint32_t b = i - k->nd;

    k->ubits[b / 64u] |= 1ull << (b % 64u);
    k->hset ^= k->zob[i];
    k->trail[k->ntrail++] = i;
    k->pend_puts[k->op[i].vid]--;
}

static int unknown_in_s(const lc_key *k, uint32_t i)
{
    uint32_t b = i - k->nd;

    return (k->ubits[b / 64u] >> (b % 64u)) & 1u;
}

/* Undo additions back to trail length `mark`, newest first. */
static void undo_to(lc_key *k, uint32_t mark)
{
    while (k->ntrail > mark) {
        uint32_t i = k->trail[--k->ntrail];

        k->hset ^= k->zob[i];
        if (i >= k->nd) {
            uint32_t b = i - k->nd;

            k->ubits[b / 64u] &= ~(1ull << (b % 64u));
            k->pend_puts[k->op[i].vid]++;
            continue;
        }
        unlift(k, i);
        dbit_clear(k, i);
        account_remove(k, i);
    }
}

/* (R1): linearize every minimal get that reads the current value.  One
 * pass suffices: lifting a get removes its return event, so the scan just
 * continues past it to calls that have become minimal. */
static void read_closure(lc_key *k)
{
    uint32_t p = k->head, node = k->next[p];

    while (node < k->nd) {
        if (k->op[node].kind == LC_GET && k->op[node].value == k->value) {
            add_definite(k, node);
            node = k->next[p];
        } else {
            p = node;
            node = k->next[node];
        }
    }
}

/* Index of v among the read values, or LC_NONE. */
static uint32_t value_id(const lc_key *k, int64_t v)
{
    uint32_t lo = 0, hi = k->nrv;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (k->rvals[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < k->nrv && k->rvals[lo] == v ? lo : LC_NONE;
}

/* First element of the sorted op-index list [b, e) that is >= lo. */
static const uint32_t *lower_bound_u32(const uint32_t *b, const uint32_t *e,
                                       uint32_t lo)
{
    while (b < e) {
        const uint32_t *mid = b + (e - b) / 2;

        if (*mid < lo)
            b = mid + 1;
        else
            e = mid;
    }
    return b;
}

/* (P1) Called when the register has just stopped holding the value with
 * index vid.  Every get still waiting to read it now needs a put of it
 * that is not yet linearized and was called by the time the get returned
 * (a put placed before the get must not follow it in real time).  It is
 * enough to check the waiting get with the earliest return.  Returns 0 if
 * that fails: the state is dead.  Only ops at or after the first
 * non-full bitset word can be pending, so the scans stay near the
 * frontier. */
static int value_servable(const lc_key *k, uint32_t vid)
{
    uint32_t lo = k->dlo * 64u;
    const uint32_t *g, *ge, *p, *pe;
    int64_t need = LC_INF;

    if (k->pend_reads[vid] == 0)
        return 1;
    if (k->pend_puts[vid] == 0)
        return 0;
    ge = k->gl + k->gl_off[vid + 1];
    for (g = lower_bound_u32(k->gl + k->gl_off[vid], ge, lo); g < ge; g++) {
        if (k->op[*g].call > need)
            break; /* later calls cannot return earlier than need */
        if (!def_in_s(k, *g) && k->op[*g].ret < need)
            need = k->op[*g].ret;
    }
    pe = k->pl + k->pl_off[vid + 1];
    for (p = lower_bound_u32(k->pl + k->pl_off[vid], pe, lo); p < pe; p++) {
        if (k->op[*p].call > need)
            break;
        if (!def_in_s(k, *p))
            return 1;
    }
    for (uint32_t u = k->ul_off[vid]; u < k->ul_off[vid + 1]; u++) {
        if (k->op[u].call > need)
            break;
        if (!unknown_in_s(k, u))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Memo: exact hash set of states.
 * --------------------------------------------------------------------- */

static uint64_t state_hash(const lc_key *k)
{
    return k->hset ^ value_hash(k->value);
}

static int memo_grow_slots(lc_memo *m)
{
    size_t nn = m->nslots * 2;
    uint64_t *ns;

    if (nn > SIZE_MAX / sizeof *ns)
        return -1;
    ns = calloc(nn, sizeof *ns);
    if (ns == NULL)
        return -1;
    for (size_t i = 0; i < m->nslots; i++) {
        uint64_t s = m->slots[i];
        size_t j;

        if (s == 0)
            continue;
        j = m->arena[(uint32_t)s - 1] & (nn - 1);
        while (ns[j] != 0)
            j = (j + 1) & (nn - 1);
        ns[j] = s;
    }
    free(m->slots);
    m->slots = ns;
    m->nslots = nn;
    return 0;
}

static int memo_reserve(lc_memo *m, size_t words)
{
    size_t ncap;
    uint64_t *na;

    if (m->alen + words <= m->acap)
        return 0;
    ncap = m->acap ? m->acap : 4096;
    while (ncap < m->alen + words)
        ncap *= 2;
    if (ncap > SIZE_MAX / sizeof *na)
        return -1;
    na = realloc(m->arena, ncap * sizeof *na);
    if (na == NULL)
        return -1;
    m->arena = na;
    m->acap = ncap;
    return 0;
}

static int record_equal(const lc_key *k, const uint64_t *r, uint64_t h,
                        uint64_t hdr, uint32_t wlen)
{
    if (r[0] != h || r[1] != (uint64_t)k->value || r[2] != hdr)
        return 0;
    if (wlen && memcmp(r + 3, k->dbits + k->dlo, wlen * sizeof *r) != 0)
        return 0;
    if (k->nuw && memcmp(r + 3 + wlen, k->ubits, k->nuw * sizeof *r) != 0)
        return 0;
    return 1;
}

/* Insert the current state.  Returns 1 if new, 0 if already known,
 * 2 if the budget is exhausted, -1 if out of memory. */
static int memo_visit(lc_key *k)
{
    lc_memo *m = &k->memo;
    uint64_t h = state_hash(k);
    uint32_t wlen = k->dhi > k->dlo ? k->dhi - k->dlo : 0;
    uint64_t hdr = ((uint64_t)k->dlo << 32) | wlen;
    size_t words = 3 + (size_t)wlen + k->nuw;
    size_t mask = m->nslots - 1, i = h & mask;
    uint64_t *r;

    for (; m->slots[i] != 0; i = (i + 1) & mask) {
        uint64_t s = m->slots[i];

        if ((s >> 32) == (h >> 32) &&
            record_equal(k, m->arena + (uint32_t)s - 1, h, hdr, wlen))
            return 0;
    }
    /* Offsets are stored +1 in 32 bits; beyond that counts as budget. */
    if (m->count >= k->budget || m->alen + words >= UINT32_MAX)
        return 2;
    if (memo_reserve(m, words) < 0)
        return -1;
    r = m->arena + m->alen;
    r[0] = h;
    r[1] = (uint64_t)k->value;
    r[2] = hdr;
    if (wlen)
        memcpy(r + 3, k->dbits + k->dlo, wlen * sizeof *r);
    if (k->nuw)
        memcpy(r + 3 + wlen, k->ubits, k->nuw * sizeof *r);
    m->slots[i] = (h & 0xFFFFFFFF00000000ull) | (uint64_t)(m->alen + 1);
    m->alen += words;
    m->count++;
    if (m->count * 2 > m->nslots && memo_grow_slots(m) < 0)
        return -1;
    return 1;
}

/* ---------------------------------------------------------------------
 * Search
 * --------------------------------------------------------------------- */

static int push_move(lc_key *k, uint32_t op, uint32_t u)
{
    if (k->nmoves == k->moves_cap) {
        size_t ncap = k->moves_cap ? k->moves_cap * 2 : 64;
        lc_move *nm = realloc(k->moves, ncap * sizeof *nm);

        if (nm == NULL)
            return -1;
        k->moves = nm;
        k->moves_cap = ncap;
    }
    k->moves[k->nmoves].op = op;
    k->moves[k->nmoves].u = u;
    k->moves[k->nmoves].cls = 1;
    k->moves[k->nmoves].due = k->op[op].ret;
    k->nmoves++;
    return 0;
}

static int push_absorb(lc_key *k, uint32_t op)
{
    if (k->nabsorb == k->absorb_cap) {
        size_t ncap = k->absorb_cap ? k->absorb_cap * 2 : 64;
        uint32_t *na = realloc(k->absorb, ncap * sizeof *na);

        if (na == NULL)
            return -1;
        k->absorb = na;
        k->absorb_cap = ncap;
    }
    k->absorb[k->nabsorb++] = op;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static int cmp_move(const void *a, const void *b)
{
    const lc_move *x = a, *y = b;

    if (x->cls != y->cls)
        return x->cls < y->cls ? -1 : 1;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

/* First unknown put of value w not yet in S and called by `by`; ops
 * [nd, nops) are sorted by (value, call). */
static uint32_t find_unknown(const lc_key *k, int64_t w, int64_t by)
{
    uint32_t lo = k->nd, hi = k->nops;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (k->op[mid].value < w)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < k->nops && k->op[lo].value == w; lo++) {
        if (k->op[lo].call > by)
            break;
        if (!unknown_in_s(k, lo))
            return lo;
    }
    return LC_NONE;
}

/* Remember the deepest state for the violation report: the op with the
 * earliest deadline is the one the search could not get past. */
static void note_progress(lc_key *k)
{
    uint32_t lin = k->need - k->must_left, node;

    if (k->stuck_op != LC_NONE && lin <= k->best_lin)
        return;
    for (node = k->next[k->head]; node < k->nd; node = k->next[node])
        ;
    if (node != k->tail) {
        k->best_lin = lin;
        k->stuck_op = node - k->nd;
    }
}

/* (P2) The op y with the earliest deadline must be linearized before any
 * op that is not minimal now, so if y is a get (of w != v: the closure
 * took those), some move of this frame must set the register to w: only
 * the ops minimal now can come before y.  Otherwise the state is dead. */
static int deadline_servable(const lc_key *k, const lc_frame *f)
{
    uint32_t node = k->next[k->head];
    int64_t w;

    while (node < k->nd)
        node = k->next[node];
    if (node == k->tail || k->op[node - k->nd].kind != LC_GET)
        return 1;
    w = k->op[node - k->nd].value;
    for (size_t i = f->moves_off; i < k->nmoves; i++)
        if (k->op[k->moves[i].op].value == w)
            return 1;
    return 0;
}

static int cmp_cand(const void *a, const void *b)
{
    const lc_cand *x = a, *y = b;

    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    if (x->ret != y->ret)
        return x->ret < y->ret ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

/* Order of put moves while they are grouped: by value, then deadline. */
static int cmp_move_value(const lc_move *x, const lc_move *y,
                          const lc_key *k)
{
    int64_t vx = k->op[x->op].value, vy = k->op[y->op].value;

    if (vx != vy)
        return vx < vy ? -1 : 1;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

/* Insertion sort of a frame's put moves by (value, deadline); the lists
 * are short (bounded by concurrency) and qsort has no context pointer. */
static void sort_puts_by_value(lc_key *k, lc_move *m, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        lc_move x = m[i];
        size_t j = i;

        for (; j > 0 && cmp_move_value(&m[j - 1], &x, k) > 0; j--)
            m[j] = m[j - 1];
        m[j] = x;
    }
}

/* Scan the minimal ops, absorbing wasted puts (A*, R2) as they are met:
 * lifting one removes its return event, so calls behind it may become
 * minimal and the same scan reaches them.  Collects the minimal READ puts
 * as moves and the minimal gets into k->cand.  A* stays lifted (the
 * caller puts it back).  Returns 0, or -1 when out of memory. */
static int scan_minimal(lc_key *k, uint32_t *ncand, int64_t *mstar)
{
    uint32_t p = k->head, node = k->next[p];

    *ncand = 0;
    while (node < k->nd) {
        const lc_op *o = &k->op[node];

        if (o->kind == LC_PUT_UNREAD ||
            (o->kind == LC_PUT_READ && !put_is_live(k, node))) {
            if (push_absorb(k, node) < 0)
                return -1;
            lift(k, node);
            node = k->next[p];
            continue;
        }
        if (o->kind == LC_GET)
            k->cand[(*ncand)++] = (lc_cand){o->value, o->ret, node};
        else if (push_move(k, node, LC_NONE) < 0)
            return -1;
        p = node;
        node = k->next[node];
    }
    *mstar = node_time(k, node);
    return 0;
}

/* Compute the moves of the current state (top frame f), see R2-R4:
 *  - one READ put per value, the one with the earliest return: two minimal
 *    puts of the same value are interchangeable, and the earlier deadline
 *    can take the other's place later but not vice versa;
 *  - an (unknown put, get) pair only for values with no minimal READ put:
 *    a definite put of the value can always take the unknown one's place.
 * Moves that feed a waiting read come first, most urgent read first; then
 * the others, earliest deadline first. */
static int expand(lc_key *k, lc_frame *f)
{
    uint32_t ncand;
    int64_t mstar;
    size_t nput, j, w = 0;
    lc_move *m;

    f->absorb_off = k->nabsorb;
    f->moves_off = k->nmoves;
    if (scan_minimal(k, &ncand, &mstar) < 0)
        return -1;
    f->absorb_n = k->nabsorb - f->absorb_off;
    for (size_t i = f->absorb_n; i-- > 0;)
        unlift(k, k->absorb[f->absorb_off + i]);

    /* Keep the earliest-deadline READ put of each value. */
    m = k->moves + f->moves_off;
    nput = k->nmoves - f->moves_off;
    sort_puts_by_value(k, m, nput);
    for (size_t i = 0; i < nput; i++)
        if (w == 0 || k->op[m[i].op].value != k->op[m[w - 1].op].value)
            m[w++] = m[i];
    nput = w;
    k->nmoves = f->moves_off + nput;

    /* Walk the distinct values of minimal gets (earliest return first
     * within a value) alongside the puts, both sorted by value. */
    if (ncand > 1)
        qsort(k->cand, ncand, sizeof *k->cand, cmp_cand);
    j = 0;
    for (uint32_t i = 0; i < ncand; i++) {
        const lc_cand *c = &k->cand[i];
        uint32_t u;

        if (i > 0 && k->cand[i - 1].value == c->value)
            continue;
        while (j < nput && k->op[k->moves[f->moves_off + j].op].value <
                               c->value)
            j++;
        if (j < nput &&
            k->op[k->moves[f->moves_off + j].op].value == c->value) {
            k->moves[f->moves_off + j].cls = 0;
            k->moves[f->moves_off + j].due = c->ret;
            continue;
        }
        u = find_unknown(k, c->value, mstar);
        if (u == LC_NONE)
            continue;
        if (push_move(k, c->op, u) < 0)
            return -1;
        k->moves[k->nmoves - 1].cls = 0;
    }
    f->moves_n = k->nmoves - f->moves_off;
    if (!deadline_servable(k, f))
        f->moves_n = 0;
    if (f->moves_n > 1)
        qsort(k->moves + f->moves_off, f->moves_n, sizeof *k->moves,
              cmp_move);
    f->next_move = 0;
    return 0;
}

static void apply_move(lc_key *k, const lc_frame *f, const lc_move *mv)
{
    for (size_t i = 0; i < f->absorb_n; i++)
        add_definite(k, k->absorb[f->absorb_off + i]);
    if (mv->u != LC_NONE)
        add_unknown(k, mv->u);
    add_definite(k, mv->op);
    k->value = k->op[mv->op].value;
    read_closure(k);
}

/* (P1) after a move: was `before` overwritten with readers left behind
 * that can no longer be served? */
static int value_lost(const lc_key *k, int64_t before)
{
    uint32_t vid;

    if (k->value == before)
        return 0;
    vid = value_id(k, before);
    return vid != LC_NONE && !value_servable(k, vid);
}

static void push_frame(lc_key *k, uint32_t mark, int64_t value_before)
{
    lc_frame *f = &k->frames[k->nframes++];

    memset(f, 0, sizeof *f);
    f->trail_mark = mark;
    f->value_before = value_before;
}

/* Depth-first search from the initial state.  Returns a DHT_LIN_* verdict
 * or -1 when out of memory. */
static int search(lc_key *k)
{
    int r;

    read_closure(k);
    r = memo_visit(k);
    if (r < 0)
        return -1;
    push_frame(k, 0, k->value);
    while (k->nframes > 0) {
        lc_frame *f = &k->frames[k->nframes - 1];

        if (!f->expanded) {
            f->expanded = 1;
            if (k->must_left == 0)
                return DHT_LIN_OK;
            note_progress(k);
            if (expand(k, f) < 0)
                return -1;
        }
        if (f->next_move < f->moves_n) {
            lc_move mv = k->moves[f->moves_off + f->next_move++];
            uint32_t mark = k->ntrail;
            int64_t before = k->value;

            apply_move(k, f, &mv);
            r = value_lost(k, before) ? 0 : memo_visit(k);
            if (r < 0)
                return -1;
            if (r == 2)
                return DHT_LIN_INCONCLUSIVE;
            if (r == 0) { /* dead (P1), or explored before and failed */
                undo_to(k, mark);
                k->value = before;
                continue;
            }
            push_frame(k, mark, before);
        } else { /* every move failed: backtrack */
            k->nmoves = f->moves_off;
            k->nabsorb = f->absorb_off;
            undo_to(k, f->trail_mark);
            k->value = f->value_before;
            k->nframes--;
        }
    }
    return DHT_LIN_VIOLATION;
}

/* ---------------------------------------------------------------------
 * Per-key setup
 * --------------------------------------------------------------------- */

typedef struct {
    int64_t key, call;
    size_t idx;
} lc_ent;

static int cmp_ent(const void *a, const void *b)
{
    const lc_ent *x = a, *y = b;

    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->call != y->call)
        return x->call < y->call ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

typedef struct {
    int64_t t;
    uint32_t node; /* call node (< nd) or return node */
    uint32_t is_ret;
} lc_event;

static int cmp_event(const void *a, const void *b)
{
    const lc_event *x = a, *y = b;

    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->is_ret != y->is_ret) /* calls first: equal times overlap */
        return x->is_ret < y->is_ret ? -1 : 1;
    return (x->node > y->node) - (x->node < y->node);
}

static int cmp_unknown(const void *a, const void *b)
{
    const lc_op *x = a, *y = b;

    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    if (x->call != y->call)
        return x->call < y->call ? -1 : 1;
    return (x->orig > y->orig) - (x->orig < y->orig);
}

/* First index in [lo, hi) of the sorted array a with a[i] > t (hi if
 * none), i.e. lo + the number of elements <= t. */
static size_t upper_bound_i64(const int64_t *a, size_t lo, size_t hi,
                              int64_t t)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (a[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Scratch for refine_unread; all freed by it. */
typedef struct {
    int64_t *pcall, *psufmin; /* definite puts by call; suffix min return */
    uint32_t np;
    uint32_t *goff;           /* gets grouped by vid (CSR), in call order */
    int64_t *gcall, *gpmax;   /* their calls; prefix max of returns */
} lc_refine;

static void refine_free(lc_refine *r)
{
    free(r->pcall);
    free(r->psufmin);
    free(r->goff);
    free(r->gcall);
    free(r->gpmax);
}

/* Is there a get of vid called at or before `by` that returns at or after
 * `from`? */
static int reader_exists(const lc_refine *r, uint32_t vid, int64_t by,
                         int64_t from)
{
    size_t lo = r->goff[vid];
    size_t e = upper_bound_i64(r->gcall, lo, r->goff[vid + 1], by);

    return e > lo && r->gpmax[e - 1] >= from;
}

/* Earliest return of a definite put called after t (LC_INF if none). */
static int64_t next_put_done(const lc_refine *r, int64_t t)
{
    return r->psufmin[upper_bound_i64(r->pcall, 0, r->np, t)];
}

static int refine_alloc(lc_refine *r, const lc_key *k)
{
    memset(r, 0, sizeof *r);
    r->pcall = malloc((k->nd + 1) * sizeof *r->pcall);
    r->psufmin = malloc((k->nd + 2) * sizeof *r->psufmin);
    r->goff = calloc(k->nrv + 2, sizeof *r->goff);
    r->gcall = malloc((k->nd + 1) * sizeof *r->gcall);
    r->gpmax = malloc((k->nd + 1) * sizeof *r->gpmax);
    return r->pcall && r->psufmin && r->goff && r->gcall && r->gpmax ? 0
                                                                    : -1;
}

/* Fill the tables: k->op[0, nd) is in call order, so both the puts and
 * each value's gets come out sorted by call. */
static void refine_fill(lc_refine *r, const lc_key *k)
{
    for (uint32_t i = 0; i < k->nd; i++) {
        if (k->op[i].kind == LC_GET) {
            r->goff[k->op[i].vid + 2]++;
        } else {
            r->psufmin[r->np] = k->op[i].ret;
            r->pcall[r->np++] = k->op[i].call;
        }
    }
    r->psufmin[r->np] = LC_INF;
    for (uint32_t j = r->np; j-- > 0;)
        if (r->psufmin[j + 1] < r->psufmin[j])
            r->psufmin[j] = r->psufmin[j + 1];
    for (uint32_t v = 0; v < k->nrv; v++)
        r->goff[v + 2] += r->goff[v + 1];
    for (uint32_t i = 0; i < k->nd; i++) {
        if (k->op[i].kind == LC_GET) {
            uint32_t at = r->goff[k->op[i].vid + 1]++;

            r->gcall[at] = k->op[i].call;
            r->gpmax[at] = k->op[i].ret;
        }
    }
    for (uint32_t v = 0; v < k->nrv; v++)
        for (uint32_t at = r->goff[v] + 1; at < r->goff[v + 1]; at++)
            if (r->gpmax[at - 1] > r->gpmax[at])
                r->gpmax[at] = r->gpmax[at - 1];
}

/* Sharpen "read" to "can be read FROM this put" (see DESIGN, R2/R3).  A
 * get g can return the value of put p only if p is the last put before g,
 * so g must not precede p (g.ret >= p.call) and no definite put p' may lie
 * strictly between them in real time (p.ret < p'.call, p'.ret < g.call).
 * With next_put_done(t) = earliest return of a definite put called after
 * t, the second condition is g.call <= next_put_done(p.ret).  A definite
 * put with no such get is UNREAD; an unknown put (return +inf) with no get
 * returning at or after its call is dropped. */
static int refine_unread(lc_key *k)
{
    lc_refine r;
    uint32_t keep;

    if (refine_alloc(&r, k) < 0) {
        refine_free(&r);
        return -1;
    }
    refine_fill(&r, k);
    for (uint32_t i = 0; i < k->nd; i++) {
        lc_op *o = &k->op[i];

        if (o->kind != LC_PUT_READ)
            continue;
        o->horizon = next_put_done(&r, o->ret);
        if (!reader_exists(&r, o->vid, o->horizon, o->call)) {
            o->kind = LC_PUT_UNREAD;
            o->vid = LC_NONE;
        }
    }
    keep = k->nd;
    for (uint32_t i = k->nd; i < k->nops; i++)
        if (reader_exists(&r, k->op[i].vid, LC_INF, k->op[i].call))
            k->op[keep++] = k->op[i];
    k->nu = keep - k->nd;
    k->nops = keep;
    refine_free(&r);
    return 0;
}

/* Build k->op from the key's ops (ents sorted by call): drop what carries
 * no information, classify the rest.  Returns 0 or -1 (out of memory). */
static int classify(lc_key *k, const dht_history_op *ops, const lc_ent *ents,
                    size_t cnt)
{
    int64_t *vals = malloc((cnt ? cnt : 1) * sizeof *vals);
    size_t nv = 0, nu = 0;

    k->op = malloc((cnt ? cnt : 1) * sizeof *k->op);
    if (vals == NULL || k->op == NULL) {
        free(vals);
        return -1;
    }
    k->rvals = NULL;
    for (size_t i = 0; i < cnt; i++) {
        const dht_history_op *o = &ops[ents[i].idx];

        if (!o->is_put && o->ok == 1)
            vals[nv++] = o->value;
    }
    qsort(vals, nv, sizeof *vals, cmp_i64);
    k->nrv = 0;
    for (size_t i = 0; i < nv; i++)
        if (i == 0 || vals[i] != vals[i - 1])
            vals[k->nrv++] = vals[i];
    k->rvals = vals; /* owned by k from here on */
    /* Definite ops go in front in call order; unknown puts are collected
     * backwards from the end, then moved behind them. */
    k->nd = 0;
    for (size_t i = 0; i < cnt; i++) {
        const dht_history_op *o = &ops[ents[i].idx];
        uint32_t vid = value_id(k, o->value);
        lc_op x = {o->call, o->ret, o->value, LC_INF, ents[i].idx, LC_GET,
                   vid};
        int read = vid != LC_NONE;

        if (!o->is_put) {
            if (o->ok != 1)
                continue;
        } else if (o->ok == 0) {
            continue;
        } else if (o->ok == -1 || o->ret == DHT_HISTORY_RET_UNKNOWN) {
            if (!read)
                continue; /* never observable: place it "never" */
            x.kind = LC_PUT_UNKNOWN;
            x.ret = LC_INF;
            k->op[cnt - 1 - nu++] = x;
            continue;
        } else {
            x.kind = read ? LC_PUT_READ : LC_PUT_UNREAD;
        }
        k->op[k->nd++] = x;
    }
    memmove(k->op + k->nd, k->op + cnt - nu, nu * sizeof *k->op);
    qsort(k->op + k->nd, nu, sizeof *k->op, cmp_unknown);
    k->nu = (uint32_t)nu;
    k->nops = k->nd + k->nu;
    return refine_unread(k);
}

typedef struct {
    int64_t value, call;
} lc_vc;

static int cmp_vc(const void *a, const void *b)
{
    const lc_vc *x = a, *y = b;

    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return (x->call > y->call) - (x->call < y->call);
}

/* Earliest call of a put of w, or LC_INF if none (vc sorted by value,call) */
static int64_t first_put_call(const lc_vc *vc, size_t n, int64_t w)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (vc[mid].value < w)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && vc[lo].value == w ? vc[lo].call : LC_INF;
}

/* Why can no put serve get g (value w != 0)?  Looks at all recorded puts
 * of the key, including the dropped ones, to say it in user terms. */
static const char *explain_unservable(const dht_history_op *ops,
                                      const lc_ent *ents, size_t cnt,
                                      const lc_op *g)
{
    int any = 0, applied = 0, early = 0;

    for (size_t i = 0; i < cnt; i++) {
        const dht_history_op *o = &ops[ents[i].idx];

        if (!o->is_put || o->value != g->value)
            continue;
        any = 1;
        if (o->ok == 0)
            continue;
        applied = 1;
        if (o->call <= g->ret)
            early = 1;
    }
    if (!any)
        return "read of a value that was never written";
    if (!applied)
        return "read of a value whose only writes failed (ok=false)";
    if (!early)
        return "read of a value that was written only after the read "
               "returned";
    return "stale read: every write of the value was overwritten before "
           "the read began";
}

/* Fast failures (see DESIGN).  Returns 1 and fills out if a read is
 * impossible, 0 if none is, -1 if out of memory.  ops/ents/cnt are the
 * key's recorded ops, used only to word the reason. */
static int precheck(const lc_key *k, const dht_history_op *ops,
                    const lc_ent *ents, size_t cnt, lc_outcome *out)
{
    lc_vc *vc = malloc((k->nops ? k->nops : 1) * sizeof *vc);
    size_t n = 0;
    int64_t first_done = LC_INF; /* earliest return of a definite put */

    if (vc == NULL)
        return -1;
    for (uint32_t i = 0; i < k->nops; i++) {
        const lc_op *o = &k->op[i];

        if (o->kind == LC_GET)
            continue;
        if (o->kind != LC_PUT_UNKNOWN && o->ret < first_done)
            first_done = o->ret;
        if (o->kind != LC_PUT_UNREAD) {
            vc[n].value = o->value;
            vc[n++].call = o->call;
        }
    }
    qsort(vc, n, sizeof *vc, cmp_vc);
    for (uint32_t i = 0; i < k->nd; i++) {
        const lc_op *g = &k->op[i];
        int64_t c;

        if (g->kind != LC_GET)
            continue;
        c = first_put_call(vc, n, g->value);
        if (g->value != 0 && c > g->ret)
            out->reason = explain_unservable(ops, ents, cnt, g);
        else if (g->value == 0 && c > g->ret && first_done < g->call)
            out->reason = "read of the initial value 0 after a write had "
                          "completed";
        else
            continue;
        out->bad_op = g->orig;
        free(vc);
        return 1;
    }
    free(vc);
    return 0;
}

/* Group op indices by value id: [*off_out][vid] .. [vid+1] in *list_out,
 * in index (= call) order, for ops of the given kind. */
static int group_by_value(const lc_key *k, int kind, uint32_t **list_out,
                          uint32_t **off_out)
{
    uint32_t *off = calloc(k->nrv + 2, sizeof *off);
    uint32_t *list = malloc((k->nd + 1) * sizeof *list);

    *list_out = list;
    *off_out = off;
    if (off == NULL || list == NULL)
        return -1;
    for (uint32_t i = 0; i < k->nd; i++)
        if (k->op[i].kind == kind)
            off[k->op[i].vid + 2]++;
    for (uint32_t v = 0; v < k->nrv; v++)
        off[v + 2] += off[v + 1];
    for (uint32_t i = 0; i < k->nd; i++)
        if (k->op[i].kind == kind)
            list[off[k->op[i].vid + 1]++] = i;
    return 0; /* off[vid] .. off[vid + 1] now delimit value vid */
}

static int build_value_lists(lc_key *k)
{
    if (group_by_value(k, LC_GET, &k->gl, &k->gl_off) < 0 ||
        group_by_value(k, LC_PUT_READ, &k->pl, &k->pl_off) < 0)
        return -1;
    k->ul_off = calloc(k->nrv + 1, sizeof *k->ul_off);
    if (k->ul_off == NULL)
        return -1;
    /* Unknown puts are sorted by value, so each value is a range. */
    for (uint32_t v = 0, u = k->nd; v <= k->nrv; v++) {
        while (u < k->nops && k->op[u].vid < v)
            u++;
        k->ul_off[v] = u;
    }
    return 0;
}

/* First position in the op-index list [b, e) (call order) whose op is
 * called at or after t. */
static const uint32_t *first_called_from(const lc_key *k, const uint32_t *b,
                                         const uint32_t *e, int64_t t)
{
    while (b < e) {
        const uint32_t *mid = b + (e - b) / 2;

        if (k->op[*mid].call < t)
            b = mid + 1;
        else
            e = mid;
    }
    return b;
}

/* Call fn(k, g, q) for every get g that can read from READ put q: same
 * value, g.ret >= q.call and g.call <= q.horizon.  Gets called before q
 * are only looked at as far back as the longest get can reach. */
static void for_each_compatible(lc_key *k, uint32_t q, int64_t maxdur,
                                void (*fn)(lc_key *, uint32_t, uint32_t))
{
    const lc_op *o = &k->op[q];
    const uint32_t *b = k->gl + k->gl_off[o->vid];
    const uint32_t *e = k->gl + k->gl_off[o->vid + 1];
    const uint32_t *at = first_called_from(k, b, e, o->call);
    int64_t lower = o->call < INT64_MIN + maxdur ? INT64_MIN
                                                  : o->call - maxdur;

    for (const uint32_t *g = at; g < e && k->op[*g].call <= o->horizon; g++)
        fn(k, *g, q);
    for (const uint32_t *g = at; g > b && k->op[g[-1]].call >= lower; g--)
        if (k->op[g[-1]].ret >= o->call)
            fn(k, g[-1], q);
}

static void compat_count(lc_key *k, uint32_t g, uint32_t q)
{
    k->cp_off[g + 2]++;
    k->live[q]++;
}

static void compat_fill(lc_key *k, uint32_t g, uint32_t q)
{
    k->cp[k->cp_off[g + 1]++] = q;
}

/* Build cp/cp_off/live (see lc_key) with a counting sort by get. */
static int build_compat(lc_key *k)
{
    int64_t maxdur = 0;
    size_t total = 0;

    k->cp_off = calloc((size_t)k->nd + 2, sizeof *k->cp_off);
    k->live = calloc((size_t)k->nd + 1, sizeof *k->live);
    if (k->cp_off == NULL || k->live == NULL)
        return -1;
    for (uint32_t i = 0; i < k->nd; i++) {
        const lc_op *o = &k->op[i];

        if (o->kind != LC_GET)
            continue;
        if (o->ret == LC_INF || (o->call < 0 && o->ret > INT64_MAX + o->call))
            maxdur = LC_INF;
        else if (o->ret - o->call > maxdur)
            maxdur = o->ret - o->call;
    }
    for (uint32_t q = 0; q < k->nd; q++)
        if (k->op[q].kind == LC_PUT_READ)
            for_each_compatible(k, q, maxdur, compat_count);
    for (uint32_t g = 0; g < k->nd; g++)
        total += k->cp_off[g + 2];
    if (total >= UINT32_MAX)
        return -1;
    k->cp = malloc((total + 1) * sizeof *k->cp);
    if (k->cp == NULL)
        return -1;
    for (uint32_t g = 0; g < k->nd; g++)
        k->cp_off[g + 2] += k->cp_off[g + 1];
    for (uint32_t q = 0; q < k->nd; q++)
        if (k->op[q].kind == LC_PUT_READ)
            for_each_compatible(k, q, maxdur, compat_fill);
    return 0;
}

/* Allocate and initialise the search structures for k->op. */
static int search_init(lc_key *k, uint64_t budget)
{
    uint32_t nd = k->nd, nev = 2 * nd;
    lc_event *ev;

    k->head = nev;
    k->tail = nev + 1;
    k->ndw = (nd + 63) / 64;
    k->nuw = (k->nu + 63) / 64;
    k->next = malloc((nev + 2) * sizeof *k->next);
    k->prev = malloc((nev + 2) * sizeof *k->prev);
    k->zob = malloc((k->nops + 1) * sizeof *k->zob);
    k->dbits = calloc(k->ndw + 1, sizeof *k->dbits);
    k->ubits = k->nuw ? calloc(k->nuw, sizeof *k->ubits) : NULL;
    k->trail = malloc((k->nops + 1) * sizeof *k->trail);
    k->frames = malloc((nd + 1) * sizeof *k->frames);
    k->cand = malloc((nd + 1) * sizeof *k->cand);
    k->moves_cap = k->absorb_cap = 64; /* grown on demand; never NULL */
    k->moves = malloc(k->moves_cap * sizeof *k->moves);
    k->absorb = malloc(k->absorb_cap * sizeof *k->absorb);
    k->pend_reads = calloc(k->nrv + 1, sizeof *k->pend_reads);
    k->pend_puts = calloc(k->nrv + 1, sizeof *k->pend_puts);
    k->memo.nslots = 1024;
    k->memo.slots = calloc(k->memo.nslots, sizeof *k->memo.slots);
    ev = malloc((nev + 1) * sizeof *ev);
    if (!k->next || !k->prev || !k->zob || !k->dbits ||
        (k->nuw && !k->ubits) || !k->trail || !k->frames || !k->cand || !k->moves || !k->absorb ||
        !k->pend_reads || !k->pend_puts || !k->memo.slots ||
        !ev) {
        free(ev);
        return -1;
    }
    for (uint32_t i = 0; i < k->nops; i++)
        k->zob[i] = splitmix64(0xC0FFEEull + (uint64_t)i * 0x2545F491ull);
    for (uint32_t i = 0; i < nd; i++) {
        ev[2 * i] = (lc_event){k->op[i].call, i, 0};
        ev[2 * i + 1] = (lc_event){k->op[i].ret, nd + i, 1};
    }
    qsort(ev, nev, sizeof *ev, cmp_event);
    for (uint32_t i = 0, prv = k->head; i <= nev; i++) {
        uint32_t cur = i < nev ? ev[i].node : k->tail;

        k->next[prv] = cur;
        k->prev[cur] = prv;
        prv = cur;
    }
    free(ev);
    k->need = 0;
    for (uint32_t i = 0; i < nd; i++)
        if (k->op[i].kind != LC_PUT_UNREAD)
            k->need++;
    for (uint32_t i = 0; i < k->nops; i++) {
        if (k->op[i].kind == LC_GET)
            k->pend_reads[k->op[i].vid]++;
        else if (k->op[i].kind != LC_PUT_UNREAD)
            k->pend_puts[k->op[i].vid]++;
    }
    if (build_value_lists(k) < 0 || build_compat(k) < 0)
        return -1;
    k->must_left = k->need;
    k->value = 0;
    k->budget = budget;
    k->stuck_op = LC_NONE;
    return 0;
}

/* Check one key: ents[0..cnt) are its ops sorted by call. */
static void key_check(const dht_history_op *ops, const lc_ent *ents, size_t cnt,
                      uint64_t budget, lc_outcome *out)
{
    lc_key k;
    int r;

    memset(&k, 0, sizeof k);
    memset(out, 0, sizeof *out);
    out->bad_op = SIZE_MAX;
    out->verdict = -1;
    out->reason = "out of memory";
    if (cnt > UINT32_MAX / 4 || classify(&k, ops, ents, cnt) < 0)
        goto done;
    out->checked = k.nops;
    r = precheck(&k, ops, ents, cnt, out);
    if (r < 0)
        goto done;
    if (r == 1) {
        out->verdict = DHT_LIN_VIOLATION;
        goto done;
    }
    if (search_init(&k, budget) < 0)
        goto done;
    r = search(&k);
    out->states = k.memo.count;
    out->lin_best = k.best_lin;
    out->lin_need = k.need;
    if (r < 0)
        goto done;
    out->verdict = r;
    if (r != DHT_LIN_OK && k.stuck_op != LC_NONE)
        out->bad_op = k.op[k.stuck_op].orig;
    if (r == DHT_LIN_VIOLATION)
        out->reason = "no linearization exists";
    else if (r == DHT_LIN_INCONCLUSIVE)
        out->reason = "search budget exhausted";
    else
        out->reason = NULL;
done:
    lc_key_free(&k);
}

/* ======================================================================
 * Public checker entry points
 * ====================================================================== */

/* Fold one key's outcome into the overall result. */
static int record_key(dht_lincheck_result *res, const lc_ent *ents,
                      size_t cnt, const lc_outcome *o)
{
    int is_new_worst;

    res->ops_checked += o->checked;
    res->states_explored += o->states;
    if (o->verdict == DHT_LIN_INCONCLUSIVE || o->verdict < 0) {
        res->keys_inconclusive++;
        if (res->keys_failed == 0 && res->keys_inconclusive == 1) {
            res->key = ents[0].key;
            res->key_ops = cnt;
            res->reason = o->reason;
            res->bad_op = o->bad_op;
            res->lin_best = o->lin_best;
            res->lin_need = o->lin_need;
        }
        return 0;
    }
    if (o->verdict != DHT_LIN_VIOLATION)
        return 0;
    /* Keys arrive in ascending order, so '<' keeps the smallest key on
     * ties. */
    is_new_worst = res->keys_failed == 0 || cnt < res->key_ops;
    res->keys_failed++;
    if (!is_new_worst)
        return 0;
    free(res->sub);
    res->sub = malloc(cnt * sizeof *res->sub);
    res->nsub = 0;
    if (res->sub == NULL)
        return -1;
    for (size_t i = 0; i < cnt; i++)
        res->sub[i] = ents[i].idx;
    res->nsub = cnt;
    res->key = ents[0].key;
    res->key_ops = cnt;
    res->reason = o->reason;
    res->bad_op = o->bad_op;
    res->lin_best = o->lin_best;
    res->lin_need = o->lin_need;
    return 0;
}

int dht_lincheck_budget(const dht_history_op *ops, size_t n, uint64_t budget,
                        dht_lincheck_result *res)
{
    lc_ent *ents; /* all ops sorted by (key, call); freed below */
    int oom = 0;

    memset(res, 0, sizeof *res);
    res->budget = budget ? budget : DHT_LINCHECK_DEFAULT_BUDGET;
    res->ops_total = n;
    res->bad_op = SIZE_MAX;
    res->verdict = DHT_LIN_OK;
    if (n == 0)
        return DHT_LIN_OK;
    ents = n <= SIZE_MAX / sizeof *ents ? malloc(n * sizeof *ents) : NULL;
    if (ents == NULL) {
        oom = 1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ents[i].key = ops[i].key;
        ents[i].call = ops[i].call;
        ents[i].idx = i;
    }
    qsort(ents, n, sizeof *ents, cmp_ent);
    for (size_t a = 0, b; a < n; a = b) {
        lc_outcome o;

        for (b = a + 1; b < n && ents[b].key == ents[a].key; b++)
            ;
        res->keys_checked++;
        key_check(ops, ents + a, b - a, res->budget, &o);
        if (o.verdict < 0)
            oom = 1;
        if (record_key(res, ents + a, b - a, &o) < 0)
            oom = 1;
    }
    free(ents);
out:
    if (res->keys_failed > 0 && res->sub != NULL)
        res->verdict = DHT_LIN_VIOLATION;
    else if (res->keys_inconclusive > 0 || oom)
        res->verdict = DHT_LIN_INCONCLUSIVE;
    if (oom && res->verdict != DHT_LIN_VIOLATION) {
        res->reason = "out of memory";
        return -1;
    }
    return (int)res->verdict;
}

int dht_lincheck(const dht_history_op *ops, size_t n, dht_lincheck_result *res)
{
    return dht_lincheck_budget(ops, n, 0, res);
}

void dht_lincheck_result_free(dht_lincheck_result *res)
{
    if (res == NULL)
        return;
    free(res->sub);
    res->sub = NULL;
    res->nsub = 0;
}

const char *dht_lincheck_verdict_str(int verdict)
{
    switch (verdict) {
    case DHT_LIN_OK: return "linearizable";
    case DHT_LIN_VIOLATION: return "NOT linearizable";
    case DHT_LIN_INCONCLUSIVE: return "inconclusive";
    default: return "error";
    }
}

/* ======================================================================
 * Printing
 * ====================================================================== */

/* Format t - t0 nanoseconds as milliseconds with 3 decimals.  Unsigned
 * arithmetic keeps this exact for any pair of int64 times. */
static const char *fmt_ms(char *buf, size_t len, int64_t t, int64_t t0)
{
    int neg = t < t0;
    uint64_t d = neg ? (uint64_t)t0 - (uint64_t)t : (uint64_t)t - (uint64_t)t0;

    snprintf(buf, len, "%s%llu.%03llu", neg ? "-" : "",
             (unsigned long long)(d / 1000000u),
             (unsigned long long)(d / 1000u % 1000u));
    return buf;
}

static const char *outcome_str(const dht_history_op *o)
{
    if (o->ok == 0)
        return o->is_put ? "FAILED (not applied)" : "FAILED (ignored)";
    if (o->ok == -1)
        return o->is_put ? "UNKNOWN" : "UNKNOWN (ignored)";
    if (o->is_put && o->ret == DHT_HISTORY_RET_UNKNOWN)
        return "ok, return unknown";
    return "ok";
}

void dht_history_print(FILE *out, const dht_history_op *ops, const size_t *idx,
                       size_t nidx)
{
    int64_t t0 = INT64_MAX;

    for (size_t i = 0; i < nidx; i++)
        if (ops[idx[i]].call < t0)
            t0 = ops[idx[i]].call;
    fprintf(out, "  %6s %8s %3s %20s %13s %13s  %s\n", "#", "client", "op",
            "value", "call ms", "return ms", "outcome");
    for (size_t i = 0; i < nidx; i++) {
        const dht_history_op *o = &ops[idx[i]];
        char cbuf[32], rbuf[32];

        fprintf(out, "  %6zu %8lld %3s %20lld %13s %13s  %s\n", idx[i],
                (long long)o->client, o->is_put ? "put" : "get",
                (long long)o->value, fmt_ms(cbuf, sizeof cbuf, o->call, t0),
                o->ret == DHT_HISTORY_RET_UNKNOWN
                    ? "?"
                    : fmt_ms(rbuf, sizeof rbuf, o->ret, t0),
                outcome_str(o));
    }
}
