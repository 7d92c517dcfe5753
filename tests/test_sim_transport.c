/* The simulator's transport (lib/sim/sim_transport.c) for membership
 * changes: control messages to a bound node's service with the network's
 * delays, loss, cuts and crashes; the bound node's check_config at
 * delivery; add_peer over the slots' synthetic addresses.  Deterministic
 * from the seed, like everything the simulator does. */
#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"
#include "sim/sim_transport.h"
#include "test.h"

#define MS DHT_NS_PER_MS

/* ---- a bound node's service ------------------------------------------------ */

typedef struct {
    int batches, controls, checks;
    uint64_t last_config, last_view; /* of the last request served */
    /* "hold": answered when the test says (held_*) */
    dht_control_done held_done;
    void *held_arg;
} node;

static int check(void *arg, uint64_t config, uint64_t view, char *why, size_t len)
{
    node *n = arg;
    n->checks++;
    if (view != 3)
        return 0;
    snprintf(why, len, "stale view %llu (config %llx)", (unsigned long long)view,
             (unsigned long long)config);
    return 1;
}

static void batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n, void (*done)(void *),
                  void *done_arg)
{
    node *nd = arg;
    nd->batches++;
    for (size_t i = 0; i < n; i++) {
        nd->last_config = reqs[i].config;
        nd->last_view = reqs[i].view;
        reps[i].type = reqs[i].type;
        reps[i].ok = true;
        reps[i].value = reqs[i].key * 2;
    }
    done(done_arg);
}

static void control(void *arg, const uint8_t *req, size_t len, dht_control_done done,
                    void *done_arg)
{
    node *n = arg;
    n->controls++;
    if (len == 3 && memcmp(req, "err", 3) == 0) {
        done(done_arg, NULL, 0, "not now");
        return;
    }
    if (len == 4 && memcmp(req, "hold", 4) == 0) {
        n->held_done = done;
        n->held_arg = done_arg;
        return;
    }
    uint8_t rev[64];
    CHECK(len <= sizeof rev);
    for (size_t i = 0; i < len; i++)
        rev[i] = req[len - 1 - i];
    done(done_arg, rev, len, NULL);
}

/* ---- what a caller saw ------------------------------------------------------ */

typedef struct {
    int calls;
    dht_status st;
    char rep[64];
    size_t len;
    bool rep_null;
    char error[256];
    int64_t at;
    int64_t value;
    dht_transport *t;
    sim_world *w;
} seen;

static void on_control(void *arg, dht_status st, const uint8_t *rep, size_t len)
{
    seen *s = arg;
    s->calls++;
    s->st = st;
    s->rep_null = rep == NULL;
    s->len = len;
    if (rep != NULL && len <= sizeof s->rep)
        memcpy(s->rep, rep, len);
    snprintf(s->error, sizeof s->error, "%s", s->t->ops->last_error(s->t));
    s->at = sim_now(s->w);
}

static void on_reply(void *arg, dht_status st, const dht_msg *rep)
{
    seen *s = arg;
    s->calls++;
    s->st = st;
    s->value = rep ? rep->value : -1;
    snprintf(s->error, sizeof s->error, "%s", s->t->ops->last_error(s->t));
    s->at = sim_now(s->w);
}

static sim_world *world(uint64_t seed, node *nd, dht_service *svc)
{
    sim_config cfg = {.seed = seed, .replicas = 3, .endpoints = 1};
    sim_world *w = sim_new(&cfg);
    CHECK(w != NULL);
    *svc = (dht_service){.replica_batch = batch, .check_config = check, .control = control,
                         .arg = nd};
    sim_bind(w, 1, svc); /* slot 0 and 2 stay bare replicas */
    return w;
}

static void ctl(sim_world *w, int peer, const char *body, int64_t timeout, seen *s)
{
    dht_transport *t = sim_endpoint(w, 0);
    *s = (seen){.t = t, .w = w};
    CHECK(dht_transport_control(t, peer, (const uint8_t *)body, strlen(body),
                                sim_now(w) + timeout, on_control, s) == 0);
    CHECK_EQ(s->calls, 0); /* never from inside control() */
}

