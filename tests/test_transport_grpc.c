/* Tests of the gRPC transport's own guarantees, against real sockets on
 * 127.0.0.1: every callback arrives by the request's deadline, even when a
 * peer accepts connections but never answers (a stalled process, a
 * partition that drops packets) and requests pile up behind the batches
 * already on the wire.  Regression test for the fault harness's finding
 * that calls on the minority side returned up to 1.5 s after their
 * deadline. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "net/codec.h"
#include "protocol/coordinator.h"
#include "protocol/membership.h"
#include "test.h"
#include "net/transport_grpc.h"
#include "base/util.h"

#define MS DHT_NS_PER_MS

static atomic_long answered, late_ns_max, not_timeout;

typedef struct {
    int64_t deadline;
} item;

static void on_reply(void *arg, dht_status st, const dht_msg *rep)
{
    (void)rep;
    item *it = arg;
    int64_t late = dht_now_ns() - it->deadline;
    long cur = atomic_load(&late_ns_max);
    while (late > cur && !atomic_compare_exchange_weak(&late_ns_max, &cur, late)) {
    }
    if (st != DHT_ERR_TIMEOUT)
        atomic_fetch_add(&not_timeout, 1);
    atomic_fetch_add(&answered, 1);
}

/* A TCP listener that never accepts: the kernel completes handshakes into
 * the backlog, and nothing ever speaks HTTP/2 back. */
static int blackhole(char *addr, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(fd, 64) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(addr, len, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

static void test_deadlines_hold_against_a_silent_peer(void)
{
    char addr[64];
    int fd = blackhole(addr, sizeof addr);
    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 2};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);

    /* 30,000 requests a second for one second, each with a 200 ms deadline:
     * far more than the batches in flight can carry, so most wait in the
     * queue while the batches ahead of them time out. */
    enum { ROUNDS = 100, PER_ROUND = 300 };
    item *items = calloc(ROUNDS * PER_ROUND, sizeof *items);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < PER_ROUND; i++) {
            item *it = &items[r * PER_ROUND + i];
            it->deadline = dht_now_ns() + 200 * MS;
            dht_msg m = {.type = DHT_MSG_LOCK, .key = i, .owner = 1, .lease_ms = 10};
            CHECK(dht_transport_send(t, 0, &m, it->deadline, on_reply, it) == 0);
        }
        usleep(10000);
    }
    for (int i = 0; i < 500 && atomic_load(&answered) < ROUNDS * PER_ROUND; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&answered), ROUNDS * PER_ROUND);
    CHECK_EQ(atomic_load(&not_timeout), 0);
    /* Bounded by the queue sweep (20 ms) plus scheduling noise; before the
     * sweep, items waited for whole batch timeouts and came back hundreds
     * of milliseconds late. */
    fprintf(stderr, "latest callback: %.1f ms after its deadline\n",
            (double)atomic_load(&late_ns_max) / 1e6);
    CHECK(atomic_load(&late_ns_max) < 150 * MS);
    dht_grpc_stop(g);
    free(items);
    close(fd);
}

static void test_unknown_peer_fails_fast(void)
{
    /* Nothing listens there: UNAVAILABLE well before the deadline. */
    const char *peers[1] = {"127.0.0.1:1"};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    item it = {.deadline = dht_now_ns() + 5000 * MS};
    atomic_store(&answered, 0);
    atomic_store(&not_timeout, 0);
    dht_msg m = {.type = DHT_MSG_READ, .key = 1};
    CHECK(dht_transport_send(dht_grpc_transport(g), 0, &m, it.deadline, on_reply, &it) == 0);
    for (int i = 0; i < 400 && atomic_load(&answered) == 0; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&answered), 1);
    CHECK_EQ(atomic_load(&not_timeout), 1); /* UNAVAILABLE, not a timeout */
    dht_grpc_stop(g);
}

typedef struct {
    int64_t deadline;
    atomic_int *done;
    atomic_long *late_max;
    atomic_int *wrong;
} put_wait;

static void on_put(void *arg, dht_put_outcome o, const char *reason)
{
    (void)reason;
    put_wait *w = arg;
    int64_t late = dht_now_ns() - w->deadline;
    long cur = atomic_load(w->late_max);
    while (late > cur && !atomic_compare_exchange_weak(w->late_max, &cur, late)) {
    }
    if (o != DHT_PUT_NOT_APPLIED)
        atomic_fetch_add(w->wrong, 1);
    atomic_fetch_add(w->done, 1);
}

static void test_coordinator_ends_at_deadline_without_quorum(void)
{
    /* Three replicas that never answer: every put must end as "not
     * applied" at its deadline, not when the network finally gives up. */
    char addrs[3][64];
    int fds[3];
    const char *peers[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = blackhole(addrs[i], sizeof addrs[i]);
        peers[i] = addrs[i];
    }
    dht_grpc_config cfg = {.peers = peers, .npeers = 3, .workers = 2};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    char list[256];
    snprintf(list, sizeof list, "%s,%s,%s", addrs[0], addrs[1], addrs[2]);
    dht_membership *m;
    CHECK(dht_membership_new(list, NULL, 0, &m, err, sizeof err) == 0);
    dht_coord_config cc;
    dht_coord_config_default(&cc);
    cc.members = m;
    cc.deadline_ns = 300 * MS;
    cc.rpc_timeout_ns = 5000 * MS; /* replica calls alone would outlast the deadline */
    dht_coord *c = dht_coord_new(dht_grpc_transport(g), &cc);
    CHECK(c != NULL);
    enum { N = 200 };
    static put_wait w[N];
    atomic_int done = 0, wrong = 0;
    atomic_long late_max = 0;
    for (int i = 0; i < N; i++) {
        w[i] = (put_wait){dht_now_ns() + 300 * MS, &done, &late_max, &wrong};
        CHECK(dht_coord_put(c, i % 7, i, on_put, &w[i]) == 0);
    }
    for (int i = 0; i < 300 && atomic_load(&done) < N; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&done), N);
    CHECK_EQ(atomic_load(&wrong), 0);
    fprintf(stderr, "latest put: %.1f ms after its deadline\n", (double)atomic_load(&late_max) / 1e6);
    CHECK(atomic_load(&late_max) < 150 * MS);
    dht_grpc_stop(g);
    dht_coord_free(c);
    dht_membership_free(m);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
}


/* ---- batch streams ---------------------------------------------------------
 * Remote batches travel on one stream per peer and kind; replies carry the
 * request's id and may come back in any order. */

/* A replica service that answers lock batches at once and write batches
 * later, newest first, from its own thread: replies leave the server out of
 * order, so only the ids can match them up. */
typedef struct pending {
    struct pending *next;
    dht_msg *reps;
    size_t n;
    void (*done)(void *);
    void *done_arg;
} pending;

static pthread_mutex_t lifo_mu = PTHREAD_MUTEX_INITIALIZER;
static pending *lifo;
static atomic_bool lifo_stop;

static void answer(const dht_msg *reqs, dht_msg *reps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        reps[i].type = reqs[i].type; /* as the replica does: a typeless item is malformed */
        reps[i].ok = 1;
        reps[i].value = reqs[i].key * 3 + reqs[i].value; /* checked by the sender */
    }
}

static void lifo_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                       void (*done)(void *), void *done_arg)
{
    (void)arg;
    answer(reqs, reps, n);
    if (n == 0 || reqs[0].type != DHT_MSG_WRITE) {
        done(done_arg);
        return;
    }
    pending *p = malloc(sizeof *p);
    CHECK(p != NULL);
    *p = (pending){NULL, reps, n, done, done_arg};
    pthread_mutex_lock(&lifo_mu);
    p->next = lifo;
    lifo = p;
    pthread_mutex_unlock(&lifo_mu);
}

static void *lifo_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&lifo_stop)) {
        usleep(3000);
        pthread_mutex_lock(&lifo_mu);
        pending *p = lifo;
        lifo = NULL;
        pthread_mutex_unlock(&lifo_mu);
        while (p != NULL) { /* newest first */
            pending *next = p->next;
            p->done(p->done_arg);
            free(p);
            p = next;
        }
    }
    return NULL;
}

