/* server: one node of the store (a replica, plus the public KeyValue
 * service that coordinates puts and gets for any key on the caller's
 * behalf).  This file only turns flags and the environment into a
 * configuration, handles signals, and starts and stops the node
 * (lib/node/server_node.c); what a request does is decided below it.
 *
 * Configuration comes from flags, then the environment (IP, PORT, MEMBERS,
 * REPLICAS...), then defaults; with no port at all and a terminal on stdin
 * it asks for one, like the exam's Go demo.  The TLS files are read here and their
 * text handed down (README, "Security").  SIGINT/SIGTERM stop it cleanly: the main
 * thread waits for them with sigwait while the transport's threads serve.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/pem.h"
#include "base/util.h"
#include "net/transport_grpc.h"
#include "node/server_node.h"
#include "protocol/membership.h"

#define DHT_STR_(x) #x
#define DHT_STR(x) DHT_STR_(x)
#define DEFAULT_MEMBERS "127.0.0.1:50001,127.0.0.1:50002,127.0.0.1:50003"

typedef struct {
    int64_t port;
    const char *ip;
    const char *members;
    const char *replicas;     /* R as given, checked against the members; NULL: default */
    bool replicas_env;        /* it came from REPLICAS, not --replicas */
    int64_t id; /* 1-based index into members; 0: find by address */
    int64_t deadline_ms, lease_ms, workers;
    dht_log_level level;
    const char *data_dir; /* NULL: data/node<N> under the working directory */
    dht_fsync_mode fsync;
    int64_t ae_interval_ms;
    dht_tls_paths tls; /* all three or none */
    bool client_cert_auth;
    bool join;
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
            "  --replicas R      members that store each key, 1..N of the N members (env\n"
            "                    REPLICAS; default min(3, N)); every member must be given\n"
            "                    the same R.  With R = N (e.g. three nodes, R = 3) every\n"
            "                    node stores every key, as before partitioning\n"
            "  --id N            take this node's address (its identity) from entry N\n"
            "                    (1-based) of the member list instead of IP:PORT\n"
            "  --join            wait to be added to a running cluster (env JOIN=1): MEMBERS\n"
            "                    names at least one current member and need not name this\n"
            "                    node; the data directory must be empty.  Then run\n"
            "                    `client --servers MEMBERS members add IP:PORT`\n"
            "  --deadline-ms MS  deadline of each coordinated put/get (default 2000)\n"
            "  --lease-ms MS     lock lease (default 500)\n"
            "  --workers N       completion-queue threads (default: number of cores)\n"
            "  --data-dir DIR    write-ahead log, snapshots and the recorded configuration\n"
            "                    (env DATA_DIR; default data/HOST_PORT of this node's\n"
            "                    address in the working directory, or data/nodeN of an\n"
            "                    earlier version when that exists)\n"
            "  --fsync MODE      always|batch|never (env FSYNC; default always):\n"
            "                    always = fsync each write before acking, batch = group\n"
            "                    commit (one fsync for concurrent writes, ack after it),\n"
            "                    never = no fsync (survives a process crash, not a power cut)\n"
            "  --anti-entropy-ms MS  pause between background catch-up passes (default 1000)\n"
            "  --log-level L     error|warn|info|debug (default info; debug logs each request)\n"
            "  --tls-cert FILE   this member's certificate chain (PEM; env TLS_CERT): with\n"
            "                    --tls-key and --tls-ca the node serves only TLS, dials its\n"
            "                    peers with TLS presenting this certificate, and serves\n"
            "                    dht.Replica only to certificates of the CA with the URI\n"
            "                    SAN dht:peer; its SANs must hold every name it is dialled by\n"
            "  --tls-key FILE    the certificate's private key (PEM; env TLS_KEY)\n"
            "  --tls-ca FILE     the cluster CA (PEM, may hold several; env TLS_CA)\n"
            "  --client-cert-auth  KeyValue callers need a certificate of the CA too, any\n"
            "                    role (env CLIENT_CERT_AUTH=1; needs the TLS flags)\n"
            "  --help            this text\n"
            "Once a node has started, its data directory records the configuration it\n"
            "knows (membership changes update it): MEMBERS is then only a seed.\n"
            "Flags win over environment variables.  Without the TLS flags the node serves\n"
            "plaintext and trusts anyone who can reach its port as a member.\n");
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
        {"replicas", required_argument, 0, 'r'},
        {"deadline-ms", required_argument, 0, 'd'}, {"lease-ms", required_argument, 0, 'l'},
        {"workers", required_argument, 0, 'w'},   {"log-level", required_argument, 0, 'v'},
        {"data-dir", required_argument, 0, 'D'},  {"fsync", required_argument, 0, 'f'},
        {"anti-entropy-ms", required_argument, 0, 'a'},
        {"tls-cert", required_argument, 0, 'C'},  {"tls-key", required_argument, 0, 'K'},
        {"tls-ca", required_argument, 0, 'A'},    {"client-cert-auth", no_argument, 0, 'c'},
        {"join", no_argument, 0, 'J'},
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
    if ((e = getenv("REPLICAS")) != NULL && *e) {
        o->replicas = e;
        o->replicas_env = true;
    }
    dht_tls_paths_env(&o->tls);
    if ((e = getenv("JOIN")) != NULL && *e) {
        if (strcmp(e, "1") != 0 && strcmp(e, "0") != 0)
            return fail_usage("environment JOIN='%s' must be 1 or 0", e);
        o->join = e[0] == '1';
    }
    if ((e = getenv("CLIENT_CERT_AUTH")) != NULL && *e) {
        if (strcmp(e, "1") != 0 && strcmp(e, "0") != 0)
            return fail_usage("environment CLIENT_CERT_AUTH='%s' must be 1 or 0", e);
        o->client_cert_auth = e[0] == '1';
    }
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
        case 'r':
            o->replicas = optarg;
            o->replicas_env = false;
            break;
        case 'n':
            if (dht_parse_i64(optarg, 1, DHT_MAX_MEMBERS, &o->id) != 0)
                return fail_usage("--id '%s' must be a member index 1.." DHT_STR(DHT_MAX_MEMBERS),
                                  optarg);
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
        case 'C':
            o->tls.cert = optarg;
            break;
        case 'K':
            o->tls.key = optarg;
            break;
        case 'A':
            o->tls.ca = optarg;
            break;
        case 'c':
            o->client_cert_auth = true;
            break;
        case 'J':
            o->join = true;
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
    int ntls = !!o->tls.cert + !!o->tls.key + !!o->tls.ca;
    if (ntls != 0 && ntls != 3)
        return fail_usage("%s: TLS needs all three of --tls-cert, --tls-key and --tls-ca "
                          "(or TLS_CERT, TLS_KEY, TLS_CA), or none of them",
                          !o->tls.cert ? "--tls-cert missing"
                          : !o->tls.key ? "--tls-key missing"
                                        : "--tls-ca missing");
    if (o->client_cert_auth && ntls == 0)
        return fail_usage("%s needs --tls-cert, --tls-key and --tls-ca", "--client-cert-auth");
    return 0;
}

