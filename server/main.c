/* server: one replica of the store, plus the public KeyValue service that
 * coordinates puts and gets for any key on the caller's behalf.
 *
 * Configuration comes from flags, then the environment (IP, PORT, MEMBERS),
 * then defaults; with no port at all and a terminal on stdin it asks for
 * one, like the exam's Go demo.  SIGINT/SIGTERM stop it cleanly: the main
 * thread waits for them with sigwait while the transport's threads serve.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage/group_commit.h"
#include "protocol/coordinator.h"
#include "storage/durable.h"
#include "base/log.h"
#include "protocol/replica.h"
#include "protocol/recovery.h"
#include "net/transport_grpc.h"
#include "base/util.h"

#define DEFAULT_MEMBERS "127.0.0.1:50001,127.0.0.1:50002,127.0.0.1:50003"

typedef struct {
    int64_t port;
    const char *ip;
    const char *members;
    int64_t id; /* 1-based index into members; 0: find by address */
    int64_t deadline_ms, lease_ms, workers;
    dht_log_level level;
    const char *data_dir; /* NULL: data/node<N> under the working directory */
    dht_fsync_mode fsync;
    int64_t ae_interval_ms;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: server [options]\n"
            "  --port P          port to listen on (env PORT; asked for on a terminal)\n"
            "  --ip IP           address to listen on and to find this node in MEMBERS\n"
            "                    (env IP; default 0.0.0.0, matched as 127.0.0.1)\n"
            "  --members LIST    HOST:PORT,... of every replica, this node included\n"
            "                    (env MEMBERS; default " DEFAULT_MEMBERS ")\n"
            "  --id N            this node is entry N (1-based) of the member list\n"
            "  --deadline-ms MS  deadline of each coordinated put/get (default 2000)\n"
            "  --lease-ms MS     lock lease (default 500)\n"
            "  --workers N       completion-queue threads (default: number of cores)\n"
            "  --data-dir DIR    write-ahead log and snapshots (env DATA_DIR;\n"
            "                    default data/nodeN in the working directory)\n"
            "  --fsync MODE      always|batch|never (env FSYNC; default always):\n"
            "                    always = fsync each write before acking, batch = group\n"
            "                    commit (one fsync for concurrent writes, ack after it),\n"
            "                    never = no fsync (survives a process crash, not a power cut)\n"
            "  --anti-entropy-ms MS  pause between background catch-up passes (default 1000)\n"
            "  --log-level L     error|warn|info|debug (default info; debug logs each request)\n"
            "  --help            this text\n"
            "Flags win over environment variables.\n");
}