static void sync_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                       void (*done)(void *), void *done_arg)
{
    (void)arg;
    answer(reqs, reps, n);
    done(done_arg);
}

static void no_client(void *arg, const dht_msg *req, int64_t deadline_ns, dht_done_fn done,
                      void *done_arg)
{
    (void)arg;
    (void)req;
    (void)deadline_ns;
    done(done_arg, DHT_ERR_REMOTE, NULL, "not in this test");
}

/* A port nothing listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A server for svc on addr, checking requests against fingerprint (0: no
 * check). */
static dht_grpc *serve_config(const char *addr, const dht_service *svc, uint64_t fingerprint,
                              const char *line)
{
    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 1, .self = -1,
                           .listen_addr = addr, .service = svc, .fingerprint = fingerprint,
                           .config_line = line};
    dht_grpc *g;
    char err[256];
    for (int i = 0; i < 100; i++) { /* the port may linger a moment after a stop */
        if (dht_grpc_start(&cfg, &g, err, sizeof err) == 0)
            return g;
        usleep(20000);
    }
    fprintf(stderr, "cannot serve %s: %s\n", addr, err);
    CHECK(0);
    return NULL;
}

static dht_grpc *serve(const char *addr, const dht_service *svc)
{
    return serve_config(addr, svc, 0, NULL);
}

typedef struct {
    int64_t want;
    atomic_int *ok, *bad, *failed;
} expect;

static void on_expect(void *arg, dht_status st, const dht_msg *rep)
{
    expect *e = arg;
    if (st != DHT_OK)
        atomic_fetch_add(e->failed, 1);
    else if (rep->value != e->want || !rep->ok)
        atomic_fetch_add(e->bad, 1);
    else
        atomic_fetch_add(e->ok, 1);
}

static void test_stream_replies_out_of_order_reach_their_requests(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica_batch = lifo_batch, .client = no_client};
    pthread_t th;
    atomic_store(&lifo_stop, false);
    CHECK(pthread_create(&th, NULL, lifo_main, NULL) == 0);
    dht_grpc *server = serve(addr, &svc);

    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 2, .self = -1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);

    enum { ROUNDS = 50, PER_ROUND = 100 };
    expect *e = calloc(ROUNDS * PER_ROUND, sizeof *e);
    atomic_int ok = 0, bad = 0, failed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < PER_ROUND; i++) {
            int k = r * PER_ROUND + i;
            dht_msg m = {.type = k % 3 ? DHT_MSG_WRITE : DHT_MSG_LOCK, .key = k,
                         .value = (int64_t)rand(), .owner = 1, .lease_ms = 10};
            e[k] = (expect){m.key * 3 + m.value, &ok, &bad, &failed};
            CHECK(dht_transport_send(t, 0, &m, dht_now_ns() + 5000 * MS, on_expect, &e[k]) == 0);
        }
        usleep(1000);
    }
    for (int i = 0; i < 1000 && ok + bad + failed < ROUNDS * PER_ROUND; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&bad), 0);
    CHECK_EQ(atomic_load(&failed), 0);
    CHECK_EQ(atomic_load(&ok), ROUNDS * PER_ROUND);
    dht_grpc_stop(g);
    dht_grpc_stop(server);
    atomic_store(&lifo_stop, true);
    pthread_join(th, NULL);
    free(e);
}

/* A batch reply that must hold n items and echo id: its items (the caller
 * frees them). */
static dht_msg *batch_reply(const uint8_t *resp, size_t len, size_t n, uint64_t id)
{
    dht_msg *reps = NULL;
    size_t got = 0;
    uint64_t got_id = 0;
    CHECK(dht_codec_decode_batch(resp, len, &reps, &got, &got_id, NULL, NULL) == 0);
    CHECK_EQ(got, n);
    CHECK_EQ(got_id, id);
    return reps;
}

static void test_stream_rejects_malformed_messages(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica_batch = sync_batch, .client = no_client};
    dht_grpc *server = serve(addr, &svc);
    int status;
    char details[200];
    uint8_t resp[256];
    size_t resp_len = sizeof resp;

    /* Not a BatchRequest (field 1 claims 100 bytes that are not there). */
    static const uint8_t junk[] = {0x0a, 0x64, 0x01, 0x02};
    CHECK(dht_grpc_call_raw(addr, DHT_CODEC_STREAM_METHOD, junk, sizeof junk, 2000 * MS, &status,
                            details, sizeof details, resp, &resp_len) == 0);
    CHECK_EQ(status, 3); /* INVALID_ARGUMENT */

    /* A request of another type inside a batch is refused too. */
    dht_msg put = {.type = DHT_MSG_PUT, .key = 1, .value = 2};
    uint8_t buf[128];
    size_t len = dht_codec_encode_batch(&put, 1, 9, 0, 0, buf, sizeof buf);
    CHECK(len <= sizeof buf);
    resp_len = sizeof resp;
    CHECK(dht_grpc_call_raw(addr, DHT_CODEC_STREAM_METHOD, buf, len, 2000 * MS, &status, details,
                            sizeof details, resp, &resp_len) == 0);
    CHECK_EQ(status, 3);

    /* The server is still there, and a well-formed batch is answered with
     * its id. */
    dht_msg reqs[2] = {{.type = DHT_MSG_READ, .key = 5}, {.type = DHT_MSG_LOCK, .key = 6, .owner = 1}};
    len = dht_codec_encode_batch(reqs, 2, 77, 0, 0, buf, sizeof buf);
    CHECK(len <= sizeof buf);
    resp_len = sizeof resp;
    CHECK(dht_grpc_call_raw(addr, DHT_CODEC_STREAM_METHOD, buf, len, 2000 * MS, &status, details,
                            sizeof details, resp, &resp_len) == 0);
    CHECK_EQ(status, 0);
    dht_msg *reps = batch_reply(resp, resp_len, 2, 77);
    CHECK_EQ(reps[0].value, 15);
    CHECK_EQ(reps[1].value, 18);
    free(reps);
    dht_grpc_stop(server);
}

static void test_stream_reopens_after_peer_restart(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica_batch = sync_batch, .client = no_client};
    dht_grpc *server = serve(addr, &svc);
    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 1, .self = -1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);
    atomic_int ok = 0, bad = 0, failed = 0;
    expect e = {3, &ok, &bad, &failed};
    dht_msg m = {.type = DHT_MSG_READ, .key = 1};

    CHECK(dht_transport_send(t, 0, &m, dht_now_ns() + 2000 * MS, on_expect, &e) == 0);
    for (int i = 0; i < 200 && ok + failed == 0; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&ok), 1);

    /* The peer goes away: the next request fails, well before its deadline. */
    dht_grpc_stop(server);
    int64_t t0 = dht_now_ns();
    CHECK(dht_transport_send(t, 0, &m, t0 + 5000 * MS, on_expect, &e) == 0);
    for (int i = 0; i < 500 && ok + failed == 1; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&failed), 1);
    CHECK(dht_now_ns() - t0 < 2000 * MS);

    /* It comes back on the same port: a new stream carries the requests. */
    server = serve(addr, &svc);
    int before = atomic_load(&ok);
    for (int i = 0; i < 100 && atomic_load(&ok) == before; i++) {
        int seen = ok + failed;
        CHECK(dht_transport_send(t, 0, &m, dht_now_ns() + 1000 * MS, on_expect, &e) == 0);
        for (int k = 0; k < 200 && ok + failed == seen; k++)
            usleep(5000);
        if (atomic_load(&ok) == before)
            usleep(50000);
    }
    CHECK(atomic_load(&ok) > before);
    CHECK_EQ(atomic_load(&bad), 0);
    dht_grpc_stop(g);
    dht_grpc_stop(server);
}

/* Debian's abseil runs a deadlock detector (a process-wide spin lock) on
 * every mutex lock in gRPC; the transport turns it off through abseil's
 * setter.  If an abseil update renames the setter, this fails rather than
 * the speed-up silently vanishing. */