static void test_control_delivery(void)
{
    node nd = {0};
    dht_service svc;
    sim_world *w = world(1, &nd, &svc);
    seen a, b, c, d;
    int64_t t0 = sim_now(w);
    ctl(w, 1, "hello", 100 * MS, &a);
    ctl(w, 1, "err", 100 * MS, &b);
    ctl(w, 0, "hello", 100 * MS, &c); /* a bare replica: no control service */
    ctl(w, 1, "", 100 * MS, &d);
    sim_run(w);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.st, DHT_OK);
    CHECK(a.len == 5 && memcmp(a.rep, "olleh", 5) == 0);
    CHECK(a.at > t0 && a.at <= t0 + 4 * MS); /* two one-way delays */
    CHECK(b.st == DHT_ERR_REMOTE && b.rep_null);
    CHECK(strcmp(b.error, "FAILED_PRECONDITION: not now") == 0);
    CHECK(c.st == DHT_ERR_REMOTE && strstr(c.error, "UNIMPLEMENTED") != NULL);
    CHECK(d.st == DHT_OK && d.len == 0 && !d.rep_null);
    CHECK_EQ(nd.controls, 3);
    CHECK(sim_endpoint(w, 0)->ops->last_error(sim_endpoint(w, 0))[0] == '\0');

    /* Out of range, or too large: not sent, no callback. */
    dht_transport *t = sim_endpoint(w, 0);
    CHECK(dht_transport_control(t, 3, (const uint8_t *)"x", 1, sim_now(w) + MS, on_control,
                                &a) != 0);
    CHECK(dht_transport_control(t, 1, (const uint8_t *)"x", DHT_CONTROL_MAX + 1,
                                sim_now(w) + MS, on_control, &a) != 0);

    /* A cut link: the caller times out at its deadline, the node sees
     * nothing. */
    sim_cut(w, 0, 1, true);
    t0 = sim_now(w);
    ctl(w, 1, "hello", 50 * MS, &a);
    sim_run(w);
    CHECK(a.st == DHT_ERR_TIMEOUT && a.at == t0 + 50 * MS);
    CHECK_EQ(nd.controls, 3);
    sim_heal_all(w);

    /* A crashed node refuses at once (UNAVAILABLE); one that dies while its
     * service holds the request never answers: a timeout. */
    ctl(w, 1, "hold", 50 * MS, &a);
    sim_run_until(w, sim_now(w) + 10 * MS);
    CHECK(nd.held_done != NULL && a.calls == 0);
    sim_crash(w, 1);
    nd.held_done(nd.held_arg, (const uint8_t *)"late", 4, NULL);
    sim_run(w);
    CHECK_EQ(a.st, DHT_ERR_TIMEOUT);
    ctl(w, 1, "hello", 50 * MS, &a);
    sim_run(w);
    CHECK_EQ(a.st, DHT_ERR_UNAVAILABLE);
    sim_restart_bound(w, 1, &svc);
    ctl(w, 1, "abc", 50 * MS, &a);
    sim_run(w);
    CHECK(a.st == DHT_OK && memcmp(a.rep, "cba", 3) == 0);

    /* A paused node: the caller times out; the node serves it on resume. */
    sim_pause(w, 1);
    int before = nd.controls;
    ctl(w, 1, "abc", 20 * MS, &a);
    sim_run(w);
    CHECK_EQ(a.st, DHT_ERR_TIMEOUT);
    CHECK_EQ(nd.controls, before);
    sim_resume(w, 1);
    sim_run(w);
    CHECK_EQ(nd.controls, before + 1);
    CHECK_EQ(a.calls, 1);
    sim_free(w);
}

static void send_read(sim_world *w, int peer, uint64_t config, uint64_t view, seen *s)
{
    dht_transport *t = sim_endpoint(w, 0);
    *s = (seen){.t = t, .w = w};
    dht_msg m = {.type = DHT_MSG_READ, .key = 21, .config = config, .view = view};
    CHECK(dht_transport_send(t, peer, &m, sim_now(w) + 100 * MS, on_reply, s) == 0);
}