static int fail_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "server: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"port", required_argument, 0, 'p'},      {"ip", required_argument, 0, 'i'},
        {"members", required_argument, 0, 'm'},   {"id", required_argument, 0, 'n'},
        {"deadline-ms", required_argument, 0, 'd'}, {"lease-ms", required_argument, 0, 'l'},
        {"workers", required_argument, 0, 'w'},   {"log-level", required_argument, 0, 'v'},
        {"data-dir", required_argument, 0, 'D'},  {"fsync", required_argument, 0, 'f'},
        {"anti-entropy-ms", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->deadline_ms = 2000;
    o->lease_ms = 500;
    o->level = DHT_LOG_INFO;
    o->fsync = DHT_FSYNC_ALWAYS;
    o->ae_interval_ms = 1000;
    const char *e;
    if ((e = getenv("DATA_DIR")) != NULL && *e)
        o->data_dir = e;
    if ((e = getenv("FSYNC")) != NULL && *e && dht_fsync_mode_parse(e, &o->fsync) != 0)
        return fail_usage("environment FSYNC='%s' must be always|batch|never", e);
    if ((e = getenv("PORT")) != NULL && *e && dht_parse_i64(e, 1, 65535, &o->port) != 0)
        return fail_usage("environment PORT='%s' is not a port number (1-65535)", e);
    if ((e = getenv("IP")) != NULL && *e)
        o->ip = e;
    if ((e = getenv("MEMBERS")) != NULL && *e)
        o->members = e;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (dht_parse_i64(optarg, 1, 65535, &o->port) != 0)
                return fail_usage("--port '%s' is not a port number (1-65535)", optarg);
            break;
        case 'i':
            o->ip = optarg;
            break;
        case 'm':
            o->members = optarg;
            break;
        case 'n':
            if (dht_parse_i64(optarg, 1, DHT_MAX_MEMBERS, &o->id) != 0)
                return fail_usage("--id '%s' must be a member index 1..16", optarg);
            break;
        case 'd':
            if (dht_parse_i64(optarg, 10, 600000, &o->deadline_ms) != 0)
                return fail_usage("--deadline-ms '%s' must be 10..600000", optarg);
            break;
        case 'l':
            if (dht_parse_i64(optarg, 10, 60000, &o->lease_ms) != 0)
                return fail_usage("--lease-ms '%s' must be 10..60000", optarg);
            break;
        case 'w':
            if (dht_parse_i64(optarg, 1, 256, &o->workers) != 0)
                return fail_usage("--workers '%s' must be 1..256", optarg);
            break;
        case 'v':
            if (dht_log_level_parse(optarg, &o->level) != 0)
                return fail_usage("--log-level '%s' must be error|warn|info|debug", optarg);
            break;
        case 'D':
            o->data_dir = optarg;
            break;
        case 'f':
            if (dht_fsync_mode_parse(optarg, &o->fsync) != 0)
                return fail_usage("--fsync '%s' must be always|batch|never", optarg);
            break;
        case 'a':
            if (dht_parse_i64(optarg, 10, 3600000, &o->ae_interval_ms) != 0)
                return fail_usage("--anti-entropy-ms '%s' must be 10..3600000", optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return fail_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail_usage("unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Asks for the port on a terminal until it gets a valid one. */
static int prompt_port(int64_t *port)
{
    char line[128];
    for (;;) {
        printf("Port: ");
        fflush(stdout);
        if (fgets(line, sizeof line, stdin) == NULL)
            return -1;
        line[strcspn(line, "\r\n")] = '\0';
        if (dht_parse_i64(line, 1, 65535, port) == 0)
            return 0;
        printf("'%s' is not a port number (1-65535); try again.\n", line);
    }
}

/* Binds a throwaway socket to tell "port busy" from "not our address" with
 * a precise message before gRPC, which only says it failed. */
static int check_listen(const char *ip, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(ip, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "bad listen address '%s': %s", ip, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    rc = bind(fd, res->ai_addr, res->ai_addrlen);
    int saved = errno;
    close(fd);
    freeaddrinfo(res);
    if (rc == 0)
        return 0;
    if (saved == EADDRINUSE)
        snprintf(err, errlen, "port %d is already in use on %s", port, ip);
    else if (saved == EADDRNOTAVAIL)
        snprintf(err, errlen, "%s is not an address of this host", ip);
    else
        snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, port, strerror(saved));
    return -1;
}

static bool is_local_host(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "0.0.0.0") == 0;
}

/* Index of this node in members, or -1. */
static int find_self(char members[][256], int n, const char *ip, int port)
{
    for (int i = 0; i < n; i++) {
        const char *colon = strrchr(members[i], ':');
        char host[256];
        snprintf(host, sizeof host, "%.*s", (int)(colon - members[i]), members[i]);
        if (atoi(colon + 1) != port)
            continue;
        if (ip ? strcmp(host, ip) == 0 : is_local_host(host))
            return i;
    }
    return -1;
}

/* ---- public service: run the coordinator on the caller's behalf ------------ */

typedef struct {
    dht_coord *_Atomic coord; /* set once the transport exists */
    dht_replica *replica;
    dht_transport *transport;
    dht_durable *durable;
    dht_group_commit *applier;
} node;

typedef struct {
    dht_done_fn done;
    void *done_arg;
    int64_t key, value;
    int64_t start; /* for the debug log's latency */
} pub_call;

static void pub_put_done(void *arg, dht_put_outcome outcome, const char *reason)
{
    pub_call *p = arg;
    dht_msg rep = {.type = DHT_MSG_PUT, .ok = outcome == DHT_PUT_APPLIED, .outcome = outcome};
    DHT_DEBUG("put(%lld, %lld) -> %s%s%s (%.2f ms)", (long long)p->key, (long long)p->value,
              dht_put_outcome_name(outcome), reason ? ": " : "", reason ? reason : "",
              (double)(dht_now_ns() - p->start) / 1e6);
    p->done(p->done_arg, DHT_OK, &rep, reason);
    free(p);
}

static void pub_get_done(void *arg, int ok, int64_t value, const char *reason)
{
    pub_call *p = arg;
    dht_msg rep = {.type = DHT_MSG_GET, .value = value, .ok = true};
    DHT_DEBUG("get(%lld) -> %s %lld (%.2f ms)", (long long)p->key, ok ? "ok" : "failed",
              (long long)value, (double)(dht_now_ns() - p->start) / 1e6);
    p->done(p->done_arg, ok ? DHT_OK : DHT_ERR_UNAVAILABLE, ok ? &rep : NULL, reason);
    free(p);
}

static void on_public(void *arg, const dht_msg *req, int64_t deadline_ns, dht_done_fn done,
                      void *done_arg)
{
    node *nd = arg;
    dht_coord *coord = atomic_load(&nd->coord);
    if (coord == NULL) {
        done(done_arg, DHT_ERR_UNAVAILABLE, NULL, "node is starting");
        return;
    }
    pub_call *p = malloc(sizeof *p);
    int rc = -1;
    if (p != NULL) {
        *p = (pub_call){done, done_arg, req->key, req->value, dht_now_ns()};
        /* Finish a little before the caller gives up, so that it hears
         * the outcome rather than a timeout. */
        int64_t dl = deadline_ns == INT64_MAX ? INT64_MAX : deadline_ns - 5 * DHT_NS_PER_MS;
        rc = req->type == DHT_MSG_PUT
                 ? dht_coord_put_by(coord, req->key, req->value, dl, pub_put_done, p)
                 : dht_coord_get_by(coord, req->key, dl, pub_get_done, p);
    }
    if (rc != 0) {
        free(p);
        done(done_arg, DHT_ERR_UNAVAILABLE, NULL, "out of memory");
    }
}

static void on_replica(void *arg, const dht_msg *req, dht_msg *reply)
{
    node *nd = arg;
    dht_replica_handle(nd->replica, dht_now_ns(), req, reply);
}

/* Batches with writes go to the applier thread (group commit, no fsync on
 * a transport thread); the rest is answered at once. */
static void on_replica_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                             void (*done)(void *), void *done_arg)
{
    node *nd = arg;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].type == DHT_MSG_WRITE &&
            dht_group_commit_submit(nd->applier, reqs, reps, n, done, done_arg) == 0)
            return;
    }
    dht_replica_handle_batch(nd->replica, dht_now_ns(), reqs, reps, n);
    done(done_arg);
}