static void test_abseil_deadlock_detection_is_switched_off(void)
{
    CHECK_EQ(dht_grpc_abseil_deadlock_checks_off(), 1);
    /* And the transport still starts and stops with it off. */
    const char *peers[] = {"127.0.0.1:1"};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 1, .self = -1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_grpc_stop(g);
}

/* ---- the configuration fingerprint and Admin/Stats -------------------------
 * A node refuses every replica request whose configuration fingerprint is
 * not its own (FAILED_PRECONDITION) before the replica sees it; Stats
 * tells callers the node's configuration. */

#define FP_NODE UINT64_C(0x1234abcd5678ef01)
#define FP_OTHER UINT64_C(0x0fedcba987654321)
#define NODE_LINE "replicas=3 partitions=65536 members=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"

static atomic_int served; /* replica requests the service saw */

static void count_replica(void *arg, const dht_msg *req, dht_msg *reply)
{
    (void)arg;
    atomic_fetch_add(&served, 1);
    reply->type = req->type;
    reply->ok = 1;
    reply->value = req->key * 3 + req->value;
}

static void count_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                        void (*done)(void *), void *done_arg)
{
    for (size_t i = 0; i < n; i++)
        count_replica(arg, &reqs[i], &reps[i]);
    done(done_arg);
}

static const char *const stats_members[] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};

static void fill_stats(void *arg, dht_stats *out)
{
    (void)arg;
    *out = (dht_stats){.self = "127.0.0.1:2", .members = stats_members, .nmembers = 3,
                       .replicas = 3, .fingerprint = FP_NODE, .cluster_id = UINT64_C(0xc1),
                       .keys = 12345678901ULL, .partitions = 65536,
                       .partitions_recovering = 17, .log_bytes = -1};
}

/* One raw call: the status, with its details in det. */
static int raw_status(const char *addr, const char *method, const uint8_t *req, size_t len,
                      char *det, size_t detlen, uint8_t *resp, size_t *resp_len)
{
    int status = -1;
    size_t cap = *resp_len;
    CHECK(dht_grpc_call_raw(addr, method, req, len, 2000 * MS, &status, det, detlen, resp,
                            resp_len) == 0);
    CHECK(*resp_len <= cap);
    return status;
}

/* A refusal's text names both fingerprints (or the missing one), the
 * node's configuration and the remedy. */
static void check_refusal_text(const char *det, uint64_t sent, bool whole)
{
    char want[64];
    CHECK(strstr(det, "configuration mismatch") != NULL);
    CHECK(strstr(det, "1234abcd5678ef01") != NULL);
    CHECK(!whole || strstr(det, NODE_LINE) != NULL);
    CHECK(strstr(det, "MEMBERS and --replicas") != NULL);
    if (sent == 0) {
        CHECK(strstr(det, "carries no configuration fingerprint") != NULL);
    } else {
        snprintf(want, sizeof want, "%016llx", (unsigned long long)sent);
        CHECK(strstr(det, want) != NULL);
    }
}

/* A server on a new port (in addr) whose replica counts what it serves,
 * checking requests against fingerprint (0: no check). */
static dht_grpc *serve_counting(char *addr, size_t len, uint64_t fingerprint)
{
    static const dht_service svc = {.replica = count_replica, .replica_batch = count_batch,
                                     .client = no_client};
    snprintf(addr, len, "127.0.0.1:%d", free_port());
    atomic_store(&served, 0);
    return serve_config(addr, &svc, fingerprint, NODE_LINE);
}

static void test_config_mismatch_is_refused_on_every_replica_method(void)
{
    char addr[64];
    dht_grpc *server = serve_counting(addr, sizeof addr, FP_NODE);
    const dht_msg reqs[] = {
        {.type = DHT_MSG_LOCK, .key = 1, .owner = 5, .lease_ms = 100},
        {.type = DHT_MSG_UNLOCK, .key = 1, .owner = 5},
        {.type = DHT_MSG_WRITE, .key = 2, .value = 7, .version = {1, 9}, .owner = 5},
        {.type = DHT_MSG_READ, .key = 3},
        {.type = DHT_MSG_SCAN, .from_start = true, .limit = 10, .member = 42},
    };
    const uint64_t wrong[] = {0, FP_OTHER, FP_NODE + 1};
    uint8_t buf[256], resp[4096];
    char det[2048];
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        const char *method = dht_codec_method(reqs[i].type);
        for (size_t w = 0; w < sizeof wrong / sizeof wrong[0]; w++) {
            size_t len = dht_codec_encode_request(&reqs[i], wrong[w], 0, buf, sizeof buf);
            CHECK(len <= sizeof buf);
            size_t rl = sizeof resp;
            CHECK_EQ(raw_status(addr, method, buf, len, det, sizeof det, resp, &rl), 9);
            check_refusal_text(det, wrong[w], true);
            CHECK_EQ(rl, 0);
        }
        /* Also as a batch item, unary and streamed. */
        if (dht_codec_batchable(reqs[i].type)) {
            for (size_t w = 0; w < sizeof wrong / sizeof wrong[0]; w++) {
                size_t len = dht_codec_encode_batch(&reqs[i], 1, 3, wrong[w], 0, buf, sizeof buf);
                size_t rl = sizeof resp;
                CHECK_EQ(raw_status(addr, DHT_CODEC_BATCH_METHOD, buf, len, det, sizeof det,
                                    resp, &rl), 9);
                check_refusal_text(det, wrong[w], true);
                rl = sizeof resp;
                CHECK_EQ(raw_status(addr, DHT_CODEC_STREAM_METHOD, buf, len, det, sizeof det,
                                    resp, &rl), 9);
                check_refusal_text(det, wrong[w], true);
                CHECK_EQ(rl, 0);
            }
        }
    }
    CHECK_EQ(atomic_load(&served), 0); /* nothing reached the replica */

    /* A malformed request is still INVALID_ARGUMENT, whatever it carries. */
    static const uint8_t junk[] = {0x0a, 0x64, 0x01};
    size_t rl = sizeof resp;
    CHECK_EQ(raw_status(addr, "/dht.Replica/Write", junk, sizeof junk, det, sizeof det, resp,
                        &rl), 3);

    /* The right fingerprint is served, on every path. */
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        size_t len = dht_codec_encode_request(&reqs[i], FP_NODE, 0, buf, sizeof buf);
        rl = sizeof resp;
        CHECK_EQ(raw_status(addr, dht_codec_method(reqs[i].type), buf, len, det, sizeof det, resp,
                            &rl), 0);
    }
    CHECK_EQ(atomic_load(&served), 5);
    size_t len = dht_codec_encode_batch(reqs, 4, 8, FP_NODE, 0, buf, sizeof buf);
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_BATCH_METHOD, buf, len, det, sizeof det, resp, &rl), 0);
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STREAM_METHOD, buf, len, det, sizeof det, resp, &rl), 0);
    free(batch_reply(resp, rl, 4, 8));
    CHECK_EQ(atomic_load(&served), 13);

    /* The config field rawcall and the hostile suite put in front of a
     * hand-made request: it decodes as the request's fingerprint. */
    uint8_t field[24];
    size_t fl = dht_codec_config_field("/dht.Replica/Read", FP_NODE, field, sizeof field);
    CHECK(fl > 1 && fl <= sizeof field);
    CHECK_EQ(field[0], 2 << 3); /* ReadRequest.config is field 2, a varint */
    memcpy(buf, field, fl);
    len = dht_codec_encode_request(&reqs[3], 0, 0, buf + fl, sizeof buf - fl);
    dht_msg dec;
    uint64_t cfg = 0;
    CHECK(dht_codec_decode_request(DHT_MSG_READ, buf, fl + len, &dec, &cfg) == 0);
    CHECK(cfg == FP_NODE);
    CHECK_EQ(dec.key, 3);
    CHECK_EQ(dht_codec_config_field("/dht.KeyValue/Put", 1, field, sizeof field), 0);
    CHECK(dht_codec_config_field(DHT_CODEC_STREAM_METHOD, 1, field, sizeof field) == 2);
    CHECK_EQ(field[0], 3 << 3); /* BatchRequest.config */
    dht_grpc_stop(server);
}