static void test_check_config_at_delivery(void)
{
    node nd = {0};
    dht_service svc;
    sim_world *w = world(2, &nd, &svc);
    seen a, b, c;
    send_read(w, 1, 0xabc, 4, &a);
    send_read(w, 1, 0xabc, 3, &b);
    send_read(w, 0, 0xabc, 3, &c); /* a bare replica checks nothing */
    sim_run(w);
    CHECK(a.st == DHT_OK && a.value == 42);
    CHECK(nd.last_config == 0xabc && nd.last_view == 4); /* delivered as sent */
    CHECK_EQ(b.st, DHT_ERR_REMOTE);
    CHECK(strcmp(b.error, "FAILED_PRECONDITION: stale view 3 (config abc)") == 0);
    CHECK_EQ(c.st, DHT_OK);
    CHECK_EQ(nd.batches, 1);
    CHECK_EQ(nd.checks, 2);
    /* A refusal travels back like a reply: the link cut while the request
     * was on its way, it is lost, and the caller times out. */
    send_read(w, 1, 0xabc, 3, &b);
    sim_run_until(w, sim_now(w) + 50 * 1000); /* before the smallest delay */
    sim_cut(w, 0, 1, true);
    sim_run(w);
    CHECK_EQ(b.st, DHT_ERR_TIMEOUT);
    CHECK_EQ(nd.checks, 3);
    sim_free(w);
}

static void test_add_peer_maps_synthetic_addresses(void)
{
    sim_config cfg = {.seed = 3, .replicas = 3, .endpoints = 1};
    sim_world *w = sim_new(&cfg);
    dht_transport *t = sim_endpoint(w, 0);
    CHECK_EQ(t->npeers, 3);
    t->npeers = 1; /* as a node started with a one-member list would see it */
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:1"), 0);
    CHECK_EQ(t->npeers, 1);
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:3"), 2);
    CHECK_EQ(t->npeers, 3);
    CHECK_EQ(dht_transport_add_peer(t, "localhost:2"), 1); /* normalised */
    CHECK_EQ(t->npeers, 3);
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:4"), -1); /* no such slot */
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:0"), -1);
    CHECK_EQ(dht_transport_add_peer(t, "10.0.0.1:1"), -1);
    CHECK_EQ(dht_transport_add_peer(t, "nonsense"), -1);
    sim_free(w);

    /* Another numbering (sim_cluster's nodes are 127.0.0.1:7001..). */
    cfg.first_port = 7001;
    w = sim_new(&cfg);
    t = sim_endpoint(w, 0);
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:7002"), 1);
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:2"), -1);
    sim_free(w);
}

/* The same seed, the same events: control traffic included. */
static void run_traced(uint64_t seed, char **out)
{
    node nd = {0};
    dht_service svc;
    sim_world *w = world(seed, &nd, &svc);
    sim_set_loss(w, 0.2);
    sim_trace_enable(w, true);
    static seen s[40];
    for (int i = 0; i < 20; i++) {
        ctl(w, 1 - (i % 3 == 0), i % 5 == 0 ? "err" : "ping", 30 * MS, &s[i]);
        send_read(w, 1, 7, (uint64_t)(i % 4), &s[20 + i]);
    }
    sim_run(w);
    for (int i = 0; i < 40; i++)
        CHECK_EQ(s[i].calls, 1);
    *out = strdup(sim_trace_text(w));
    sim_free(w);
}

static void test_deterministic(void)
{
    char *a, *b, *c;
    run_traced(9, &a);
    run_traced(9, &b);
    run_traced(10, &c);
    CHECK(strcmp(a, b) == 0);
    CHECK(strcmp(a, c) != 0);
    CHECK(strstr(a, "control") != NULL);
    free(a);
    free(b);
    free(c);
}

static const test_case tests[] = {
    {"control_delivery", test_control_delivery},
    {"check_config_at_delivery", test_check_config_at_delivery},
    {"add_peer_maps_synthetic_addresses", test_add_peer_maps_synthetic_addresses},
    {"deterministic", test_deterministic},
    {0, 0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
