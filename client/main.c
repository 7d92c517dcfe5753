/* client: command-line access to the store.
 *
 *   client [options] put K V | get K | random | health | stats | locate K
 *                    | members [add|remove HOST:PORT]
 *
 * By default the client is itself the coordinator: it locks, writes and
 * reads on the replicas of each key (fan-out), so it keeps working while
 * any minority of them is down.  It learns the nodes' configuration from
 * the servers listed in --servers and follows its changes (follow.h).  With --via it sends plain
 * KeyValue calls to the listed nodes instead (`random` following the
 * members: follow_via_new), and with --etcd it drives an
 * etcd cluster through etcd's own KV API (the benchmark's baseline, see
 * client/etcd.h and bench/bench.sh).  With no command it runs `random` at
 * a readable pace, like the exam demo.  With --tls-ca it speaks TLS to
 * every node, presenting --tls-cert when given (README, "Security").
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "follow.h"
#include "members.h"
#include "protocol/control.h"
#include "protocol/coordinator.h"
#include "protocol/membership.h"
#include "kvclient.h"
#include "base/log.h"
#include "base/pem.h"
#include "random.h"
#include "net/transport_grpc.h"
#include "base/util.h"

#define DEFAULT_SERVERS "127.0.0.1:50001,127.0.0.1:50002,127.0.0.1:50003"
/* A node answers a membership change when it is complete, which it gives
 * up to 120 s: a little more, so that its answer arrives. */