typedef struct {
    atomic_int done, ok, refused;
    char error[2048];
    dht_transport *t;
} outcome;

static void on_outcome(void *arg, dht_status st, const dht_msg *rep)
{
    outcome *o = arg;
    if (st == DHT_OK && rep != NULL) {
        atomic_fetch_add(&o->ok, 1);
    } else {
        /* The remote's status, readable during the callback. */
        const char *e = o->t->ops->last_error(o->t);
        if (st == DHT_ERR_REMOTE && strstr(e, "FAILED_PRECONDITION") != NULL)
            atomic_fetch_add(&o->refused, 1);
        snprintf(o->error, sizeof o->error, "%s", e);
    }
    atomic_fetch_add(&o->done, 1);
}

/* Sends a READ (a stream message) and a SCAN (a unary call) from a client
 * transport with fingerprint fp; waits for both. */
static void send_both(const char *addr, uint64_t fp, outcome *o)
{
    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 1, .self = -1,
                           .fingerprint = fp};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    o->t = dht_grpc_transport(g);
    dht_msg read = {.type = DHT_MSG_READ, .key = 4};
    dht_msg scan = {.type = DHT_MSG_SCAN, .from_start = true, .limit = 5};
    CHECK(dht_transport_send(o->t, 0, &read, dht_now_ns() + 2000 * MS, on_outcome, o) == 0);
    CHECK(dht_transport_send(o->t, 0, &scan, dht_now_ns() + 2000 * MS, on_outcome, o) == 0);
    for (int i = 0; i < 300 && atomic_load(&o->done) < 2; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&o->done), 2);
    dht_grpc_stop(g);
}

static void test_transport_carries_its_fingerprint(void)
{
    char addr[64];
    dht_grpc *server = serve_counting(addr, sizeof addr, FP_NODE);

    /* Another configuration, or none: both refused, the reason surfaces
     * through last_error, and the replica saw nothing. */
    static outcome other, none, same;
    send_both(addr, FP_OTHER, &other);
    CHECK_EQ(atomic_load(&other.refused), 2);
    check_refusal_text(other.error, FP_OTHER, false);
    send_both(addr, 0, &none);
    CHECK_EQ(atomic_load(&none.refused), 2);
    CHECK(strstr(none.error, "carries no configuration fingerprint") != NULL);
    CHECK_EQ(atomic_load(&served), 0);

    /* The node's own: served. */
    send_both(addr, FP_NODE, &same);
    CHECK_EQ(atomic_load(&same.ok), 2);
    CHECK_EQ(atomic_load(&served), 2);
    dht_grpc_stop(server);

    /* A node without a fingerprint checks nothing. */
    server = serve_counting(addr, sizeof addr, 0);
    static outcome any;
    send_both(addr, FP_OTHER, &any);
    CHECK_EQ(atomic_load(&any.ok), 2);
    dht_grpc_stop(server);
}

static void test_stats_round_trip(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica = count_replica, .client = no_client, .stats = fill_stats};
    dht_grpc *server = serve_config(addr, &svc, FP_NODE, NODE_LINE);
    uint8_t resp[4096];
    char det[2048];
    size_t rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STATS_METHOD, NULL, 0, det, sizeof det, resp, &rl), 0);
    dht_stats st;
    CHECK(dht_codec_decode_stats(resp, rl, &st) == 0);
    CHECK(strcmp(st.self, "127.0.0.1:2") == 0);
    CHECK_EQ(st.nmembers, 3);
    for (int i = 0; i < 3; i++)
        CHECK(strcmp(st.members[i], stats_members[i]) == 0);
    CHECK_EQ(st.replicas, 3);
    CHECK(st.fingerprint == FP_NODE);
    CHECK(st.cluster_id == 0xc1);
    CHECK(st.keys == 12345678901ULL);
    CHECK_EQ(st.partitions, 65536);
    CHECK_EQ(st.partitions_recovering, 17);
    CHECK_EQ(st.log_bytes, -1);
    dht_codec_stats_free(&st);
    CHECK(st.self == NULL && st.members == NULL);

    /* Unknown fields are fine (proto3); bytes that are no message are not. */
    static const uint8_t unknown[] = {0x08, 0x01};
    static const uint8_t junk[] = {0x0a, 0x64, 0x01};
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STATS_METHOD, unknown, sizeof unknown, det, sizeof det,
                        resp, &rl), 0);
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STATS_METHOD, junk, sizeof junk, det, sizeof det, resp,
                        &rl), 3);
    /* A reply that is not a StatsReply does not decode. */
    CHECK(dht_codec_decode_stats(junk, sizeof junk, &st) == -1);
    dht_codec_stats_free(&st);
    dht_grpc_stop(server);

    /* A service without stats: UNIMPLEMENTED. */
    svc.stats = NULL;
    server = serve(addr, &svc);
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STATS_METHOD, NULL, 0, det, sizeof det, resp, &rl), 12);
    dht_grpc_stop(server);
}

/* ---- per-request stamps ------------------------------------------------------
 * A request travels with its own (config, view) when it has a config, else
 * with the transport's fingerprint and view 0; one wire message carries one
 * stamp; the service's check_config judges each message before anything
 * else and its refusal reaches the sender as DHT_ERR_REMOTE with the
 * reason. */

#define ST_C1 UINT64_C(0xc1c1c1c1c1c1c1c1)
#define ST_C2 UINT64_C(0xc2c2c2c2c2c2c2c2)
#define ST_BAD_VIEW 3 /* refused by stamp_check */

enum { STAMP_LOG = 4096 };
static pthread_mutex_t stamp_mu = PTHREAD_MUTEX_INITIALIZER;
typedef struct {
    uint64_t config, view;
} stamp_pair;
static stamp_pair checked[STAMP_LOG]; /* every check_config call, in order */
static int nchecked;
static atomic_int mixed_batches; /* batches whose items' stamps differ */
static atomic_int batches_seen;
static atomic_int out_of_order;  /* items of one stamp served out of order */
static int64_t last_key[4];      /* per stamp class: the last key served */

static int stamp_class(uint64_t config, uint64_t view)
{
    return config == ST_C1 && view == 4   ? 0
           : config == ST_C2 && view == 5 ? 1
           : config == FP_NODE && view == 0 ? 2
                                            : 3;
}

static int stamp_check(void *arg, uint64_t config, uint64_t view, char *why, size_t len)
{
    (void)arg;
    pthread_mutex_lock(&stamp_mu);
    if (nchecked < STAMP_LOG)
        checked[nchecked++] = (stamp_pair){config, view};
    pthread_mutex_unlock(&stamp_mu);
    if (view != ST_BAD_VIEW)
        return 0;
    snprintf(why, len, "stale view %llu: this node is at view 10", (unsigned long long)view);
    return 1;
}

/* Echoes each request's stamp in its reply (value = class; a ScanReply has
 * no value: its cursor key), so that the sender checks what was delivered
 * for each of its items. */
static void stamp_replica(void *arg, const dht_msg *req, dht_msg *reply)
{
    (void)arg;
    reply->type = req->type;
    reply->ok = 1;
    if (req->type == DHT_MSG_SCAN)
        reply->key = stamp_class(req->config, req->view);
    else
        reply->value = stamp_class(req->config, req->view);
}

static void stamp_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                        void (*done)(void *), void *done_arg)
{
    atomic_fetch_add(&batches_seen, 1);
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].config != reqs[0].config || reqs[i].view != reqs[0].view)
            atomic_fetch_add(&mixed_batches, 1);
        int c = stamp_class(reqs[i].config, reqs[i].view);
        pthread_mutex_lock(&stamp_mu);
        if (reqs[i].key <= last_key[c])
            atomic_fetch_add(&out_of_order, 1);
        last_key[c] = reqs[i].key;
        pthread_mutex_unlock(&stamp_mu);
        stamp_replica(arg, &reqs[i], &reps[i]);
    }
    done(done_arg);
}

