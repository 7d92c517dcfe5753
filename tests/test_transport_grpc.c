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
    CHECK(dht_membership_new(list, NULL, &m, err, sizeof err) == 0);
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

static dht_grpc *serve(const char *addr, const dht_service *svc)
{
    const char *peers[1] = {addr};
    dht_grpc_config cfg = {.peers = peers, .npeers = 1, .workers = 1, .self = -1,
                           .listen_addr = addr, .service = svc};
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
    size_t len = dht_codec_encode_batch(&put, 1, 9, buf, sizeof buf);
    CHECK(len <= sizeof buf);
    resp_len = sizeof resp;
    CHECK(dht_grpc_call_raw(addr, DHT_CODEC_STREAM_METHOD, buf, len, 2000 * MS, &status, details,
                            sizeof details, resp, &resp_len) == 0);
    CHECK_EQ(status, 3);

    /* The server is still there, and a well-formed batch is answered with
     * its id. */
    dht_msg reqs[2] = {{.type = DHT_MSG_READ, .key = 5}, {.type = DHT_MSG_LOCK, .key = 6, .owner = 1}};
    len = dht_codec_encode_batch(reqs, 2, 77, buf, sizeof buf);
    CHECK(len <= sizeof buf);
    resp_len = sizeof resp;
    CHECK(dht_grpc_call_raw(addr, DHT_CODEC_STREAM_METHOD, buf, len, 2000 * MS, &status, details,
                            sizeof details, resp, &resp_len) == 0);
    CHECK_EQ(status, 0);
    dht_msg *reps = NULL;
    size_t n = 0;
    uint64_t id = 0;
    CHECK(dht_codec_decode_batch(resp, resp_len, &reps, &n, &id) == 0);
    CHECK_EQ(n, 2);
    CHECK_EQ(id, 77);
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
    {0, 0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