#define MEMBERS_TIMEOUT_MS 130000

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig)
{
    (void)sig;
    if (g_stop) /* second Ctrl+C: leave now */
        _exit(130);
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: client [options] [put K V | get K | random | health | stats | locate K |\n"
            "                         members [add|remove HOST:PORT]]\n"
            "commands:\n"
            "  put K V          store V under K; prints true/false (exit 0/1); an unknown\n"
            "                   outcome prints false and the reason on stderr\n"
            "  get K            prints the value of K (0 if never written); exit 1 on error\n"
            "  random           randomized load (default when no command is given, then\n"
            "                   with --interval-ms 500 unless set)\n"
            "  health           asks a node's grpc.health.v1 service (the first node of\n"
            "                   --via, --etcd or --servers); exit 0 when it is serving\n"
            "  replica-read K   with --via: that node's own stored value and version of K\n"
            "                   (\"VALUE COUNTER WRITER\"), bypassing the protocol: a\n"
            "                   diagnostic for replication and catch-up\n"
            "  stats            what nodes say about themselves (dht.Admin/Stats), as JSON:\n"
            "                   with --via, one object of its first node (exit 1 with the\n"
            "                   reason if it does not answer); else one line per server of\n"
            "                   --servers, {\"address\":..., \"reachable\": false, \"error\":...}\n"
            "                   for those that do not (exit 1 if any)\n"
            "  locate K         the partition of K and the servers that store it, as the\n"
            "                   fan-out client places it: \"partition P: ADDR ADDR ADDR\"\n"
            "                   (during a membership change a second line, \"changing to\n"
            "                   epoch E: partition P: ...\", for the next configuration)\n"
            "  members          the cluster's configuration, as the node with the highest\n"
            "                   view number among --servers (or --via) reports it:\n"
            "                   \"epoch E: replicas=R members=A,B,C\" and, during a change,\n"
            "                   \"changing to epoch E+1: replicas=R members=...\"; which node\n"
            "                   answered, lagging and silent nodes on stderr; with --json\n"
            "                   one object; exit 1 when no node answers\n"
            "  members add HOST:PORT | members remove HOST:PORT\n"
            "                   asks the first listed node (the next if it is unreachable)\n"
            "                   to change the members, waits for it to complete the change\n"
            "                   (up to --timeout) and prints the node's answer; exit 0:\n"
            "                   done, 1: refused or failed (e.g. another change won, already\n"
            "                   a member, fewer members than R would remain, no node\n"
            "                   reachable), 3: outcome unknown (no answer in time or the\n"
            "                   connection broke: run `members`; repeating the command is\n"
            "                   safe).  The node being added must run with --join.  Over\n"
            "                   TLS it needs a peer-role certificate (--tls-cert)\n"
            "options:\n"
            "  --servers LIST   HOST:PORT,... of the nodes to start from (env MEMBERS;\n"
            "                   default " DEFAULT_SERVERS "): the\n"
            "                   fan-out client asks them for the configuration and follows\n"
            "                   its changes (members added or removed) while it runs\n"
            "  --replicas R     replicas per key of the fan-out client and locate, 1..128\n"
            "                   (env REPLICAS); it must be what the nodes report (else exit\n"
            "                   1).  Without it the client takes R from the servers' Stats,\n"
            "                   or, if none answers, assumes min(3, N) with a warning\n"
            "  --via LIST       HOST:PORT,... send to these nodes' public KeyValue\n"
            "                   service instead of fanning out to every replica; random's\n"
            "                   client i uses node i %% n, and moves on to the next node\n"
            "                   after a call that could not reach its node.  random also\n"
            "                   follows the members (the nodes' Stats, every 2 s and after\n"
            "                   such a failure): a listed node that is not or no longer a\n"
            "                   member is skipped, and when none of the listed nodes is\n"
            "                   left, the clients spread over the members the nodes report\n"
            "  --etcd LIST      HOST:PORT,... of etcd members: put/get over etcd's v3 KV\n"
            "                   API instead (Put/Range, linearizable; key = decimal text,\n"
            "                   value = 8 bytes little endian), nodes used as with --via\n"
            "  --deadline-ms MS deadline of each put/get and Stats call (default 2000)\n"
            "  --timeout S      members add/remove: how long to wait for the node's answer\n"
            "                   (default 130 s)\n"
            "  --workers N      completion-queue threads (default 2)\n"
            "  --log-level L    error|warn|info|debug (default error)\n"
            "  --tls-ca FILE    TLS: the cluster CA (PEM; env TLS_CA); each node's name as\n"
            "                   listed must be in its certificate\n"
            "  --tls-cert FILE  TLS: present this certificate chain (PEM; env TLS_CERT);\n"
            "                   the fan-out mode needs one with the peer role (URI SAN\n"
            "                   dht:peer, make-certs.sh's coordinator.crt); --via needs\n"
            "                   one only from a node run with --client-cert-auth\n"
            "  --tls-key FILE   its private key (PEM; env TLS_KEY)\n"
            "random options:\n"
            "  --keys N         keys 0..N-1 (default 100)\n"
            "  --put-ratio R    fraction of puts, 0..1 (default 0.5)\n"
            "  --concurrency N  concurrent logical clients, each one operation at a time\n"
            "                   (default 1; driven asynchronously by the --workers threads)\n"
            "  --ops N          stop after N operations\n"
            "  --duration S     stop after S seconds (without --ops/--duration: Ctrl+C)\n"
            "  --interval-ms MS pause between one client's operations (default 0)\n"
            "  --history FILE   record every operation (JSON Lines, see docs/design.md)\n"
            "  --seed N         seed of keys and choices (default random)\n"
            "  --quiet          print only the summary\n"
            "  --progress       print ops/s on stderr every second\n"
            "  --json           summary as one JSON object (ops, errors, ops_per_sec,\n"
            "                   p50/p90/p99/p999/max_ms, first_error); also for members\n"
            "  --help           this text\n");
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "client: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

typedef struct {
    const char *servers, *via, *etcd;
    dht_tls_paths tls;
    int64_t deadline_ms, workers;
    int64_t replicas; /* 0: not given */
    int64_t timeout_ms; /* members add/remove; 0: not given */
    dht_log_level level;
    random_opts r;
    bool interval_set;
} options;

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"servers", required_argument, 0, 's'},     {"via", required_argument, 0, 'v'},
        {"etcd", required_argument, 0, 'e'},
        {"deadline-ms", required_argument, 0, 'd'}, {"workers", required_argument, 0, 'w'},
        {"log-level", required_argument, 0, 'L'},   {"keys", required_argument, 0, 'k'},
        {"put-ratio", required_argument, 0, 'r'},   {"concurrency", required_argument, 0, 'c'},
        {"ops", required_argument, 0, 'n'},         {"duration", required_argument, 0, 't'},
        {"interval-ms", required_argument, 0, 'i'}, {"history", required_argument, 0, 'H'},
        {"seed", required_argument, 0, 'S'},        {"quiet", no_argument, 0, 'q'},
        {"progress", no_argument, 0, 'p'},          {"json", no_argument, 0, 'j'},
        {"tls-cert", required_argument, 0, 'C'},    {"tls-key", required_argument, 0, 'K'},
        {"tls-ca", required_argument, 0, 'A'},      {"replicas", required_argument, 0, 'R'},
        {"timeout", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    int c;
    int64_t v;
    opterr = 0;
    /* '+': stop at the command, so `put -5 7` keeps its negative numbers. */
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o->servers = optarg;
            break;
        case 'v':
            o->via = optarg;
            break;
        case 'e':
            o->etcd = optarg;
            break;
        case 'd':
            if (dht_parse_i64(optarg, 10, 600000, &o->deadline_ms))
                return bad("--deadline-ms '%s' must be 10..600000", optarg);
            break;
        case 'w':
            if (dht_parse_i64(optarg, 1, 64, &o->workers))
                return bad("--workers '%s' must be 1..64", optarg);
            break;
        case 'T': {
            double secs;
            if (dht_parse_double(optarg, 0.001, 3600, &secs))
                return bad("--timeout '%s' must be a number of seconds, 0.001..3600", optarg);
            o->timeout_ms = (int64_t)(secs * 1000 + 0.5);
            if (o->timeout_ms < 1)
                o->timeout_ms = 1;
            break;
        }
        case 'R':
            if (dht_parse_i64(optarg, 1, DHT_MAX_MEMBERS, &o->replicas))
                return bad("--replicas '%s' must be a whole number of replicas, 1..N", optarg);
            break;
        case 'L':
            if (dht_log_level_parse(optarg, &o->level))
                return bad("--log-level '%s' must be error|warn|info|debug", optarg);
            break;
        case 'k':
            if (dht_parse_i64(optarg, 1, INT64_MAX, &o->r.keys))
                return bad("--keys '%s' must be a positive number", optarg);
            break;
        case 'r':
            if (dht_parse_double(optarg, 0, 1, &o->r.put_ratio))
                return bad("--put-ratio '%s' must be a number in 0..1", optarg);
            break;
        case 'c':
            if (dht_parse_i64(optarg, 1, 1024, &o->r.concurrency))
                return bad("--concurrency '%s' must be 1..1024", optarg);
            break;
        case 'n':
            if (dht_parse_i64(optarg, 1, INT64_MAX, &o->r.ops))
                return bad("--ops '%s' must be a positive number", optarg);
            break;
        case 't':
            if (dht_parse_double(optarg, 0.001, 1e7, &o->r.duration_s))
                return bad("--duration '%s' must be a positive number of seconds", optarg);
            break;
        case 'i':
            if (dht_parse_i64(optarg, 0, 3600000, &o->r.interval_ms))
                return bad("--interval-ms '%s' must be 0..3600000", optarg);
            o->interval_set = true;
            break;
        case 'H':
            o->r.history_path = optarg;
            break;
        case 'S':
            if (dht_parse_i64(optarg, 0, INT64_MAX, &v))
                return bad("--seed '%s' must be a non-negative number", optarg);
            o->r.seed = (uint64_t)v;
            break;
        case 'q':
            o->r.quiet = true;
            break;
        case 'p':
            o->r.progress = true;
            break;
        case 'j':
            o->r.json = true;
            o->r.quiet = true;
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
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return bad("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    return 0;
}

static void on_peer_state(void *arg, int peer, const char *addr, int up)
{
    (void)arg;
    (void)peer;
    char ts[40];
    dht_log_timestamp(ts, sizeof ts);
    if (up)
        fprintf(stderr, "%s [client %d] notice: server %s answers again\n", ts, (int)getpid(),
                addr);
    else
        fprintf(stderr,
                "%s [client %d] warning: server %s is not answering; carrying on with the "
                "live ones\n",
                ts, (int)getpid(), addr);
}

static int cmd_health(const char *addr, int64_t deadline_ms, const dht_grpc_tls *tls)
{
    int status;
    char details[256];
    uint8_t resp[64];
    size_t resp_len = sizeof resp;
    if (dht_grpc_call_raw_tls(tls, addr, DHT_HEALTH_METHOD, "", 0, deadline_ms * DHT_NS_PER_MS,
                              &status, details, sizeof details, resp, &resp_len) != 0) {
        fprintf(stderr, "client: health call to %s failed\n", addr);
        return 1;
    }
    if (status != 0) {
        printf("%s: %s %s\n", addr, dht_grpc_status_name(status), details);
        return 1;
    }
    bool serving = resp_len == 2 && resp[0] == 0x08 && resp[1] == 1;
    printf("%s: %s\n", addr, serving ? "SERVING" : "NOT_SERVING");
    return serving ? 0 : 1;
}

/* stats: the first node (one) or every node of m, as JSON lines. */
static int cmd_stats(const dht_membership *m, bool one, int64_t deadline_ms,
                     const dht_grpc_tls *tls)
{
    int n = one ? 1 : dht_membership_size(m);
    const char *addrs[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        addrs[i] = dht_membership_addr(m, i);
    admin_result *res = calloc((size_t)n, sizeof *res);
    char err[256] = "out of memory";
    int64_t timeout = deadline_ms * DHT_NS_PER_MS;
    int answered =
        res ? admin_stats_all(addrs, n, tls, timeout, false, res, err, sizeof err) : -1;
    if (answered < 0)
        fprintf(stderr, "client: %s\n", err);
    else if (one && !res[0].ok)
        fprintf(stderr, "client: stats of %s failed: %s\n", addrs[0], res[0].error);
    else
        for (int i = 0; i < n; i++)
            admin_print_json(stdout, &res[i]);
    if (res)
        admin_results_free(res, n);
    free(res);
    return answered == n ? 0 : 1;
}

/* The replicas of key under m, in position (--servers) order. */
static void print_replicas(const dht_membership *m, int64_t key)
{
    dht_peerset rs = dht_membership_replicas(m, key);
    printf("partition %u:", (unsigned)dht_partition_of(key));
    for (int p = 0; p < dht_membership_size(m); p++)
        if (dht_peerset_has(&rs, p))
            printf(" %s", dht_membership_addr(m, p));
    printf("\n");
}

/* locate: the partition of key and the servers that store it (during a
 * change, under both configurations: the key is on both). */
static void cmd_locate(const dht_view *v, int64_t key)
{
    print_replicas(dht_view_current(v), key);
    if (dht_view_joint(v)) {
        printf("changing to epoch %llu: ", (unsigned long long)dht_view_epoch(v) + 1);
        print_replicas(dht_view_next(v), key);
    }
}

/* The fingerprint of the first --via node's configuration (0 when it does
 * not say): what its replica requests (replica-read) must carry. */
static uint64_t via_fingerprint(const dht_membership *m, int64_t deadline_ms,
                                const dht_grpc_tls *tls)
{
    const char *addr = dht_membership_addr(m, 0);
    admin_result r;
    char err[256];
    uint64_t fp = 0;
    if (admin_stats_all(&addr, 1, tls, deadline_ms * DHT_NS_PER_MS, true, &r, err, sizeof err) == 1)
        fp = r.stats.fingerprint;
    admin_results_free(&r, 1);
    return fp;
}

int main(int argc, char **argv)
{
    options o = {.deadline_ms = 2000, .workers = 2, .level = DHT_LOG_ERROR};
    o.r.keys = 100;
    o.r.put_ratio = 0.5;
    o.r.concurrency = 1;
    const char *env = getenv("MEMBERS");
    o.servers = env && *env ? env : DEFAULT_SERVERS;
    env = getenv("REPLICAS");
    if (env && *env && dht_parse_i64(env, 1, DHT_MAX_MEMBERS, &o.replicas))
        return bad("environment REPLICAS='%s' must be a whole number of replicas, 1..N", env);
    dht_tls_paths_env(&o.tls);
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;

    const char *cmd = optind < argc ? argv[optind] : "random";
    char **args = argv + optind + (optind < argc);
    int nargs = argc - optind - (optind < argc);
    bool demo = optind >= argc;
    int64_t key = 0, value = 0;
    const char *change_addr = NULL; /* members add|remove */
    dht_change_op change_op = DHT_CHANGE_ADD;

    if (strcmp(cmd, "put") == 0) {
        if (nargs != 2 || dht_parse_i64(args[0], INT64_MIN, INT64_MAX, &key) ||
            dht_parse_i64(args[1], INT64_MIN, INT64_MAX, &value))
            return bad("%s: put takes two integers: put KEY VALUE", cmd);
    } else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "replica-read") == 0 ||
               strcmp(cmd, "locate") == 0) {
        if (nargs != 1 || dht_parse_i64(args[0], INT64_MIN, INT64_MAX, &key))
            return bad("%s takes one integer KEY", cmd);
        if (cmd[0] == 'r' && (!o.via || o.etcd))
            return bad("%s needs --via HOST:PORT", cmd);
        if (cmd[0] == 'l' && (o.via || o.etcd))
            return bad("%s places keys among --servers, not --via or --etcd nodes", cmd);
    } else if (strcmp(cmd, "stats") == 0) {
        if (nargs != 0)
            return bad("%s takes no arguments", cmd);
        if (o.etcd)
            return bad("%s asks the store's nodes, not --etcd", cmd);
    } else if (strcmp(cmd, "random") == 0) {
        optind = 0; /* random's own options may follow the command */
        int sub = parse_options(nargs + 1, args - 1, &o);
        if (sub)
            return sub;
        if (optind < nargs + 1)
            return bad("unexpected argument '%s'", args[optind - 1]);
        if (demo && !o.interval_set)
            o.r.interval_ms = 500;
    } else if (strcmp(cmd, "members") == 0) {
        /* members [add|remove HOST:PORT], then options (--json, --timeout). */
        int words = 0;
        while (words < nargs && args[words][0] != '-')
            words++;
        if (words == 2 && (strcmp(args[0], "add") == 0 || strcmp(args[0], "remove") == 0)) {
            change_op = args[0][0] == 'a' ? DHT_CHANGE_ADD : DHT_CHANGE_REMOVE;
            change_addr = args[1];
        } else if (words != 0) {
            return bad("%s takes nothing (show the configuration), or add HOST:PORT, or "
                       "remove HOST:PORT",
                       cmd);
        }
        if (change_addr != NULL) {
            char norm[DHT_ADDR_MAX], why[256];
            if (strlen(change_addr) > DHT_CONTROL_ADDR_MAX)
                return bad("bad member address: '%.80s...' is longer than a HOST:PORT can be",
                           change_addr);
            if (dht_member_addr_normalise(change_addr, norm, sizeof norm, why, sizeof why) != 0)
                return bad("bad member address: %s", why);
        }
        optind = 0; /* options may follow, as for random */
        int sub = parse_options(nargs - words + 1, args + words - 1, &o);
        if (sub)
            return sub;
        if (optind < nargs - words + 1)
            return bad("unexpected argument '%s'", args[words + optind - 1]);
        if (o.etcd)
            return bad("%s asks the store's nodes, not --etcd", cmd);
    } else if (strcmp(cmd, "health") != 0) {
        return bad("unknown command '%s'", cmd);
    }
    /* Commands that only ask nodes about themselves, or compute. */
    bool admin = strcmp(cmd, "health") == 0 || strcmp(cmd, "stats") == 0 ||
                 strcmp(cmd, "locate") == 0 || strcmp(cmd, "members") == 0;

    if (o.via && o.etcd)
        return bad("%s: choose one of --via and --etcd", "--etcd");
    if (!o.tls.cert != !o.tls.key)
        return bad("%s: --tls-cert and --tls-key go together", o.tls.cert ? "--tls-key missing"
                                                                          : "--tls-cert missing");
    if (o.tls.cert && !o.tls.ca)
        return bad("%s: a certificate needs --tls-ca, the CA that checks the nodes'",
                   "--tls-ca missing");
    /* The fan-out client calls dht.Replica itself; without the role every
     * call would come back PERMISSION_DENIED or UNAUTHENTICATED. */
    if (o.tls.ca && !o.tls.cert && !o.via && !o.etcd && !admin)
        return bad("%s: the fan-out client coordinates and needs a peer-role certificate "
                   "(--tls-cert/--tls-key, e.g. make-certs.sh's coordinator.crt), or use --via",
                   "TLS");
    /* Control, like dht.Replica, answers only members' certificates. */
    if (o.tls.ca && !o.tls.cert && change_addr != NULL)
        return bad("%s: a membership change needs a peer-role certificate (--tls-cert/"
                   "--tls-key, e.g. make-certs.sh's coordinator.crt)",
                   "TLS");
    /* The nodes this client talks to: the servers to learn the
     * configuration from (fan-out; the client is no member), or the --via
     * or --etcd nodes. */
    char err[512];
    const char *list = o.etcd ? o.etcd : o.via ? o.via : o.servers;
    dht_membership *members;
    if (dht_membership_new(list, NULL, 0, &members, err, sizeof err) != 0)
        return bad("bad server address: %s", err);
    int n = dht_membership_size(members);
    dht_pem_set pem = {0};
    dht_grpc_tls tls = {0};
    if (o.tls.ca &&
        dht_grpc_tls_load(o.tls.cert, o.tls.key, o.tls.ca, &pem, &tls, err, sizeof err) != 0) {
        fprintf(stderr, "client: %s\n", err);
        dht_membership_free(members);
        return 1;
    }
    const dht_grpc_tls *tlsp = o.tls.ca ? &tls : NULL;
    /* Before any transport starts: it logs (e.g. a peer not answering) at
     * the level asked for, quiet by default. */
    char name[48];
    snprintf(name, sizeof name, "client %d", (int)getpid());
    dht_log_init(name, o.level, stderr);
    o.r.name = name;
    if (strcmp(cmd, "health") == 0)
        rc = cmd_health(dht_membership_addr(members, 0), o.deadline_ms, tlsp);
    else if (strcmp(cmd, "stats") == 0)
        rc = cmd_stats(members, o.via != NULL, o.deadline_ms, tlsp);
    else if (strcmp(cmd, "members") == 0 && change_addr != NULL)
        rc = members_change(members, change_op, change_addr,
                            o.timeout_ms ? o.timeout_ms : MEMBERS_TIMEOUT_MS, tlsp);
    else if (strcmp(cmd, "members") == 0)
        rc = members_show(members, o.deadline_ms, tlsp, o.r.json);
    bool locate = strcmp(cmd, "locate") == 0;
    if (admin && !locate) {
        dht_membership_free(members);
        dht_pem_set_free(&pem);
        return rc;
    }
    /* The fan-out client and locate place keys as the nodes do, in the
     * configuration they learn from the servers (follow.h). */
    bool fanout = !o.via && !o.etcd;
    /* replica-read's requests carry the --via node's configuration. */
    uint64_t fingerprint = 0;
    if (strcmp(cmd, "replica-read") == 0)
        fingerprint = via_fingerprint(members, o.deadline_ms, tlsp);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Fan-out: the servers are the transport's first peers, in order (the
     * positions the configurations are derived over); members that join
     * later are added to it. */
    const char *peers[DHT_MAX_MEMBERS];
    for (int i = 0; i < n; i++)
        peers[i] = dht_membership_addr(members, i);
    dht_grpc_config gc = {.peers = peers, .npeers = n, .workers = (int)o.workers,
                          .on_peer_state = locate ? NULL : on_peer_state, .tls = tlsp,
                          .fingerprint = fingerprint};
    dht_grpc *g;
    rc = dht_grpc_start(&gc, &g, err, sizeof err);
    dht_pem_set_free(&pem); /* the transport keeps its own copy */
    if (rc != 0) {
        fprintf(stderr, "client: %s\n", err);
        dht_membership_free(members);
        return 1;
    }
    kvclient kv = {.t = dht_grpc_transport(g),
                   .deadline_ns = o.deadline_ms * DHT_NS_PER_MS,
                   .etcd = o.etcd ? g : NULL};
    follow *f = NULL;
    if (fanout) {
        follow_config fc = {.g = g, .timeout_ns = kv.deadline_ns, .replicas = (int)o.replicas,
                            .announce = strcmp(cmd, "random") == 0};
        rc = follow_new(&fc, members, &f);
        members = NULL; /* the follower's now */
        if (rc != 0) {
            dht_grpc_stop(g);
            return rc;
        }
        dht_view *v = follow_view(f);
        if (locate) {
            cmd_locate(v, key);
            dht_view_unref(v);
            follow_free(f);
            dht_grpc_stop(g);
            return 0;
        }
        dht_coord_config cc;
        dht_coord_config_default(&cc);
        cc.deadline_ns = kv.deadline_ns;
        cc.view = v;
        cc.on_refused = follow_refused;
        cc.refused_arg = f;
        kv.coord = dht_coord_new(kv.t, &cc);
        dht_view_unref(v); /* the coordinator and the follower hold theirs */
        if (kv.coord == NULL) {
            fprintf(stderr, "client: out of memory\n");
            dht_grpc_stop(g);
            follow_free(f);
            return 1;
        }
        if (follow_start(f, kv.coord) != 0)
            fprintf(stderr, "client: warning: cannot start the thread that follows "
                            "configuration changes; carrying on with the configuration now\n");
    } else if (o.via && strcmp(cmd, "random") == 0) {
        /* A load follows the members, so that it survives its nodes' removal.
         * One-shot commands do not: `--via NODE get` asks that node, which
         * is how one checks what a node (e.g. a removed one) answers. */
        follow_config fc = {.g = g, .timeout_ns = kv.deadline_ns, .announce = true};
        rc = follow_via_new(&fc, members, &f);
        members = NULL; /* the follower's now */
        if (rc != 0) {
            dht_grpc_stop(g);
            return rc;
        }
        kv.via = f;
        if (follow_start(f, NULL) != 0)
            fprintf(stderr, "client: warning: cannot start the thread that follows "
                            "membership changes; carrying on with the members now\n");
    }

    char reason[256] = "";
    if (strcmp(cmd, "put") == 0) {
        dht_put_outcome out = kv_put(&kv, key, value, reason, sizeof reason);
        printf("%s\n", out == DHT_PUT_APPLIED ? "true" : "false");
        if (out != DHT_PUT_APPLIED)
            fprintf(stderr, "client: put %s: %s\n", dht_put_outcome_name(out), reason);
        rc = out == DHT_PUT_APPLIED ? 0 : 1;
    } else if (strcmp(cmd, "get") == 0) {
        if (kv_get(&kv, key, &value, reason, sizeof reason)) {
            printf("%lld\n", (long long)value);
            rc = 0;
        } else {
            fprintf(stderr, "client: get failed: %s\n", reason);
            rc = 1;
        }
    } else if (strcmp(cmd, "replica-read") == 0) {
        dht_version ver;
        if (kv_replica_read(&kv, key, &value, &ver, reason, sizeof reason)) {
            printf("%lld %llu %llu\n", (long long)value, (unsigned long long)ver.counter,
                   (unsigned long long)ver.writer);
            rc = 0;
        } else {
            fprintf(stderr, "client: replica-read failed: %s\n", reason);
            rc = 1;
        }
    } else {
        rc = run_random(&kv, &o.r, &g_stop);
    }
    fflush(stdout);
    /* The follower's reloads use the transport: they end first.  Its
     * on_refused may still run until the transport has stopped, so it is
     * freed last. */
    follow_stop(f);
    dht_grpc_stop(g);
    dht_coord_free(kv.coord);
    follow_free(f);
    dht_membership_free(members);
    return rc;
}