typedef struct {
    int want; /* the class the reply must echo; -1: must be refused */
    atomic_int *ok, *bad, *refused;
    dht_transport *t;
    char error[256];
} stamp_wait;

static void on_stamped(void *arg, dht_status st, const dht_msg *rep)
{
    stamp_wait *s = arg;
    if (s->want < 0) {
        const char *e = s->t->ops->last_error(s->t);
        snprintf(s->error, sizeof s->error, "%s", e);
        if (st == DHT_ERR_REMOTE && strstr(e, "FAILED_PRECONDITION") != NULL &&
            strstr(e, "stale view 3: this node is at view 10") != NULL)
            atomic_fetch_add(s->refused, 1);
        else
            atomic_fetch_add(s->bad, 1);
    } else if (st == DHT_OK && (rep->type == DHT_MSG_SCAN ? rep->key : rep->value) == s->want) {
        atomic_fetch_add(s->ok, 1);
    } else {
        atomic_fetch_add(s->bad, 1);
    }
}

static void test_stamps_split_batches_and_are_checked(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica = stamp_replica, .replica_batch = stamp_batch,
                       .client = no_client, .check_config = stamp_check};
    dht_grpc *server = serve_config(addr, &svc, FP_NODE, NODE_LINE);
    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 2, .self = -1,
                           .fingerprint = FP_NODE};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);
    for (int c = 0; c < 4; c++)
        last_key[c] = -1;

    /* Runs of three stamps (and the transport's own, config 0), sent from
     * this thread: while one message is on the wire the next ones queue up
     * together, so queues hold mixed stamps that must leave apart. */
    enum { N = 3000 };
    static stamp_wait w[N];
    atomic_int ok = 0, bad = 0, refused = 0;
    int want_refused = 0;
    for (int i = 0; i < N; i++) {
        int c = (i / 7) % 4; /* 3: the refused view */
        dht_msg m = {.type = DHT_MSG_READ, .key = i};
        if (c == 0)
            m.config = ST_C1, m.view = 4;
        else if (c == 1)
            m.config = ST_C2, m.view = 5;
        else if (c == 3)
            m.config = ST_C1, m.view = ST_BAD_VIEW;
        /* c == 2: no stamp of its own: the transport's fingerprint, view 0 */
        w[i] = (stamp_wait){c == 3 ? -1 : c, &ok, &bad, &refused, t, ""};
        want_refused += c == 3;
        CHECK(dht_transport_send(t, 0, &m, dht_now_ns() + 5000 * MS, on_stamped, &w[i]) == 0);
        if (i % 50 == 0)
            usleep(200);
    }
    for (int i = 0; i < 1000 && ok + bad + refused < N; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&bad), 0);
    CHECK_EQ(atomic_load(&refused), want_refused);
    CHECK_EQ(atomic_load(&ok), N - want_refused);
    CHECK_EQ(atomic_load(&mixed_batches), 0);
    CHECK_EQ(atomic_load(&out_of_order), 0);
    /* One check per message: each served batch was checked once, plus one
     * per refused message; every pair checked is one the sender used. */
    pthread_mutex_lock(&stamp_mu);
    int nref = 0;
    for (int i = 0; i < nchecked; i++) {
        CHECK(stamp_class(checked[i].config, checked[i].view) != 3 ||
              (checked[i].config == ST_C1 && checked[i].view == ST_BAD_VIEW));
        nref += checked[i].view == ST_BAD_VIEW;
    }
    CHECK(nref >= 1);
    CHECK_EQ(nchecked, atomic_load(&batches_seen) + nref);
    fprintf(stderr, "%d messages for %d requests, %d refused\n", nchecked, N, nref);
    CHECK(nchecked < N); /* they did share messages */
    nchecked = 0;
    pthread_mutex_unlock(&stamp_mu);

    /* A unary request (Scan) is checked with its stamp, and refused whole. */
    static stamp_wait s1, s2;
    atomic_int sok = 0, sbad = 0, sref = 0;
    s1 = (stamp_wait){1, &sok, &sbad, &sref, t, ""};
    s2 = (stamp_wait){-1, &sok, &sbad, &sref, t, ""};
    dht_msg scan = {.type = DHT_MSG_SCAN, .from_start = true, .limit = 5, .config = ST_C2,
                    .view = 5};
    CHECK(dht_transport_send(t, 0, &scan, dht_now_ns() + 2000 * MS, on_stamped, &s1) == 0);
    scan.view = ST_BAD_VIEW;
    CHECK(dht_transport_send(t, 0, &scan, dht_now_ns() + 2000 * MS, on_stamped, &s2) == 0);
    for (int i = 0; i < 300 && sok + sbad + sref < 2; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&sok), 1);
    CHECK_EQ(atomic_load(&sref), 1);
    CHECK(strstr(s2.error, "stale view 3") != NULL);
    pthread_mutex_lock(&stamp_mu);
    CHECK_EQ(nchecked, 2);
    CHECK(checked[0].config == ST_C2 || checked[1].config == ST_C2);
    CHECK((checked[0].view == 5 && checked[1].view == ST_BAD_VIEW) ||
          (checked[1].view == 5 && checked[0].view == ST_BAD_VIEW));
    pthread_mutex_unlock(&stamp_mu);
    dht_grpc_stop(g);

    /* On the wire: a refused stream message with a view is answered by id
     * with the reason (the stream stays open); one without a view (an old
     * sender, a tool) ends the stream with FAILED_PRECONDITION, as before. */
    dht_msg rd = {.type = DHT_MSG_READ, .key = 9};
    uint8_t buf[128], resp[512];
    char det[512];
    size_t len = dht_codec_encode_batch(&rd, 1, 42, ST_C1, ST_BAD_VIEW, buf, sizeof buf);
    size_t rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STREAM_METHOD, buf, len, det, sizeof det, resp, &rl), 0);
    dht_msg *reps = NULL;
    size_t n = 99;
    uint64_t id = 0;
    char refusal[256];
    CHECK(dht_codec_decode_batch_reply(resp, rl, &reps, &n, &id, refusal, sizeof refusal) == 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(id, 42);
    CHECK(strstr(refusal, "stale view 3") != NULL);
    free(reps);
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_BATCH_METHOD, buf, len, det, sizeof det, resp, &rl), 9);
    CHECK(strstr(det, "stale view 3") != NULL);
    dht_grpc_stop(server);
}

/* A check that refuses everything: without a view, a stream ends. */
static int refuse_all(void *arg, uint64_t config, uint64_t view, char *why, size_t len)
{
    (void)arg;
    snprintf(why, len, "nothing is served here (%llx, %llu)", (unsigned long long)config,
             (unsigned long long)view);
    return 1;
}

static void test_refusal_without_view_ends_the_stream(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica = stamp_replica, .replica_batch = stamp_batch,
                       .client = no_client, .check_config = refuse_all};
    dht_grpc *server = serve(addr, &svc);
    dht_msg rd = {.type = DHT_MSG_READ, .key = 9};
    uint8_t buf[128], resp[512];
    char det[512];
    size_t len = dht_codec_encode_batch(&rd, 1, 42, FP_OTHER, 0, buf, sizeof buf);
    size_t rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STREAM_METHOD, buf, len, det, sizeof det, resp, &rl), 9);
    CHECK(strstr(det, "nothing is served here (fedcba987654321, 0)") != NULL);
    /* check_config replaces the static check: a unary request is judged by
     * it too, with the stamp it carries. */
    len = dht_codec_encode_request(&rd, FP_NODE, 7, buf, sizeof buf);
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, "/dht.Replica/Read", buf, len, det, sizeof det, resp, &rl), 9);
    CHECK(strstr(det, "1234abcd5678ef01, 7") != NULL);
    CHECK_EQ(atomic_load(&batches_seen), 0);
    dht_grpc_stop(server);
}