/* The default data directory follows the node's address (its identity):
 * data/HOST_PORT.  A directory of an earlier version, data/nodeN for
 * entry N of MEMBERS, is kept when it exists and the new one does not. */
static void default_data_dir(const char *self_addr, int self, char *out, size_t len)
{
    char norm[DHT_ADDR_MAX], why[DHT_ADDR_MAX + 64];
    if (dht_member_addr_normalise(self_addr, norm, sizeof norm, why, sizeof why) != 0)
        snprintf(norm, sizeof norm, "%s", self_addr);
    char name[DHT_ADDR_MAX];
    size_t k = 0;
    for (const char *p = norm; *p && k + 1 < sizeof name; p++)
        if (*p != '[' && *p != ']')
            name[k++] = *p == ':' ? '_' : *p;
    name[k] = '\0';
    snprintf(out, len, "data/%s", name);
    struct stat st;
    char old[64];
    if (self >= 0 && stat(out, &st) != 0) {
        snprintf(old, sizeof old, "data/node%d", self + 1);
        if (stat(old, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(out, len, "%s", old);
    }
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

    /* This node's identity is the address it advertises: IP (127.0.0.1
     * when listening on every address) and PORT, or, with --id N, the Nth
     * listed address.  The membership module finds it in the list after
     * normalising both (localhost, 0.0.0.0 and 127.0.0.1 are one host). */
    const char *list = o.members ? o.members : DEFAULT_MEMBERS;
    char err[DHT_SERVER_NODE_ERR_MAX], self_addr[DHT_ADDR_MAX];
    dht_membership *members;
    if (dht_membership_new(list, NULL, 0, &members, err, sizeof err) != 0) {
        fprintf(stderr, "server: bad members list: %s\n", err);
        return 2;
    }
    int n = dht_membership_size(members);
    if (o.id > n) {
        fprintf(stderr, "server: --id %lld but the members list %s has %d entries\n",
                (long long)o.id, list, n);
        dht_membership_free(members);
        return 2;
    }
    int64_t replicas = 0; /* 0: the default, min(3, n) */
    /* A joining node's R comes from the cluster; else R is of the members. */
    int rmax = o.join ? DHT_MAX_MEMBERS : n;
    if (o.replicas && dht_parse_i64(o.replicas, 1, rmax, &replicas) != 0) {
        char what[DHT_ADDR_MAX];
        snprintf(what, sizeof what, o.replicas_env ? "environment REPLICAS='%s'" : "--replicas '%s'",
                 o.replicas);
        fprintf(stderr,
                "server: %s is not a number of replicas per key from 1 to %d: the members "
                "list %s has %d member%s\n",
                what, rmax, list, n, n == 1 ? "" : "s");
        dht_membership_free(members);
        return 2;
    }
    if (o.id)
        snprintf(self_addr, sizeof self_addr, "%s", dht_membership_addr(members, (int)o.id - 1));
    else
        snprintf(self_addr, sizeof self_addr, strchr(o.ip ? o.ip : "", ':') ? "[%s]:%lld" : "%s:%lld",
                 o.ip ? o.ip : "127.0.0.1", (long long)o.port);
    int self = dht_membership_find(members, self_addr);
    dht_membership_free(members);
    char data_dir[512];
    if (o.data_dir)
        snprintf(data_dir, sizeof data_dir, "%s", o.data_dir);
    else
        default_data_dir(self_addr, self, data_dir, sizeof data_dir);
    if (self < 0 && !o.join) {
        /* Only a directory that records a configuration (this node was
         * added later) lets MEMBERS be mere seeds. */
        char rec[600];
        struct stat st;
        snprintf(rec, sizeof rec, "%s/config", data_dir);
        if (stat(rec, &st) != 0) {
            fprintf(stderr,
                    "server: this node (%s) is not in the members list %s; fix MEMBERS or "
                    "pass --id N, or start it with --join to add it to a running cluster\n",
                    self_addr, list);
            return 2;
        }
    }
    char name[DHT_ADDR_MAX + 8];
    if (self >= 0)
        snprintf(name, sizeof name, "node %d", self + 1);
    else
        snprintf(name, sizeof name, "node %s", self_addr);
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
    /* Every client connection is a descriptor: take all the system allows,
     * so that thousands of idle connections do not lock out the rest. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    /* After the signal mask: checking the files starts gRPC, whose threads
     * must not take SIGTERM. */
    dht_pem_set pem = {0};
    dht_grpc_tls tls = {0};
    if (o.tls.ca && dht_grpc_tls_load(o.tls.cert, o.tls.key, o.tls.ca, &pem, &tls, err,
                                      sizeof err) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return 1;
    }

    char listen_addr[300];
    snprintf(listen_addr, sizeof listen_addr, strchr(listen_ip, ':') ? "[%s]:%lld" : "%s:%lld",
             listen_ip, (long long)o.port);
    dht_server_node_config sc = {.members = list, .self = self_addr, .replicas = (int)replicas,
                                 .replicas_given = o.replicas != NULL, .join = o.join,
                                 .listen_addr = listen_addr,
                                 .data_dir = data_dir, .fsync = o.fsync, .workers = (int)o.workers,
                                 .deadline_ms = o.deadline_ms, .lease_ms = o.lease_ms,
                                 .ae_interval_ms = o.ae_interval_ms,
                                 .tls = o.tls.ca ? &tls : NULL};
    tls.client_cert_auth = o.client_cert_auth;
    dht_server_node *node;
    if (dht_server_node_start(&sc, &node, err, sizeof err) != 0) {
        fprintf(stderr, "server: %s\n", err);
        dht_pem_set_free(&pem);
        return 1;
    }
    dht_pem_set_free(&pem); /* the transport keeps its own copy */
    if (self >= 0)
        DHT_INFO("serving on %s as member %d of %d (%s; the data directory's recorded "
                 "configuration, if any, decides)",
                 listen_addr, self + 1, n, list);
    else
        DHT_INFO("serving on %s as %s (%s)", listen_addr, self_addr,
                 o.join ? "joining" : "a member its data directory records");
    if (o.tls.ca)
        DHT_INFO("TLS only: dht.Replica for certificates of %s with the URI SAN %s; KeyValue "
                 "for %s", o.tls.ca, DHT_TLS_PEER_ROLE,
                 o.client_cert_auth ? "any certificate of that CA" : "any TLS client");
    else
        DHT_WARN("serving PLAINTEXT without TLS: anyone who can reach port %lld is trusted as "
                 "a member and may read and change any key and any replica's state (use "
                 "--tls-cert/--tls-key/--tls-ca outside a private network; README, Security)",
                 (long long)o.port);

    int sig = 0;
    sigwait(&sigs, &sig);
    DHT_INFO("%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    dht_server_node_stop(node);
    DHT_INFO("stopped");
    return 0;
}