static int is_serving(void *arg)
{
    node *nd = arg;
    return !dht_replica_recovering(nd->replica);
}

static void on_ready(void *arg, const char *why)
{
    node *nd = arg;
    dht_durable_mark_initialized(nd->durable, why);
    DHT_INFO("serving reads (%s)", why);
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.port == 0) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "server: no port given (use --port or PORT)\n");
            return 2;
        }
        if (prompt_port(&o.port) != 0) {
            fprintf(stderr, "server: no port given\n");
            return 2;
        }
    }

    char members[DHT_MAX_MEMBERS][256], err[512];
    int n = dht_parse_members(o.members ? o.members : DEFAULT_MEMBERS, members, DHT_MAX_MEMBERS,
                              err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "server: bad members list: %s\n", err);
        return 2;
    }
    int self = o.id ? (int)o.id - 1 : find_self(members, n, o.ip, (int)o.port);
    if (self < 0 || self >= n) {
        fprintf(stderr,
                "server: this node (%s:%lld) is not in the members list %s; "
                "fix MEMBERS or pass --id N\n",
                o.ip ? o.ip : "127.0.0.1", (long long)o.port, o.members ? o.members : DEFAULT_MEMBERS);
        return 2;
    }
    char name[32];
    snprintf(name, sizeof name, "node %d", self + 1);
    dht_log_init(name, o.level, stderr);

    const char *listen_ip = o.ip ? o.ip : "0.0.0.0";
    if (check_listen(listen_ip, (int)o.port, err, sizeof err) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return 1;
    }

    /* Signals are taken by sigwait in main only: block them before any
     * thread exists so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit must fail the write (EFBIG, a clean put failure)
     * rather than kill the node. */
    signal(SIGXFSZ, SIG_IGN);

    node nd = {0};
    nd.replica = dht_replica_new();
    char data_dir[512];
    if (o.data_dir)
        snprintf(data_dir, sizeof data_dir, "%s", o.data_dir);
    else
        snprintf(data_dir, sizeof data_dir, "data/node%d", self + 1);
    int64_t t0 = dht_now_ns();
    if (nd.replica == NULL ||
        dht_durable_open(data_dir, o.fsync, nd.replica, &nd.durable, err, sizeof err) != 0) {
        fprintf(stderr, "server: %s\n", nd.replica ? err : "out of memory");
        dht_replica_free(nd.replica);
        return 1;
    }
    DHT_INFO("data directory %s (fsync %s): %zu keys loaded in %.1f ms%s", data_dir,
             dht_fsync_mode_name(o.fsync), dht_replica_size(nd.replica),
             (double)(dht_now_ns() - t0) / 1e6,
             dht_durable_initialized(nd.durable) ? "" : ", not initialized: recovering");
    nd.applier = dht_group_commit_start(nd.replica);
    if (nd.applier == NULL) {
        fprintf(stderr, "server: cannot start the applier thread\n");
        return 1;
    }
    const char *peers[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        peers[i] = members[i];
    char listen_addr[300];
    snprintf(listen_addr, sizeof listen_addr, strchr(listen_ip, ':') ? "[%s]:%lld" : "%s:%lld",
             listen_ip, (long long)o.port);
    dht_service svc = {.replica = on_replica, .replica_batch = on_replica_batch,
                       .client = on_public, .arg = &nd};
    dht_grpc_config gc = {.peers = peers, .npeers = n, .workers = (int)o.workers, .self = self,
                          .listen_addr = listen_addr, .service = &svc,
                          .serving = is_serving, .serving_arg = &nd};
    dht_grpc *g;
    if (dht_grpc_start(&gc, &g, err, sizeof err) != 0) {
        fprintf(stderr, "server: %s\n", err);
        dht_group_commit_stop(nd.applier);
        dht_durable_close(nd.durable);
        dht_replica_free(nd.replica);
        return 1;
    }
    nd.transport = dht_grpc_transport(g);
    dht_coord_config cc;
    dht_coord_config_default(&cc);
    cc.deadline_ns = o.deadline_ms * DHT_NS_PER_MS;
    cc.lease_ms = (uint32_t)o.lease_ms;
    cc.self = self;
    atomic_store(&nd.coord, dht_coord_new(nd.transport, &cc));

    dht_recovery_config sc;
    dht_recovery_config_default(&sc);
    sc.self = self;
    sc.ae_interval_ns = o.ae_interval_ms * DHT_NS_PER_MS;
    sc.on_ready = on_ready;
    sc.arg = &nd;
    dht_recovery *sync = dht_recovery_start(nd.transport, nd.replica, &sc);

    DHT_INFO("serving on %s as member %d of %d (%s), quorum %d", listen_addr, self + 1, n,
             o.members ? o.members : DEFAULT_MEMBERS, n / 2 + 1);

    int sig = 0;
    sigwait(&sigs, &sig);
    DHT_INFO("%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    dht_recovery_stop(sync);
    dht_grpc_stop(g);
    dht_group_commit_stop(nd.applier);
    dht_coord_free(atomic_load(&nd.coord));
    dht_durable_close(nd.durable);
    dht_replica_free(nd.replica);
    DHT_INFO("stopped");
    return 0;
}