/* The codec keeps the stamp of requests and batches. */
static void test_codec_carries_stamps(void)
{
    const dht_msg reqs[] = {
        {.type = DHT_MSG_LOCK, .key = 1, .owner = 5, .lease_ms = 100},
        {.type = DHT_MSG_UNLOCK, .key = 1, .owner = 5},
        {.type = DHT_MSG_WRITE, .key = 2, .value = 7, .version = {1, 9}, .owner = 5},
        {.type = DHT_MSG_READ, .key = 3},
        {.type = DHT_MSG_SCAN, .from_start = true, .limit = 10, .member = 42},
    };
    uint8_t buf[256];
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        size_t len = dht_codec_encode_request(&reqs[i], ST_C1, 77, buf, sizeof buf);
        CHECK(len <= sizeof buf);
        dht_msg out;
        uint64_t cfg = 0;
        CHECK(dht_codec_decode_request(reqs[i].type, buf, len, &out, &cfg) == 0);
        CHECK(cfg == ST_C1 && out.config == ST_C1);
        CHECK_EQ(out.view, 77);
        CHECK_EQ(out.key, reqs[i].key);
    }
    size_t len = dht_codec_encode_batch(reqs, 4, 6, ST_C2, 9, buf, sizeof buf);
    dht_msg *m;
    size_t n;
    uint64_t id, cfg, view;
    CHECK(dht_codec_decode_batch(buf, len, &m, &n, &id, &cfg, &view) == 0);
    CHECK_EQ(n, 4);
    CHECK(cfg == ST_C2 && view == 9 && id == 6);
    for (size_t i = 0; i < n; i++)
        CHECK(m[i].config == ST_C2 && m[i].view == 9);
    free(m);
    /* An ordinary reply reads as one, without a refusal. */
    len = dht_codec_encode_batch(reqs, 2, 6, 0, 0, buf, sizeof buf);
    char refusal[64] = "x";
    CHECK(dht_codec_decode_batch_reply(buf, len, &m, &n, &id, refusal, sizeof refusal) == 0);
    CHECK(n == 2 && refusal[0] == '\0');
    free(m);
    /* A refusal still parses as a BatchRequest (an old sender's decoder). */
    len = dht_codec_encode_batch_refusal(8, "no", buf, sizeof buf);
    CHECK(dht_codec_decode_batch(buf, len, &m, &n, &id, NULL, NULL) == 0);
    CHECK(n == 0 && id == 8);
    free(m);
}

/* ---- peers added at runtime ------------------------------------------------ */

static void test_add_peer_at_runtime(void)
{
    char a1[64], a2[64];
    dht_service svc = {.replica = count_replica, .replica_batch = count_batch,
                       .client = no_client};
    snprintf(a1, sizeof a1, "127.0.0.1:%d", free_port());
    dht_grpc *s1 = serve(a1, &svc);
    snprintf(a2, sizeof a2, "127.0.0.1:%d", free_port());
    dht_grpc *s2 = serve(a2, &svc);
    const char *peers[1] = {a1};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 2, .self = -1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);
    CHECK_EQ(t->npeers, 1);
    atomic_int ok = 0, bad = 0, failed = 0;
    expect e = {7 * 3, &ok, &bad, &failed};
    dht_msg m = {.type = DHT_MSG_READ, .key = 7};
    CHECK(dht_transport_send(t, 1, &m, dht_now_ns() + 1000 * MS, on_expect, &e) != 0);

    CHECK_EQ(dht_transport_add_peer(t, a2), 1);
    CHECK_EQ(t->npeers, 2);
    CHECK(dht_transport_send(t, 1, &m, dht_now_ns() + 2000 * MS, on_expect, &e) == 0);
    CHECK(dht_transport_send(t, 0, &m, dht_now_ns() + 2000 * MS, on_expect, &e) == 0);
    for (int i = 0; i < 300 && ok + bad + failed < 2; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&ok), 2);

    /* The same address, however spelled, is the same peer; junk is none. */
    CHECK_EQ(dht_transport_add_peer(t, a2), 1);
    char alias[64];
    snprintf(alias, sizeof alias, "localhost:%s", strchr(a2, ':') + 1);
    CHECK_EQ(dht_transport_add_peer(t, alias), 1);
    CHECK_EQ(dht_transport_add_peer(t, a1), 0);
    CHECK_EQ(dht_transport_add_peer(t, "not an address"), -1);
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:99999"), -1);
    CHECK_EQ(dht_transport_add_peer(t, ""), -1);
    CHECK_EQ(t->npeers, 2);

    /* Up to the limit, then no more (channels connect only when used). */
    int next = 2;
    for (int port = 20000; next < DHT_MAX_MEMBERS; port++) {
        char a[64];
        snprintf(a, sizeof a, "127.0.0.1:%d", port);
        if (strcmp(a, a1) == 0 || strcmp(a, a2) == 0)
            continue;
        CHECK_EQ(dht_transport_add_peer(t, a), next);
        next++;
    }
    CHECK_EQ(t->npeers, DHT_MAX_MEMBERS);
    CHECK_EQ(dht_transport_add_peer(t, "127.0.0.1:19999"), -1);
    CHECK_EQ(dht_transport_add_peer(t, a2), 1);
    dht_grpc_stop(g);

    /* A transport may start with no peer at all. */
    dht_grpc_config none = {.workers = 1, .self = -1};
    CHECK(dht_grpc_start(&none, &g, err, sizeof err) == 0);
    t = dht_grpc_transport(g);
    CHECK_EQ(dht_transport_add_peer(t, a1), 0);
    CHECK(dht_transport_send(t, 0, &m, dht_now_ns() + 2000 * MS, on_expect, &e) == 0);
    for (int i = 0; i < 300 && ok + bad + failed < 3; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&ok), 3);
    dht_grpc_stop(g);
    dht_grpc_stop(s1);
    dht_grpc_stop(s2);
}

/* Senders hammer peer 0 while another thread adds peers and sends to each
 * as soon as it exists. */
typedef struct {
    dht_transport *t;
    atomic_bool stop;
    atomic_int sent;
    expect *e;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    dht_msg m = {.type = DHT_MSG_READ, .key = 7};
    while (!atomic_load(&h->stop)) {
        if (dht_transport_send(h->t, 0, &m, dht_now_ns() + 3000 * MS, on_expect, h->e) == 0)
            atomic_fetch_add(&h->sent, 1);
        usleep(100);
    }
    return NULL;
}

static void test_add_peer_while_sending(void)
{
    char a1[64];
    dht_service svc = {.replica = count_replica, .replica_batch = count_batch,
                       .client = no_client};
    snprintf(a1, sizeof a1, "127.0.0.1:%d", free_port());
    dht_grpc *s1 = serve(a1, &svc);
    const char *peers[1] = {a1};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 2, .self = -1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    atomic_int ok = 0, bad = 0, failed = 0;
    expect e = {21, &ok, &bad, &failed};
    static hammer h;
    h.t = dht_grpc_transport(g);
    h.e = &e;
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, hammer_main, &h) == 0);
    /* Each new peer is the same server under another spelling? No: distinct
     * addresses are distinct peers, so the new ones point at nothing; a send
     * to them fails (UNAVAILABLE), which is all this needs. */
    int fails_expected = 0;
    for (int i = 0; i < 40; i++) {
        char a[64];
        snprintf(a, sizeof a, "127.0.0.1:%d", 1 + i);
        int p = dht_transport_add_peer(h.t, a);
        CHECK_EQ(p, i + 1);
        dht_msg m = {.type = DHT_MSG_READ, .key = 7};
        CHECK(dht_transport_send(h.t, p, &m, dht_now_ns() + 3000 * MS, on_expect, &e) == 0);
        fails_expected++;
        usleep(2000);
    }
    atomic_store(&h.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int total = atomic_load(&h.sent) + fails_expected;
    for (int i = 0; i < 500 && ok + bad + failed < total; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&bad), 0);
    CHECK_EQ(atomic_load(&failed), fails_expected);
    CHECK_EQ(atomic_load(&ok), atomic_load(&h.sent));
    dht_grpc_stop(g);
    dht_grpc_stop(s1);
}

/* ---- the control channel --------------------------------------------------- */

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static dht_control_done held_done;
static void *held_arg;

/* Echoes the body reversed; "err..." is refused with a reason; "hold" is
 * answered only when the test says (held_*); "late" from another thread. */
static void *late_answer(void *arg);

static void echo_control(void *arg, const uint8_t *req, size_t len, dht_control_done done,
                         void *done_arg)
{
    (void)arg;
    if (len >= 3 && memcmp(req, "err", 3) == 0) {
        done(done_arg, NULL, 0, "nope: not a member of view 12");
        return;
    }
    if (len == 4 && memcmp(req, "hold", 4) == 0) {
        pthread_mutex_lock(&held_mu);
        held_done = done;
        held_arg = done_arg;
        pthread_mutex_unlock(&held_mu);
        return;
    }
    if (len == 4 && memcmp(req, "late", 4) == 0) {
        void **pair = malloc(2 * sizeof *pair);
        CHECK(pair != NULL);
        pair[0] = (void *)done;
        pair[1] = done_arg;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, late_answer, pair) == 0);
        pthread_detach(th);
        return;
    }
    uint8_t *rev = malloc(len ? len : 1);
    CHECK(rev != NULL);
    for (size_t i = 0; i < len; i++)
        rev[i] = req[len - 1 - i];
    done(done_arg, rev, len, NULL);
    free(rev); /* the transport copied it */
}

static void *late_answer(void *arg)
{
    void **pair = arg;
    dht_control_done done;
    memcpy(&done, &pair[0], sizeof done);
    usleep(20000);
    done(pair[1], (const uint8_t *)"later", 5, NULL);
    free(pair);
    return NULL;
}

typedef struct {
    atomic_int done;
    dht_status st;
    uint8_t *rep; /* copy, owned */
    size_t len;
    bool rep_null;
    char error[256];
    dht_transport *t;
    int64_t at;
} ctl_wait;

static void on_control(void *arg, dht_status st, const uint8_t *rep, size_t len)
{
    ctl_wait *c = arg;
    c->st = st;
    c->rep_null = rep == NULL;
    c->len = len;
    c->rep = malloc(len ? len : 1);
    if (rep != NULL && len > 0)
        memcpy(c->rep, rep, len);
    snprintf(c->error, sizeof c->error, "%s", st != DHT_OK ? c->t->ops->last_error(c->t) : "");
    c->at = dht_now_ns();
    atomic_store(&c->done, 1);
}

/* One control call to peer: waits for its callback. */
static void control_wait(dht_transport *t, int peer, const void *body, size_t len,
                         int64_t timeout_ns, ctl_wait *c)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    CHECK(dht_transport_control(t, peer, body, len, dht_now_ns() + timeout_ns, on_control, c) ==
          0);
    for (int i = 0; i < 1000 && !atomic_load(&c->done); i++)
        usleep(10000);
    CHECK(atomic_load(&c->done));
}

static void test_control_round_trip(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica = count_replica, .client = no_client, .control = echo_control};
    dht_grpc *server = serve_config(addr, &svc, FP_NODE, NODE_LINE);
    const char *peers[2] = {addr, "127.0.0.1:1"};
    dht_grpc_config cfg = {.peers = peers, .npeers = 2, .workers = 1, .self = -1};
    dht_grpc *g;
    char err[256];
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);
    static ctl_wait c;

    control_wait(t, 0, "hello", 5, 2000 * MS, &c);
    CHECK_EQ(c.st, DHT_OK);
    CHECK(c.len == 5 && memcmp(c.rep, "olleh", 5) == 0);
    free(c.rep);
    control_wait(t, 0, "", 0, 2000 * MS, &c); /* an empty body is a body */
    CHECK(c.st == DHT_OK && c.len == 0 && !c.rep_null);
    free(c.rep);
    control_wait(t, 0, "late", 4, 2000 * MS, &c); /* answered from another thread */
    CHECK(c.st == DHT_OK && c.len == 5 && memcmp(c.rep, "later", 5) == 0);
    free(c.rep);

    /* The service's refusal: an error status with its reason. */
    control_wait(t, 0, "err", 3, 2000 * MS, &c);
    CHECK_EQ(c.st, DHT_ERR_REMOTE);
    CHECK(c.rep_null);
    CHECK(strstr(c.error, "FAILED_PRECONDITION: nope: not a member of view 12") != NULL);
    free(c.rep);

    /* The largest body there is, both ways; one byte more is not sent. */
    uint8_t *big = malloc(DHT_CONTROL_MAX + 1);
    CHECK(big != NULL);
    for (size_t i = 0; i < DHT_CONTROL_MAX + 1; i++)
        big[i] = (uint8_t)(i * 7);
    control_wait(t, 0, big, DHT_CONTROL_MAX, 5000 * MS, &c);
    CHECK_EQ(c.st, DHT_OK);
    CHECK(c.len == DHT_CONTROL_MAX && c.rep[0] == big[DHT_CONTROL_MAX - 1] &&
          c.rep[DHT_CONTROL_MAX - 1] == big[0]);
    free(c.rep);
    CHECK(dht_transport_control(t, 0, big, DHT_CONTROL_MAX + 1, dht_now_ns() + 1000 * MS,
                                on_control, &c) != 0);
    CHECK(dht_transport_control(t, 2, big, 1, dht_now_ns() + 1000 * MS, on_control, &c) != 0);

    /* On the wire: over 1 MiB, or no ControlRequest: INVALID_ARGUMENT
     * before the service sees it. */
    size_t need = dht_codec_encode_control(big, DHT_CONTROL_MAX + 1, NULL, 0);
    uint8_t *wire = malloc(need);
    CHECK(wire != NULL);
    dht_codec_encode_control(big, DHT_CONTROL_MAX + 1, wire, need);
    uint8_t resp[64];
    char det[256];
    size_t rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_CONTROL_METHOD, wire, need, det, sizeof det, resp, &rl),
             3);
    CHECK(strstr(det, "over 1 MiB") != NULL);
    free(wire);
    static const uint8_t junk[] = {0x0a, 0x64, 0x01};
    rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_CONTROL_METHOD, junk, sizeof junk, det, sizeof det, resp,
                        &rl), 3);
    free(big);

    /* The caller's deadline holds when the service takes its time; its
     * answer, when it comes, goes nowhere. */
    int64_t t0 = dht_now_ns();
    control_wait(t, 0, "hold", 4, 300 * MS, &c);
    CHECK_EQ(c.st, DHT_ERR_TIMEOUT);
    CHECK(c.at - t0 >= 250 * MS && c.at - t0 < 1500 * MS);
    free(c.rep);
    pthread_mutex_lock(&held_mu);
    CHECK(held_done != NULL);
    held_done(held_arg, (const uint8_t *)"x", 1, NULL);
    pthread_mutex_unlock(&held_mu);

    /* A peer nobody listens on: unavailable, not a timeout. */
    control_wait(t, 1, "hello", 5, 5000 * MS, &c);
    CHECK_EQ(c.st, DHT_ERR_UNAVAILABLE);
    free(c.rep);
    dht_grpc_stop(g);
    dht_grpc_stop(server);

    /* A node without a control service: UNIMPLEMENTED. */
    svc.control = NULL;
    server = serve(addr, &svc);
    CHECK(dht_grpc_start(&cfg, &g, err, sizeof err) == 0);
    t = dht_grpc_transport(g);
    control_wait(t, 0, "hello", 5, 2000 * MS, &c);
    CHECK_EQ(c.st, DHT_ERR_REMOTE);
    CHECK(strstr(c.error, "UNIMPLEMENTED") != NULL);
    free(c.rep);
    dht_grpc_stop(g);
    dht_grpc_stop(server);
}

/* ---- Stats: the fields of membership changes ------------------------------ */

static const char *const next_members[] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3",
                                           "127.0.0.1:4"};

static void fill_stats_changing(void *arg, dht_stats *out)
{
    fill_stats(arg, out);
    out->epoch = 6;
    out->view = 13;
    out->next_members = next_members;
    out->nnext = 4;
    out->next_replicas = 3;
    out->removed = true;
}

static void test_stats_carries_the_view(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica = count_replica, .client = no_client,
                       .stats = fill_stats_changing};
    dht_grpc *server = serve(addr, &svc);
    uint8_t resp[4096];
    char det[256];
    size_t rl = sizeof resp;
    CHECK_EQ(raw_status(addr, DHT_CODEC_STATS_METHOD, NULL, 0, det, sizeof det, resp, &rl), 0);
    dht_stats st;
    CHECK(dht_codec_decode_stats(resp, rl, &st) == 0);
    CHECK_EQ(st.nmembers, 3);
    CHECK(st.epoch == 6 && st.view == 13 && st.removed);
    CHECK_EQ(st.nnext, 4);
    CHECK_EQ(st.next_replicas, 3);
    for (int i = 0; i < 4; i++)
        CHECK(strcmp(st.next_members[i], next_members[i]) == 0);
    dht_codec_stats_free(&st);
    CHECK(st.next_members == NULL && st.nnext == 0);
    dht_grpc_stop(server);
}

/* ---- TLS: Control needs the peer role ---------------------------------------
 * Certificates from scripts/make-certs.sh (openssl), as tests/process does:
 * the node's, the coordinator's (peer role) and the role-less client's. */

static int make_certs(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/dht-tls-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/make-certs.sh' '%s' 127.0.0.1 >/dev/null 2>&1",
             DHT_SOURCE_DIR, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void load_tls(const char *dir, const char *who, dht_pem_set *pem, dht_grpc_tls *tls)
{
    char cert[512], key[512], ca[512], err[512];
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, who);
    snprintf(key, sizeof key, "%s/%s.key", dir, who);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    if (dht_grpc_tls_load(cert, key, ca, pem, tls, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        CHECK(0);
    }
}

static void test_control_needs_the_peer_role_under_tls(void)
{
    char dir[256];
    if (make_certs(dir, sizeof dir) != 0) {
        fprintf(stderr, "skipped: scripts/make-certs.sh failed (openssl missing?)\n");
        return;
    }
    dht_pem_set node_pem = {0}, peer_pem = {0}, client_pem = {0};
    dht_grpc_tls node_tls, peer_tls, client_tls;
    load_tls(dir, "node1", &node_pem, &node_tls);
    load_tls(dir, "coordinator", &peer_pem, &peer_tls);
    load_tls(dir, "client", &client_pem, &client_tls);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    dht_service svc = {.replica = count_replica, .client = no_client, .control = echo_control,
                       .stats = fill_stats};
    const char *speers[1] = {addr};
    dht_grpc_config scfg = {.peers = speers, .npeers = 1, .workers = 1, .self = -1,
                            .listen_addr = addr, .service = &svc, .tls = &node_tls};
    dht_grpc *server;
    char err[256];
    CHECK(dht_grpc_start(&scfg, &server, err, sizeof err) == 0);

    /* The role-less certificate: refused. */
    dht_grpc_config ccfg = {.workers = 1, .self = -1, .tls = &client_tls};
    dht_grpc *g;
    CHECK(dht_grpc_start(&ccfg, &g, err, sizeof err) == 0);
    dht_transport *t = dht_grpc_transport(g);
    CHECK_EQ(dht_transport_add_peer(t, addr), 0); /* a peer added later speaks TLS too */
    static ctl_wait c;
    control_wait(t, 0, "hello", 5, 5000 * MS, &c);
    CHECK_EQ(c.st, DHT_ERR_REMOTE);
    CHECK(strstr(c.error, "PERMISSION_DENIED") != NULL);
    CHECK(strstr(c.error, "dht.Admin/Control is for members") != NULL);
    free(c.rep);
    dht_grpc_stop(g);

    /* No certificate at all: unauthenticated. */
    dht_grpc_tls anon = {.ca_pem = node_tls.ca_pem};
    ccfg.tls = &anon;
    CHECK(dht_grpc_start(&ccfg, &g, err, sizeof err) == 0);
    t = dht_grpc_transport(g);
    CHECK_EQ(dht_transport_add_peer(t, addr), 0);
    control_wait(t, 0, "hello", 5, 5000 * MS, &c);
    CHECK_EQ(c.st, DHT_ERR_REMOTE);
    CHECK(strstr(c.error, "UNAUTHENTICATED") != NULL);
    free(c.rep);
    dht_grpc_stop(g);

    /* The peer role: served, over a peer given at start and one added. */
    ccfg.tls = &peer_tls;
    ccfg.peers = speers;
    ccfg.npeers = 1;
    CHECK(dht_grpc_start(&ccfg, &g, err, sizeof err) == 0);
    t = dht_grpc_transport(g);
    control_wait(t, 0, "hello", 5, 5000 * MS, &c);
    CHECK_EQ(c.st, DHT_OK);
    CHECK(c.len == 5 && memcmp(c.rep, "olleh", 5) == 0);
    free(c.rep);
    char alias[64];
    snprintf(alias, sizeof alias, "localhost:%s", strchr(addr, ':') + 1);
    CHECK_EQ(dht_transport_add_peer(t, alias), 0); /* the same peer */
    dht_grpc_stop(g);
    ccfg.peers = NULL;
    ccfg.npeers = 0;
    CHECK(dht_grpc_start(&ccfg, &g, err, sizeof err) == 0);
    t = dht_grpc_transport(g);
    CHECK_EQ(dht_transport_add_peer(t, addr), 0);
    control_wait(t, 0, "abc", 3, 5000 * MS, &c);
    CHECK_EQ(c.st, DHT_OK);
    CHECK(c.len == 3 && memcmp(c.rep, "cba", 3) == 0);
    free(c.rep);
    dht_grpc_stop(g);

    /* Stats stays open to the role-less certificate. */
    uint8_t resp[4096];
    size_t rl = sizeof resp;
    int status = -1;
    CHECK(dht_grpc_call_raw_tls(&client_tls, addr, DHT_CODEC_STATS_METHOD, "", 0, 3000 * MS,
                                &status, err, sizeof err, resp, &rl) == 0);
    CHECK_EQ(status, 0);
    dht_grpc_stop(server);
    dht_pem_set_free(&node_pem);
    dht_pem_set_free(&peer_pem);
    dht_pem_set_free(&client_pem);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static const test_case tests[] = {
    {"abseil_deadlock_detection_is_switched_off", test_abseil_deadlock_detection_is_switched_off},
    {"deadlines_hold_against_a_silent_peer", test_deadlines_hold_against_a_silent_peer},
    {"unknown_peer_fails_fast", test_unknown_peer_fails_fast},
    {"coordinator_ends_at_deadline_without_quorum",
     test_coordinator_ends_at_deadline_without_quorum},
    {"stream_replies_out_of_order_reach_their_requests",
     test_stream_replies_out_of_order_reach_their_requests},
    {"stream_rejects_malformed_messages", test_stream_rejects_malformed_messages},
    {"stream_reopens_after_peer_restart", test_stream_reopens_after_peer_restart},
    {"config_mismatch_is_refused_on_every_replica_method",
     test_config_mismatch_is_refused_on_every_replica_method},
    {"transport_carries_its_fingerprint", test_transport_carries_its_fingerprint},
    {"stats_round_trip", test_stats_round_trip},
    {"codec_carries_stamps", test_codec_carries_stamps},
    {"stamps_split_batches_and_are_checked", test_stamps_split_batches_and_are_checked},
    {"refusal_without_view_ends_the_stream", test_refusal_without_view_ends_the_stream},
    {"add_peer_at_runtime", test_add_peer_at_runtime},
    {"add_peer_while_sending", test_add_peer_while_sending},
    {"control_round_trip", test_control_round_trip},
    {"stats_carries_the_view", test_stats_carries_the_view},
    {"control_needs_the_peer_role_under_tls", test_control_needs_the_peer_role_under_tls},
    {0, 0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
