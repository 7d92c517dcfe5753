#!/usr/bin/env bash
# harness.sh - Jepsen-style fault harness for the replicated key-value store.
#
# Starts N real server processes (through docker/entrypoint.sh, configured by
# env IP, PORT, MEMBERS, REPLICAS exactly as in a container, and
# TLS_CERT/TLS_KEY/TLS_CA with --tls), each in its own network
# namespace on a private bridge, runs concurrent clients (fan-out library and
# the public service of the nodes) in namespaces of their own, injects faults
# (kill -9 + restart, wipe + restart, SIGSTOP, nft partitions), heals them,
# and checks every recorded operation for linearizability, the replicas for
# convergence, the processes for crashes and the calls for hangs.
#
# Usage: see usage() below or tests/harness/README.md.
# Exit status: 0 pass, 1 a check failed, 2 usage or setup error,
#              77 skipped (not root, no ip/nft, namespaces not permitted).
set -uo pipefail
shopt -s nullglob
exec 3>&2   # the terminal's stderr, kept when stderr goes to harness.log

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ENTRYPOINT=$ROOT/docker/entrypoint.sh
STATS_AWK=$HERE/stats.awk
MAKE_CERTS=$ROOT/scripts/make-certs.sh
EX_SKIP=77
PFX=dhth            # namespace prefix; names are $PFX<pid>-<role>
PORT=50051          # the same port on every host, like the containers
NET=198.18.0        # RFC 2544 benchmarking range, only inside our namespaces

usage() {
    cat <<'EOF'
usage: harness.sh --bin DIR [options]
  --bin DIR          directory with server, client, lincheck (and rawcall)
  --nodes N          number of nodes, 3..9 (default 3)
  --replicas R       replicas per key, 1..N (default the server's, min(3, N));
                     nodes get env REPLICAS, fan-out clients --replicas; with
                     R < N each key's checks involve its R replicas only
                     (`client locate` gives them)
  --schedule S       short: every nemesis once, about two minutes (default)
                     random: a seeded random mix of faults for --duration
                     soak: the short walk, then the random mix up to --duration
                     membership: online membership changes under load (below)
  --membership       the same as --schedule membership: the cluster starts with
                     --nodes members plus --spares nodes waiting to join
                     (entrypoint JOIN=1, empty data dir); for --duration the
                     seeded schedule adds a spare, removes a member (never
                     below R), replaces one (kill -9 it for good, add a spare,
                     remove the dead one) or races two commands at once,
                     with a fault of --faults (kill, pause, isolate, split,
                     oneway, clientcut; default the first four) before or
                     during most changes and on its own in between; at most
                     one node down or cut off at a time.
                     After each command the harness re-reads `client members`
                     and goes on from the real configuration; a removed node
                     must refuse requests, is stopped and comes back empty as
                     a spare.  Needs R >= 3 and a server with --join
  --spares S         membership: nodes started waiting to join (default 2;
                     --nodes + --spares <= 9)
  --duration S       length of the random/soak/membership schedule in seconds
                     (default 120 for random, 600 for soak, 75 for membership;
                     ignored by short)
  --seed N           seed of the schedule and of the clients (0..4294967295;
                     default random, always printed so a run can be replayed)
  --faults LIST      comma-separated subset of
                     kill,wipe,pause,isolate,split,bridge,oneway,clientcut
                     (default all; wipe needs a server with --data-dir;
                     membership: of kill,pause,isolate,split,oneway,clientcut)
  --out DIR          where to write histories, logs and the report
                     (default a new temp dir, removed after a pass unless --keep)
  --keep             keep the output directory after a pass
  --install          apt-get install missing ip/nft (root only; also when CI is set)
  --dry-run          print the schedule of this seed and exit
  --keys N           key space of the workload (default 8 (keys really conflict)
                     when R = N, else 8 N / R: about 8 keys per node)
  --fanout N         fan-out client processes (default 2)
  --concurrency N    threads per fan-out client (default 2)
  --pace-ms MS       pause between one client thread's operations (default 2)
  --margin-ms MS     slack over a deadline before a call counts as hung (default 1000)
  --fsync MODE       FSYNC of the nodes when the server has --fsync
  --log-level L      LOG_LEVEL of the nodes (default info)
  --tls              mutual TLS everywhere: certificates for the nodes' addresses
                     (scripts/make-certs.sh), nodes started with TLS_CERT/KEY/CA,
                     fan-out clients with the coordinator certificate, via
                     clients and checks with the CA
  --lincheck PATH    checker binary (default BIN/lincheck)
  --budget N         lincheck search budget per key
  --help             this text
exit status: 0 pass, 1 a check failed, 2 usage/setup error, 77 skipped
EOF
}

# ---- options -----------------------------------------------------------------
DRY_RUN=0 TLS=0 BIN="" NODES=3 REPLICAS_ARG="" DURATION="" SEED="" SCHEDULE=short FAULTS_ARG="" OUT="" KEEP=0 INSTALL=0
SPARES_ARG=""
KEYS="" FANOUT=2 CONC=2 PACE_MS=2 MARGIN_MS=1000 FSYNC="" NODE_LOG_LEVEL=info LINCHECK="" BUDGET=""
ALL_FAULTS=(kill wipe pause isolate split bridge oneway clientcut)
# the faults of the membership schedule: one node down or cut off at a time
M_FAULTS=(kill pause isolate split oneway clientcut) M_DEFAULT_FAULTS=(kill pause isolate split)

die_usage() { echo "harness: $*" >&2; echo "(harness.sh --help for usage)" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]] && ((${#1} <= 10)); }

while (($#)); do
    opt=$1
    case $opt in
    --help | -h) usage; exit 0 ;;
    --keep) KEEP=1; shift; continue ;;
    --install) INSTALL=1; shift; continue ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
    --tls) TLS=1; shift; continue ;;
    --membership) SCHEDULE=membership; shift; continue ;;
    esac
    (($# >= 2)) || die_usage "$opt needs a value"
    val=$2
    shift 2
    # numbers in base 10 even with leading zeros
    [[ $val =~ ^[0-9]{1,10}$ ]] && val=$((10#$val))
    case $opt in
    --bin) BIN=$val ;;
    --nodes) is_uint "$val" && ((val >= 3 && val <= 9)) || die_usage "--nodes must be 3..9"; NODES=$val ;;
    --replicas) is_uint "$val" && ((val >= 1 && val <= 9)) || die_usage "--replicas must be 1..--nodes"; REPLICAS_ARG=$val ;;
    --duration) is_uint "$val" && ((val >= 10 && val <= 86400)) || die_usage "--duration must be 10..86400 s"; DURATION=$val ;;
    --seed) is_uint "$val" && ((val <= 4294967295)) || die_usage "--seed must be 0..4294967295"; SEED=$val ;;
    --schedule) [[ $val =~ ^(short|random|soak|membership)$ ]] || die_usage "--schedule must be short, random, soak or membership"; SCHEDULE=$val ;;
    --spares) is_uint "$val" && ((val >= 1 && val <= 6)) || die_usage "--spares must be 1..6"; SPARES_ARG=$val ;;
    --faults) FAULTS_ARG=$val ;;
    --out) OUT=$val ;;
    --keys) is_uint "$val" && ((val >= 1 && val <= 1000)) || die_usage "--keys must be 1..1000"; KEYS=$val ;;
    --fanout) is_uint "$val" && ((val >= 1 && val <= 8)) || die_usage "--fanout must be 1..8"; FANOUT=$val ;;
    --concurrency) is_uint "$val" && ((val >= 1 && val <= 16)) || die_usage "--concurrency must be 1..16"; CONC=$val ;;
    --pace-ms) is_uint "$val" && ((val <= 1000)) || die_usage "--pace-ms must be 0..1000"; PACE_MS=$val ;;
    --margin-ms) is_uint "$val" && ((val >= 100 && val <= 60000)) || die_usage "--margin-ms must be 100..60000"; MARGIN_MS=$val ;;
    --fsync) [[ $val =~ ^(always|batch|never)$ ]] || die_usage "--fsync must be always, batch or never"; FSYNC=$val ;;
    --log-level) [[ $val =~ ^(error|warn|info|debug)$ ]] || die_usage "--log-level must be error|warn|info|debug"; NODE_LOG_LEVEL=$val ;;
    --lincheck) LINCHECK=$val ;;
    --budget) is_uint "$val" && ((val >= 1)) || die_usage "--budget must be a positive number"; BUDGET=$val ;;
    *) die_usage "unknown option '$opt'" ;;
    esac
done
[[ -n $BIN ]] || die_usage "--bin DIR is required"
[[ -z $REPLICAS_ARG ]] || ((REPLICAS_ARG <= NODES)) || die_usage "--replicas must be 1..--nodes ($NODES)"
# MEMBERSHIP: the membership schedule.  Nodes 1..NODES are the first
# members, NODES+1..TOTAL the spares (waiting to join); without it TOTAL =
# NODES and everything below is what it always was.
MEMBERSHIP=0 SPARES=0
if [[ $SCHEDULE == membership ]]; then
    MEMBERSHIP=1
    SPARES=${SPARES_ARG:-2}
    ((NODES + SPARES <= 9)) || die_usage "--nodes + --spares must be at most 9 (addresses .11-.19)"
else
    [[ -z $SPARES_ARG ]] || die_usage "--spares goes with --membership"
fi
TOTAL=$((NODES + SPARES))

FAULTS=()
if [[ -z $FAULTS_ARG ]]; then
    if ((MEMBERSHIP)); then FAULTS=("${M_DEFAULT_FAULTS[@]}"); else FAULTS=("${ALL_FAULTS[@]}"); fi
else
    IFS=, read -r -a req <<<"$FAULTS_ARG"
    for f in "${req[@]}"; do
        [[ " ${ALL_FAULTS[*]} " == *" $f "* ]] || die_usage "unknown fault '$f' (known: ${ALL_FAULTS[*]})"
        ((MEMBERSHIP)) && { [[ " ${M_FAULTS[*]} " == *" $f "* ]] ||
            die_usage "fault '$f' is not part of the membership schedule (known there: ${M_FAULTS[*]})"; }
        [[ " ${FAULTS[*]-} " == *" $f "* ]] || FAULTS+=("$f")
    done
    ((${#FAULTS[@]})) || die_usage "--faults lists no fault"
fi
if [[ -z $DURATION ]]; then
    case $SCHEDULE in random) DURATION=120 ;; soak) DURATION=600 ;; membership) DURATION=75 ;; *) DURATION=0 ;; esac
fi
if [[ -z $SEED ]]; then
    SEED=$(((${SRANDOM:-$RANDOM} ^ (RANDOM << 15) ^ $$) & 0xffffffff))
fi

skip() {
    echo "SKIP: fault harness: $*"
    SKIPPED=1
    exit $EX_SKIP
}

BIN=$(cd "$BIN" 2>/dev/null && pwd) || die_usage "--bin: no such directory"
SERVER=$BIN/server CLIENT=$BIN/client RAWCALL=$BIN/rawcall
LINCHECK=${LINCHECK:-$BIN/lincheck}
for b in "$SERVER" "$CLIENT"; do [[ -x $b ]] || die_usage "$b is missing (build the project first)"; done
[[ -x $LINCHECK ]] || die_usage "$LINCHECK is missing: the history checker is required (build target lincheck or pass --lincheck)"
[[ -x $RAWCALL ]] || RAWCALL=""
[[ -r $ENTRYPOINT ]] || die_usage "$ENTRYPOINT is missing"
[[ -r $STATS_AWK ]] || die_usage "$STATS_AWK is missing"
# Whether a run is TLS is decided by --tls alone: the server, the client and
# rawcall all read TLS_* from the environment, so a TLS_CA left in the
# caller's shell would otherwise turn half of a plaintext run into TLS.
unset TLS_CERT TLS_KEY TLS_CA CLIENT_CERT_AUTH
# Likewise R: the server and the client read REPLICAS, so the harness passes
# it explicitly and a value left in the caller's shell never leaks in.
unset REPLICAS

SERVER_HELP=$("$SERVER" --help 2>&1)
HAS_DATADIR=0 HAS_FSYNC=0
[[ $SERVER_HELP == *--data-dir* ]] && HAS_DATADIR=1
[[ $SERVER_HELP == *--fsync* ]] && HAS_FSYNC=1
CLIENT_HELP=$("$CLIENT" --help 2>&1)
# Placement (docs/design.md, "Placement"): each key is stored by R of the N
# members.  A server without --replicas stores every key on every node
# (R = N); one with it defaults to min(3, N), and so does the client.
HAS_REPLICAS=0 CLIENT_REPLICAS=0 HAS_LOCATE=0 HAS_STATS=0
[[ $SERVER_HELP == *--replicas* ]] && HAS_REPLICAS=1
[[ $CLIENT_HELP == *--replicas* ]] && CLIENT_REPLICAS=1
grep -qE '^ +locate ' <<<"$CLIENT_HELP" && HAS_LOCATE=1
grep -qE '^ +stats( |$)' <<<"$CLIENT_HELP" && HAS_STATS=1
if ((HAS_REPLICAS)); then
    DEFAULT_REPLICAS=$((NODES < 3 ? NODES : 3))
else
    DEFAULT_REPLICAS=$NODES
fi
NREP=${REPLICAS_ARG:-$DEFAULT_REPLICAS}
QUORUM=$((NREP / 2 + 1))
if ((NREP != NODES)); then
    ((HAS_REPLICAS)) || die_usage "--replicas $NREP < --nodes $NODES: $SERVER has no --replicas option (every node stores every key)"
    ((HAS_LOCATE)) || die_usage "--replicas $NREP < --nodes $NODES: $CLIENT has no 'locate' command, needed to know each key's replicas"
fi
if ((NREP != DEFAULT_REPLICAS && !CLIENT_REPLICAS)); then
    die_usage "--replicas $NREP is not the default ($DEFAULT_REPLICAS) and $CLIENT has no --replicas option for the fan-out clients"
fi
# The key space: 8 keys when every node stores every key, so writers really
# conflict; with R < N about as many per node (8 N / R), so that every node
# stores some and faults of one node hit keys it stores.
KEYS_GIVEN=0
[[ -n $KEYS ]] && KEYS_GIVEN=1 || KEYS=$(((8 * NODES + NREP - 1) / NREP))
# Whatever the client's default, the fan-out clients and locate are told R.
CLIENT_REP=()
((CLIENT_REPLICAS)) && CLIENT_REP=(--replicas "$NREP")
if ((TLS)); then
    [[ $SERVER_HELP == *--tls-cert* ]] || die_usage "--tls: $SERVER has no --tls-cert option"
    [[ $("$CLIENT" --help 2>&1) == *--tls-ca* ]] || die_usage "--tls: $CLIENT has no --tls-ca option"
    [[ -r $MAKE_CERTS ]] || die_usage "--tls: $MAKE_CERTS is missing"
fi
# The nodes are configured by env only (like the containers), so they run
# with the server's default deadline and lease; read them from --help.
SERVER_DEADLINE_MS=$(grep -o -- '--deadline-ms.*(default [0-9]*' <<<"$SERVER_HELP" | grep -o '[0-9]*$')
LEASE_MS=$(grep -o -- '--lease-ms.*(default [0-9]*' <<<"$SERVER_HELP" | grep -o '[0-9]*$')
SERVER_DEADLINE_MS=${SERVER_DEADLINE_MS:-2000} LEASE_MS=${LEASE_MS:-500}
FAN_DEADLINE_MS=$SERVER_DEADLINE_MS
# A via client waits longer than the server's own deadline, so "the node
# answered false within its deadline" and "the node hung until the client
# gave up" are told apart by the latency.
VIA_DEADLINE_MS=$((SERVER_DEADLINE_MS + MARGIN_MS + 500))
GRACE_MS=$((SERVER_DEADLINE_MS + LEASE_MS))
PAUSE_MIN_MS=$((2 * SERVER_DEADLINE_MS + 1000))

# A wiped node recovers each partition from R - Q + 1 of its other
# replicas: with R = 1 there is none, and a wipe loses acknowledged writes,
# which the model does not tolerate, so it is not run.
if ((!HAS_DATADIR || NREP < 2)); then
    for i in "${!FAULTS[@]}"; do [[ ${FAULTS[i]} == wipe ]] && unset 'FAULTS[i]'; done
    FAULTS=("${FAULTS[@]}")
    ((${#FAULTS[@]})) || die_usage "only wipe was asked for, and $( ((HAS_DATADIR)) && echo "with --replicas 1 a wiped node has no replica to recover from" || echo "this server has no --data-dir")"
fi
# The membership schedule keeps one node down or cut off during changes:
# that needs R >= 3 (a quorum of every key's old and new replicas with one
# of them gone), spares that can wait to be added (--join, a data dir that
# records the configuration), `client members` and `client stats`.
CH_TIMEOUT=45   # --timeout of one `client members add|remove` (the driver's own deadline is 120 s)
if ((MEMBERSHIP)); then
    ((NREP >= 3)) || die_usage "--membership needs R >= 3 replicas per key (one node may be down during a change); R is $NREP"
    [[ $SERVER_HELP == *--join* ]] || die_usage "--membership: $SERVER has no --join option (nodes waiting to be added)"
    ((HAS_DATADIR)) || die_usage "--membership: $SERVER has no --data-dir option"
    grep -qE 'members add' <<<"$CLIENT_HELP" || die_usage "--membership: $CLIENT has no 'members add|remove' command"
    ((HAS_STATS && HAS_LOCATE)) || die_usage "--membership: $CLIENT needs the 'stats' and 'locate' commands"
fi

# ---- requirements (skip, never pass, when they are missing) -------------------
check_requirements() {
[[ $(id -u) == 0 ]] || skip "needs root (creates network namespaces, veth pairs and nft rules); run it as root"
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
((TLS)) && { command -v openssl >/dev/null 2>&1 || missing+=(openssl); }
if ((${#missing[@]})); then
    if ((INSTALL)) || [[ -n ${CI:-} ]]; then
        echo "harness: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1; then
            skip "missing ${missing[*]} and apt-get install failed"
        fi
    else
        skip "missing ${missing[*]} (ip/nft/pgrep/openssl); install them, or run with --install (or CI=1) as root"
    fi
fi
for t in awk sort timeout; do command -v $t >/dev/null 2>&1 || skip "missing $t"; done
}

# ---- output ------------------------------------------------------------------
OUT_GIVEN=0 SKIPPED=0 OUT_READY=0
[[ -n $OUT ]] && OUT_GIVEN=1
HLOG=/dev/null
setup_out() {
    if ((OUT_GIVEN)); then
        mkdir -p "$OUT" || die_usage "cannot create $OUT"
        OUT=$(cd "$OUT" && pwd)
        [[ -z $(ls -A "$OUT") ]] || die_usage "--out $OUT is not empty"
    else
        OUT=$(mktemp -d "${TMPDIR:-/tmp}/dht-harness.XXXXXX") || die_usage "mktemp failed"
    fi
    mkdir -p "$OUT/history" "$OUT/logs" "$OUT/clients" "$OUT/data" "$OUT/tmp"
    ((MEMBERSHIP)) && mkdir -p "$OUT/changes"
    HLOG=$OUT/harness.log
    SIDES=$OUT/sides.tsv WINDOWS=$OUT/windows.tsv TIMELINE=$OUT/timeline.jsonl
    FINAL_HIST=$OUT/history/final.jsonl REPORT=$OUT/report.txt GROUPS_TSV=$OUT/stats.tsv
    CHECK_HIST=$OUT/history/checks.jsonl
    OUT_READY=1
}

# ---- clock: CLOCK_MONOTONIC ns, the clock of the histories --------------------
# /proc/timer_list (root only) prints ktime_get(), i.e. CLOCK_MONOTONIC, as
# "now at N nsecs".  Reading it with bash builtins costs no fork.  Fallback:
# /proc/uptime (CLOCK_BOOTTIME, 10 ms resolution; equal to CLOCK_MONOTONIC
# unless the machine was suspended), good enough for windows of seconds.
CLOCK_SRC=uptime
if [[ -r /proc/timer_list ]] && grep -q -m1 '^now at [0-9]* nsecs' /proc/timer_list 2>/dev/null; then
    CLOCK_SRC=timer_list
fi
NOW=0
mono_now() {
    local line
    if [[ $CLOCK_SRC == timer_list ]]; then
        while IFS= read -r line; do
            if [[ $line == "now at "* ]]; then
                line=${line#now at }
                NOW=${line%% *}
                return 0
            fi
        done </proc/timer_list
    fi
    read -r line _ </proc/uptime
    NOW=$((${line%.*} * 1000000000 + 10#${line#*.} * 10000000))
}
mono_now
T0=$NOW
rel() { # rel NS -> seconds since start, one decimal
    local ms=$((($1 - T0) / 1000000))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
log() {
    mono_now
    local m
    m="[+$(rel "$NOW")s] $*"
    echo "$m"
    echo "$m" >>"$HLOG"
}

# ---- seeded generator (the same schedule for the same seed on any bash) ---------
RNG=0 R=0
rng_seed() { # splitmix64 finaliser of the seed, then a 64-bit LCG (high bits used)
    local z=$((($1 + 1) * 0x9E3779B97F4A7C15))
    z=$(((z ^ ((z >> 30) & 0x3ffffffff)) * 0xBF58476D1CE4E5B9))
    z=$(((z ^ ((z >> 27) & 0x1fffffffff)) * 0x94D049BB133111EB))
    RNG=$((z ^ ((z >> 31) & 0x1ffffffff)))
    rng_next
}
rng_next() { RNG=$((RNG * 6364136223846793005 + 1442695040888963407)); R=$(((RNG >> 33) & 0x7fffffff)); }
rand_below() { rng_next; R=$((R % $1)); }        # R in 0..$1-1
rand_range() { rng_next; R=$(($1 + R % ($2 - $1 + 1))); } # R in $1..$2
PERM=()
rand_perm() { # PERM = a permutation of 1..$1
    local n=$1 i j t
    PERM=()
    for ((i = 1; i <= n; i++)); do PERM+=("$i"); done
    for ((i = n - 1; i > 0; i--)); do
        rand_below $((i + 1)); j=$R
        t=${PERM[i]}; PERM[i]=${PERM[j]}; PERM[j]=$t
    done
}

# ---- namespaces, processes and the cleanup trap ---------------------------------
RUN=$PFX$$
NS_SW=$RUN-sw
NS_LIST=()          # every namespace we created, deleted on exit
declare -A NODE_PID NODE_STATE   # NODE_STATE: up | down | paused
declare -A CL_PID CL_NS CL_IP CL_KIND CL_TARGET CL_RUNNING CL_FILE
CLIENTS=()          # long-running client names
ROAMER_PID="" ROAMER_NAME=""
declare -A CHS_PID  # running `client members add|remove` commands (membership)
CLEANED=0
PASSED=0

ns_of_node() { echo "$RUN-n$1"; }
node_ip() { echo "$NET.$((10 + $1))"; }

cleanup() {
    ((CLEANED)) && return
    CLEANED=1
    local p ns
    for i in "${!NODE_PID[@]}"; do
        p=${NODE_PID[$i]}
        [[ -n $p ]] && kill -CONT "$p" 2>/dev/null
    done
    for p in "${CL_PID[@]}" $ROAMER_PID "${CHS_PID[@]}"; do [[ -n $p ]] && kill -9 "$p" 2>/dev/null; done
    for i in "${!NODE_PID[@]}"; do
        p=${NODE_PID[$i]}
        [[ -n $p ]] && kill -9 "$p" 2>/dev/null
    done
    # Anything else still inside our own namespaces was started by us too
    # (e.g. a health probe that a Ctrl+C interrupted).
    for ns in "${NS_LIST[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    wait 2>/dev/null
    for ns in "${NS_LIST[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if ((OUT_READY)) && [[ -n $OUT && -d $OUT ]]; then
        if (((PASSED || SKIPPED) && !KEEP && !OUT_GIVEN)); then
            rm -rf -- "$OUT"
        elif [[ -d $OUT/tmp ]]; then
            rm -rf -- "$OUT/tmp"
        fi
    fi
}
on_signal() {
    echo "harness: interrupted (signal $1); cleaning up" >&3
    exit $((128 + $1))
}
trap cleanup EXIT
trap 'on_signal 2' INT
trap 'on_signal 15' TERM
trap 'on_signal 1' HUP

# Namespaces of dead runs (their harness pid is gone): kill what runs in
# them (started by that run) and delete them.
sweep_leftovers() {
    local ns rest pid p
    while read -r ns rest; do
        [[ $ns =~ ^$PFX([0-9]+)- ]] || continue
        pid=${BASH_REMATCH[1]}
        [[ $pid == "$$" ]] && continue
        kill -0 "$pid" 2>/dev/null && continue
        echo "harness: removing namespace $ns left by dead run $pid"
        for p in $(ip netns pids "$ns" 2>/dev/null); do
            kill -CONT "$p" 2>/dev/null
            kill -9 "$p" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done < <(ip netns list 2>/dev/null)
}

add_ns() {
    NS_LIST+=("$1")
    ip netns add "$1"
}

probe_capabilities() {
    local ns=$RUN-probe err=$OUT/tmp/probe.err
    NS_LIST+=("$ns")
    ip netns add "$ns" 2>"$err" || skip "cannot create network namespaces: $(head -c 300 "$err")"
    ip -n "$ns" link add hbr0 type bridge 2>"$err" || skip "cannot create a bridge in a namespace: $(head -c 300 "$err")"
    ip -n "$ns" link add hva type veth peer name hvb 2>"$err" || skip "cannot create veth pairs: $(head -c 300 "$err")"
    ip netns exec "$ns" nft add table inet hprobe 2>"$err" ||
        skip "nft does not work inside a network namespace (nf_tables missing?): $(head -c 300 "$err")"
    ip netns del "$ns"
}

# add_host IFNAME NS IP: a namespace plugged into the switch with one address
# and an empty nft table whose chains the nemesis fills and flushes.
add_host() {
    local ifn=$1 ns=$2 ip=$3
    add_ns "$ns" &&
        ip -n "$NS_SW" link add "$ifn" type veth peer name eth0 netns "$ns" &&
        ip -n "$NS_SW" link set "$ifn" master br0 up &&
        ip -n "$ns" link set lo up &&
        ip -n "$ns" addr add "$ip/24" dev eth0 &&
        ip -n "$ns" link set eth0 up &&
        ip netns exec "$ns" nft -f - <<'EOF'
table inet harness {
    chain input { type filter hook input priority 0; policy accept; }
    chain output { type filter hook output priority 0; policy accept; }
}
EOF
}

net_up() {
    add_ns "$NS_SW" &&
        ip -n "$NS_SW" link set lo up &&
        ip -n "$NS_SW" link add br0 type bridge &&
        ip -n "$NS_SW" link set br0 up || return 1
    local i
    for ((i = 1; i <= TOTAL; i++)); do
        add_host "n$i" "$(ns_of_node $i)" "$(node_ip $i)" || return 1
    done
    for c in "${CLIENTS[@]}" R ctl; do
        add_host "$c" "${CL_NS[$c]}" "${CL_IP[$c]}" || return 1
    done
}

# ---- nodes ---------------------------------------------------------------------
MEMBERS=""
for ((i = 1; i <= NODES; i++)); do MEMBERS+="${MEMBERS:+,}$(node_ip $i):$PORT"; done
# CUR: the current members (node indices, ascending).  Always 1..NODES but
# in the membership schedule, where it is what `client members` last
# reported (and MEMBERS their addresses, the seeds of every node started).
# NODE_ROLE (membership): member | spare (running, waiting to join) |
# removed (checked, then stopped and restarted empty as a spare).
CUR=()
declare -A IS_MEMBER NODE_ROLE ADDR_IDX
for ((i = 1; i <= TOTAL; i++)); do
    ADDR_IDX[$(node_ip $i):$PORT]=$i
    if ((i <= NODES)); then CUR+=("$i"); IS_MEMBER[$i]=1; NODE_ROLE[$i]=member; else NODE_ROLE[$i]=spare; fi
done
addrs_of() { local s="" i; for i in "$@"; do s+="${s:+,}$(node_ip "$i"):$PORT"; done; echo "$s"; }
set_members() { # set_members IDX...: the tracked member set
    local i
    CUR=($(printf '%s\n' "$@" | sort -n -u))
    IS_MEMBER=()
    for i in "${CUR[@]}"; do IS_MEMBER[$i]=1; NODE_ROLE[$i]=member; done
    MEMBERS=$(addrs_of "${CUR[@]}")
}

# ---- placement: which nodes store each key of the workload -----------------------
# KREP[k] = "i j l": the nodes (indices, ascending) that store key k, from
# `client --servers MEMBERS --replicas R locate k` (computed locally, no
# network); with R = N every node stores every key.  NODE_NKEYS[i]: how many
# of the workload's keys node i stores.  Everything that compares replicas
# or decides which side of a partition still reaches a quorum uses these.
declare -A KREP KPART
NODE_NKEYS=()
# compute_placement [final]: from the harness's own namespace no node is
# reachable and locate computes from MEMBERS and R alone; "final" (the
# membership schedule, after the run) asks the nodes themselves from the
# control namespace, and a problem is a failed check, not a usage error.
PLACE_ERR=""
compute_placement() {
    local k i out addrs a list n final=0 pre=()
    [[ ${1:-} == final ]] && { final=1; pre=(ip netns exec "${CL_NS[ctl]}"); }
    PLACE_ERR=""
    for ((i = 1; i <= TOTAL; i++)); do NODE_NKEYS[i]=0; done
    for ((k = 0; k < KEYS; k++)); do
        if ((NREP == NODES)) && ((!HAS_LOCATE)); then
            KREP[$k]=$(seq -s ' ' 1 "$NODES") KPART[$k]="?"
        else
            if ((final)); then
                out=$("${pre[@]}" "$CLIENT" "${TLS_FAN[@]}" --servers "$MEMBERS" "${CLIENT_REP[@]}" locate "$k" 2>>"$OUT/tmp/locate.err") ||
                    { PLACE_ERR="client locate $k failed: $out $(tail -n 2 "$OUT/tmp/locate.err")"; return 1; }
            else
                out=$("$CLIENT" --servers "$MEMBERS" "${CLIENT_REP[@]}" locate "$k" 2>&1) ||
                    die_usage "client locate $k failed: $out"
            fi
            # "partition P: addr1 addr2 addr3"
            [[ $out =~ ^partition\ ([0-9]+):\ (.*)$ ]] || { PLACE_ERR="client locate $k: unexpected output '$out'"; ((final)) && return 1; die_usage "$PLACE_ERR"; }
            KPART[$k]=${BASH_REMATCH[1]}
            read -r -a addrs <<<"${BASH_REMATCH[2]}"
            ((${#addrs[@]} == NREP)) || { PLACE_ERR="client locate $k names ${#addrs[@]} replicas, not R = $NREP: '$out'"; ((final)) && return 1; die_usage "$PLACE_ERR"; }
            list=()
            for a in "${addrs[@]}"; do
                [[ -n ${ADDR_IDX[$a]:-} ]] || { PLACE_ERR="client locate $k: '$a' is not one of the members $MEMBERS"; ((final)) && return 1; die_usage "$PLACE_ERR"; }
                ((final)) && [[ -z ${IS_MEMBER[${ADDR_IDX[$a]}]:-} ]] && { PLACE_ERR="client locate $k: '$a' is not one of the members $MEMBERS"; return 1; }
                list+=("${ADDR_IDX[$a]}")
            done
            KREP[$k]=$(printf '%s\n' "${list[@]}" | sort -n -u | tr '\n' ' ')
            KREP[$k]=${KREP[$k]% }
            (($(wc -w <<<"${KREP[$k]}") == NREP)) || { PLACE_ERR="client locate $k: '$out' names a member twice"; ((final)) && return 1; die_usage "$PLACE_ERR"; }
        fi
        for i in ${KREP[$k]}; do NODE_NKEYS[i]=$((NODE_NKEYS[i] + 1)); done
    done
    # Nodes that store at least one key of the workload: the targets of the
    # faults that hit one node's data or replica role (with R = N, all).
    STORE_NODES=()
    for i in "${CUR[@]}"; do ((NODE_NKEYS[i] > 0)) && STORE_NODES+=("$i"); done
    ((${#STORE_NODES[@]})) || STORE_NODES=("${CUR[@]}")
}
# is_replica K I: node I stores key K
is_replica() { [[ " ${KREP[$1]} " == *" $2 "* ]]; }
# keys_with_quorum "NODES...": the keys of which a quorum of replicas is
# among NODES (what a coordinator that reaches exactly those nodes can
# serve), as AVAIL = all | none | k1,k2,...  Cached per node set.
declare -A AVAIL_CACHE
AVAIL=""
keys_with_quorum() {
    local reach=" $* " k n i list="" nav=0
    if [[ -n ${AVAIL_CACHE[$reach]:-} ]]; then AVAIL=${AVAIL_CACHE[$reach]}; return; fi
    for ((k = 0; k < KEYS; k++)); do
        n=0
        for i in ${KREP[$k]}; do [[ $reach == *" $i "* ]] && n=$((n + 1)); done
        if ((n >= QUORUM)); then list+="${list:+,}$k"; nav=$((nav + 1)); fi
    done
    if ((nav == KEYS)); then AVAIL=all; elif ((nav == 0)); then AVAIL=none; else AVAIL=$list; fi
    AVAIL_CACHE[$reach]=$AVAIL
}
placement_lines() { # one line per key (at most $1, default 32; plan.txt has all)
    local k max=${1:-32}
    for ((k = 0; k < KEYS && k < max; k++)); do
        printf '  key %d: partition %s, nodes {%s}\n' "$k" "${KPART[$k]}" "$(commas ${KREP[$k]})"
    done
    ((KEYS > max)) && echo "  ... ($((KEYS - max)) more keys in plan.txt)"
    local i line=""
    for i in "${CUR[@]}"; do line+="${line:+, }node $i: ${NODE_NKEYS[i]}"; done
    echo "  keys stored per node: $line"
}

# ---- TLS (--tls) -------------------------------------------------------------------
# Empty in a plaintext run, so every command line below is what it always was.
CERTS="" TLS_VIA=() TLS_FAN=() RAW_ENV=()
setup_tls() {
    ((TLS)) || return 0
    CERTS=$OUT/certs
    local ips=() i
    # Each node is dialled by its address in MEMBERS, so that address is the
    # name its certificate must hold.
    for ((i = 1; i <= TOTAL; i++)); do ips+=("$(node_ip "$i")"); done
    bash "$MAKE_CERTS" "$CERTS" "${ips[@]}" >"$OUT/tmp/make-certs.out" 2>&1 ||
        { cat "$OUT/tmp/make-certs.out" >&3; die_usage "--tls: scripts/make-certs.sh failed"; }
    # via clients and the checks are KeyValue/health callers: the CA is all
    # they need.  The fan-out client speaks dht.Replica, which only a
    # peer-role certificate may call; the raw replica reads too.
    TLS_VIA=(--tls-ca "$CERTS/ca.crt")
    TLS_FAN=(--tls-ca "$CERTS/ca.crt" --tls-cert "$CERTS/coordinator.crt" --tls-key "$CERTS/coordinator.key")
    RAW_ENV=(TLS_CA="$CERTS/ca.crt" TLS_CERT="$CERTS/coordinator.crt" TLS_KEY="$CERTS/coordinator.key")
}

# tls_check: the run really is mutual TLS with roles, not a plaintext run
# that merely passed certificates around: a plaintext caller, a caller
# without a certificate and one without the peer role must all be refused.
TLS_SUMMARY="off (plaintext)"
((TLS)) && TLS_SUMMARY="mutual TLS (not verified: the run stopped before the check)"
tls_check() {
    ((TLS)) || return 0
    local addr out leaks=()
    addr=$(node_ip 1):$PORT
    ip netns exec "${CL_NS[ctl]}" "$CLIENT" --via "$addr" --deadline-ms 1000 health >/dev/null 2>&1 &&
        leaks+=("a plaintext health check of node 1 succeeded")
    ip netns exec "${CL_NS[ctl]}" "$CLIENT" "${TLS_VIA[@]}" --tls-cert "$CERTS/client.crt" --tls-key "$CERTS/client.key" \
        --servers "$MEMBERS" "${CLIENT_REP[@]}" --deadline-ms 1000 get 0 >/dev/null 2>&1 &&
        leaks+=("a fan-out get with the role-less client certificate succeeded")
    if [[ -n $RAWCALL ]]; then
        out=$(ip netns exec "${CL_NS[ctl]}" env TLS_CA="$CERTS/ca.crt" "$RAWCALL" "$addr" /dht.Replica/Read "" 1000 2>&1)
        [[ $out == UNAUTHENTICATED* ]] || leaks+=("dht.Replica/Read without a certificate: '${out%%$'\n'*}', not UNAUTHENTICATED")
        out=$(ip netns exec "${CL_NS[ctl]}" env TLS_CA="$CERTS/ca.crt" TLS_CERT="$CERTS/client.crt" TLS_KEY="$CERTS/client.key" \
            "$RAWCALL" "$addr" /dht.Replica/Read "" 1000 2>&1)
        [[ $out == PERMISSION_DENIED* ]] || leaks+=("dht.Replica/Read with the role-less certificate: '${out%%$'\n'*}', not PERMISSION_DENIED")
    fi
    grep -q PLAINTEXT "$OUT"/logs/node*.log && leaks+=("a node log says it serves PLAINTEXT")
    if ((${#leaks[@]})); then
        TLS_SUMMARY="FAILED"
        local b
        for b in "${leaks[@]}"; do fail_check "TLS: $b"; done
    else
        TLS_SUMMARY="mutual TLS (certificates in certs/): plaintext refused, a fan-out client without the peer role refused"
        [[ -n $RAWCALL ]] && TLS_SUMMARY+=", dht.Replica/Read UNAUTHENTICATED without a certificate and PERMISSION_DENIED without the role"
    fi
}

start_node() {
    local i=$1 ns
    ns=$(ns_of_node "$i")
    local envs=(IP="$(node_ip "$i")" PORT="$PORT" MEMBERS="$MEMBERS" SERVER_BIN="$SERVER" LOG_LEVEL="$NODE_LOG_LEVEL")
    ((HAS_REPLICAS)) && envs+=(REPLICAS="$NREP")
    ((HAS_DATADIR)) && envs+=(DATA_DIR="$OUT/data/node$i")
    ((HAS_FSYNC)) && [[ -n $FSYNC ]] && envs+=(FSYNC="$FSYNC")
    ((TLS)) && envs+=(TLS_CERT="$CERTS/node$i.crt" TLS_KEY="$CERTS/node$i.key" TLS_CA="$CERTS/ca.crt")
    # A spare (membership schedule) waits to be added: JOIN=1 with an empty
    # data directory.  Once its directory records a configuration (it was
    # named by a change, even one that has not completed) it restarts on
    # that, like any member, with MEMBERS as mere seeds.
    local what=""
    if ((MEMBERSHIP)) && [[ ${NODE_ROLE[$i]} == spare && ! -f $OUT/data/node$i/config ]]; then
        envs+=(JOIN=1)
        what=" (spare: JOIN=1, empty data dir, seeds $MEMBERS)"
    elif ((MEMBERSHIP)) && [[ ${NODE_ROLE[$i]} != member ]]; then
        what=" (${NODE_ROLE[$i]}: on its recorded configuration, seeds $MEMBERS)"
    fi
    echo "----- $(date -u +%FT%T.%3NZ) harness: starting node $i$what" >>"$OUT/logs/node$i.log"
    # The subshell, ip netns exec, env and the entrypoint all exec: $! is the
    # server itself.  The working directory is ours, in case the server puts
    # anything relative to it.
    (cd "$OUT/data" && exec ip netns exec "$ns" env -u ID -u DATA_DIR -u FSYNC -u JOIN "${envs[@]}" bash "$ENTRYPOINT") \
        >>"$OUT/logs/node$i.log" 2>&1 </dev/null &
    NODE_PID[$i]=$!
    NODE_STATE[$i]=up
}

alive() { # alive PID: running or stopped, not gone or a zombie
    local s
    [[ -n $1 ]] || return 1
    { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# health I [DEADLINE_MS]: node I answers its health check (from the control ns)
health() {
    ip netns exec "${CL_NS[ctl]}" "$CLIENT" "${TLS_VIA[@]}" --via "$(node_ip "$1"):$PORT" --deadline-ms "${2:-500}" health \
        >/dev/null 2>&1
}

# wait_serving I SECONDS: bounded wait until node I is serving
wait_serving() {
    local i=$1 limit=$2 end
    mono_now
    end=$((NOW + limit * 1000000000))
    while :; do
        health "$i" 500 && return 0
        alive "${NODE_PID[$i]}" || return 1
        mono_now
        ((NOW < end)) || return 1
        sleep 0.2
    done
}

FAILURES=()      # reasons the run fails
NOTES=()         # informational lines for the report
CRASHES=()
fail_check() { FAILURES+=("$*"); log "CHECK FAILED: $*"; }

ensure_all_serving() {
    local i t0
    for i in "${CUR[@]}"; do
        [[ ${NODE_STATE[$i]} == up ]] || continue
        mono_now; t0=$NOW
        if ! wait_serving "$i" "${1:-20}"; then
            fail_check "node $i is not serving ${1:-20} s after the faults were healed (hang or failed recovery; see logs/node$i.log)"
            return 1
        fi
        mono_now
        (((NOW - t0) > 2000000000)) && log "node $i serving again after $(((NOW - t0) / 1000000)) ms"
    done
    return 0
}

kill_node() { # kill_node I: kill -9 and wait until it is gone (bounded)
    local i=$1 p=${NODE_PID[$1]} k
    NODE_STATE[$i]=down
    kill -9 "$p" 2>/dev/null
    for ((k = 0; k < 100; k++)); do alive "$p" || break; sleep 0.05; done
    wait "$p" 2>/dev/null
}

# ---- clients -------------------------------------------------------------------
# F1..Ff: fan-out clients (the client coordinates on all replicas)
# V1..VN: via clients, Vi uses node i's public service for the whole run
#   (membership: while node i is a member; a node added later gets its Vi
#   then, history Vi-wNNN.jsonl)
# R: a via client restarted every window on a node chosen by the seed
# ctl: the control namespace (health checks, final reads, `client
#   members`); never cut off
for ((j = 1; j <= FANOUT; j++)); do
    c=F$j; CLIENTS+=("$c"); CL_KIND[$c]=fan; CL_TARGET[$c]=0; CL_IP[$c]=$NET.$((100 + j))
done
for ((i = 1; i <= TOTAL; i++)); do
    c=V$i; CLIENTS+=("$c"); CL_KIND[$c]=via; CL_TARGET[$c]=$i; CL_IP[$c]=$NET.$((120 + i))
done
CL_KIND[R]=via CL_IP[R]=$NET.140 CL_TARGET[R]=0 CL_KIND[ctl]=ctl CL_IP[ctl]=$NET.200 CL_TARGET[ctl]=0
for c in "${CLIENTS[@]}" R ctl; do CL_NS[$c]=$RUN-${c,,}; done

client_seed() { echo $((SEED * 1000 + $1)); }

start_client() { # start_client NAME INDEX [FILE]: FILE names its history/out/err (default NAME)
    local c=$1 idx=$2 args f=${3:-$1}
    if [[ ${CL_KIND[$c]} == fan ]]; then
        args=("${TLS_FAN[@]}" --servers "$MEMBERS" "${CLIENT_REP[@]}" --deadline-ms "$FAN_DEADLINE_MS")
        set -- random --concurrency "$CONC"
    else
        args=("${TLS_VIA[@]}" --via "$(node_ip "${CL_TARGET[$c]}"):$PORT" --deadline-ms "$VIA_DEADLINE_MS")
        set -- random --concurrency 1
    fi
    ip netns exec "${CL_NS[$c]}" "$CLIENT" "${args[@]}" "$@" --keys "$KEYS" --put-ratio 0.5 \
        --interval-ms "$PACE_MS" --duration 100000 --seed "$(client_seed "$idx")" --json \
        --history "$OUT/history/$f.jsonl" >"$OUT/clients/$f.out" 2>"$OUT/clients/$f.err" </dev/null &
    CL_PID[$c]=$!
    CL_RUNNING[$c]=1
    CL_FILE[$c]=$f
}

start_roamer() { # start_roamer WINDOW NODE
    local w=$1 name
    name=$(printf 'R-w%03d' "$w")
    ip netns exec "${CL_NS[R]}" "$CLIENT" "${TLS_VIA[@]}" --via "$(node_ip "$2"):$PORT" --deadline-ms "$VIA_DEADLINE_MS" \
        random --concurrency 1 --keys "$KEYS" --put-ratio 0.5 --interval-ms "$PACE_MS" --duration 100000 \
        --seed "$(client_seed $((500 + w)))" --json --history "$OUT/history/$name.jsonl" \
        >"$OUT/clients/$name.out" 2>"$OUT/clients/$name.err" </dev/null &
    ROAMER_PID=$!
    ROAMER_NAME=$name
}

# stop_pid PID WHAT: SIGTERM, bounded wait (a client finishes its in-flight
# operations within its deadline), SIGKILL and a failed check if it hangs.
stop_pid() {
    local p=$1 what=$2 limit_ms=$3 k n rc
    [[ -n $p ]] || return 0
    kill -TERM "$p" 2>/dev/null
    n=$((limit_ms / 50))
    for ((k = 0; k < n; k++)); do alive "$p" || break; sleep 0.05; done
    if alive "$p"; then
        fail_check "$what did not stop within $limit_ms ms of SIGTERM (hung); killed"
        kill -9 "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
    rc=$?
    if ((rc != 0 && rc != 137)); then
        fail_check "$what exited with status $rc"
    fi
}

stop_roamer() {
    [[ -n $ROAMER_PID ]] || return 0
    stop_pid "$ROAMER_PID" "client $ROAMER_NAME" $((VIA_DEADLINE_MS + MARGIN_MS + 2000))
    ROAMER_PID=""
}

# check_procs: a node or client that died without being killed by us.
check_procs() {
    local i p rc c
    for ((i = 1; i <= TOTAL; i++)); do
        [[ -n ${NODE_PID[$i]:-} ]] || continue
        [[ ${NODE_STATE[$i]} == down || ${NODE_STATE[$i]} == stopped ]] && continue
        p=${NODE_PID[$i]}
        alive "$p" && continue
        wait "$p" 2>/dev/null
        rc=$?
        local why=""
        ((rc > 128)) && why=" (signal $((rc - 128)))"
        ((rc == 0)) && why=" (a clean exit: SIGTERM/SIGINT from outside the harness?)"
        CRASHES+=("node $i (pid $p) died on its own in window $CUR_W ($CUR_LABEL) at +$(rel "$NOW")s, status $rc$why; see logs/node$i.log")
        fail_check "node $i crashed (status $rc) in window $CUR_W; restarting it"
        tail -n 20 "$OUT/logs/node$i.log" | sed 's/^/    | /'
        start_node "$i"
    done
    for c in "${CLIENTS[@]}"; do
        ((${CL_RUNNING[$c]:-0})) || continue
        alive "${CL_PID[$c]}" && continue
        wait "${CL_PID[$c]}" 2>/dev/null
        rc=$?
        CL_RUNNING[$c]=0
        fail_check "client $c (pid ${CL_PID[$c]}) exited during the run with status $rc; see clients/${CL_FILE[$c]:-$c}.err"
    done
    if [[ -n $ROAMER_PID ]] && ! alive "$ROAMER_PID"; then
        wait "$ROAMER_PID" 2>/dev/null
        fail_check "client $ROAMER_NAME exited during the run with status $?"
        ROAMER_PID=""
    fi
}

# monitor_sleep MS: sleep, watching the processes every 200 ms
monitor_sleep() {
    local end
    mono_now
    end=$((NOW + $1 * 1000000))
    while mono_now && ((NOW < end)); do
        check_procs
        if (((end - NOW) > 200000000)); then sleep 0.2; else sleep "0.$(printf '%03d' $(((end - NOW) / 1000000)))"; fi
    done
}

# ---- nemesis -------------------------------------------------------------------
nft_in() { ip netns exec "$1" nft "${@:2}"; }
declare -A DIRTY    # namespaces holding nemesis rules
# nft_rules NS RULE...: adds the rules to NS's table in one nft transaction
nft_rules() {
    local ns=$1 r txt=""
    shift
    for r in "$@"; do txt+="add rule inet harness $r"$'\n'; done
    DIRTY[$ns]=1
    ip netns exec "$ns" nft -f - <<<"$txt"
}
ipset() { # ipset NODE... -> "{ a, b }"
    local s="" n
    for n in "$@"; do s+="${s:+, }$(node_ip "$n")"; done
    echo "{ $s }"
}
# drop between node namespace A and nodes B... in both directions
block() {
    local a=$1 set
    shift
    (($#)) || return 0
    set=$(ipset "$@")
    nft_rules "$(ns_of_node "$a")" "input ip saddr $set drop" "output ip daddr $set drop"
}
# client namespace C may talk only to nodes ALLOWED...
client_only() {
    local c=$1 others=() n set
    shift
    for ((n = 1; n <= TOTAL; n++)); do [[ " $* " == *" $n "* ]] || others+=("$n"); done
    ((${#others[@]})) || return 0
    set=$(ipset "${others[@]}")
    nft_rules "${CL_NS[$c]}" "input ip saddr $set drop" "output ip daddr $set drop"
}
# heal_network [all]: flushes the nemesis rules (of every namespace with all)
heal_network() {
    local ns ok=0 list=("${!DIRTY[@]}")
    [[ ${1:-} == all ]] && list=("${NS_LIST[@]}")
    for ns in "${list[@]}"; do
        [[ $ns == "$NS_SW" || $ns == *-probe ]] && continue
        nft_in "$ns" flush table inet harness || ok=1
    done
    DIRTY=()
    return $ok
}

# ---- schedule ----------------------------------------------------------------
# PLAN_*: one entry per window.  Kinds: baseline, heal, and the faults.
PLAN_KIND=() PLAN_MS=() PLAN_ARG=() PLAN_ROAM=()
plan_add() { PLAN_KIND+=("$1"); PLAN_MS+=("$2"); PLAN_ARG+=("$3"); rand_below "$NODES"; PLAN_ROAM+=($((R + 1))); }

# fault_args KIND LONG: the seeded targets of one fault, as a string.
# Faults of one node take it among the nodes that store some key of the
# workload (all of them when R = N, so the schedules of a seed are those of
# the harness before placement): a wiped node then has partitions to recover
# and a killed or stopped one takes one replica of some keys with it.  One
# node is at most one replica of each key: every key keeps a quorum when
# R >= 3.  split cuts N - Q(N) nodes off, which may hold a majority of some
# keys' replicas: those keys may fail on the majority side during the fault
# (and work on the minority side); the sides' expectations say so per key.
FARGS=""
fault_args() {
    local kind=$1 long=$2 q=$((NODES / 2 + 1)) pct
    case $kind in
    kill | wipe | pause | isolate) rand_below "${#STORE_NODES[@]}"; FARGS=${STORE_NODES[R]} ;;
    split)
        rand_perm "$NODES"
        # minority = the first N-Q nodes of the permutation, the rest majority
        FARGS="${PERM[*]:0:NODES-q}|${PERM[*]:NODES-q}"
        ;;
    bridge)
        rand_perm "$NODES"
        local rest=("${PERM[@]:1}") h=$(((NODES - 1) / 2))
        FARGS="${PERM[0]}|${rest[*]:0:h}|${rest[*]:h}"
        ;;
    oneway)
        rand_below "${#STORE_NODES[@]}"
        local t=${STORE_NODES[R]}
        pct=100
        if ((long)); then rand_below 2; ((R)) && pct=60; fi
        FARGS="$t|$pct"
        ;;
    clientcut)
        rand_below "$NODES"
        local k=$((R + 1)) j=1
        if ((long)); then rand_below "$FANOUT"; j=$((R + 1)); fi
        FARGS="$k|F$j"
        ;;
    esac
}

fault_ms() { # default length of a fault in the short walk
    case $1 in
    kill | wipe) echo 6000 ;;
    pause) echo $((PAUSE_MIN_MS > 5000 ? PAUSE_MIN_MS : 5000)) ;;
    *) echo 7000 ;;
    esac
}

build_plan() {
    rng_seed "$SEED"
    local f total=0 heal_ms=5000 ms
    plan_add baseline 4000 ""
    if [[ $SCHEDULE == short || $SCHEDULE == soak ]]; then
        for f in "${FAULTS[@]}"; do
            fault_args "$f" 0
            ms=$(fault_ms "$f")
            plan_add "$f" "$ms" "$FARGS"
            plan_add heal "$heal_ms" ""
        done
    fi
    if [[ $SCHEDULE == random || $SCHEDULE == soak ]]; then
        local i
        for i in "${PLAN_MS[@]}"; do total=$((total + i)); done
        local k=0
        while ((total < DURATION * 1000 && k < 10000)); do
            k=$((k + 1))
            rand_below ${#FAULTS[@]}
            f=${FAULTS[R]}
            fault_args "$f" 1
            rand_range 3 12; ms=$((R * 1000))
            [[ $f == pause ]] && ((ms < PAUSE_MIN_MS)) && ms=$PAUSE_MIN_MS
            plan_add "$f" "$ms" "$FARGS"
            rand_range 2 6; heal_ms=$((R * 1000))
            plan_add heal "$heal_ms" ""
            total=$((total + ms + heal_ms))
        done
    fi
}

# (every node: with --membership the spares too, so a partition cuts a
# joining node off like any other)
nodes_except() { local n out=""; for ((n = 1; n <= TOTAL; n++)); do [[ " $* " == *" $n "* ]] || out+="${out:+ }$n"; done; echo "$out"; }
commas() { local IFS=,; echo "$*"; }

# describe KIND ARG -> LABEL
describe() {
    local kind=$1 arg=$2 a b c
    case $kind in
    baseline) LABEL="baseline (no fault)" ;;
    heal) LABEL="healed (no fault)" ;;
    kill) LABEL="kill -9 node $arg, restart $( ((HAS_DATADIR)) && echo "with its data dir" || echo "(no --data-dir: empty replica)")" ;;
    wipe) LABEL="kill -9 node $arg, wipe its data dir, restart (recovers from peers)" ;;
    pause) LABEL="SIGSTOP node $arg (longer than the deadlines), SIGCONT" ;;
    isolate) LABEL="isolate node $arg from the other nodes (clients still reach it)" ;;
    split)
        IFS='|' read -r a b <<<"$arg"
        LABEL="split: minority {$(commas $a)} | majority {$(commas $b)}, clients split too (F1 minority, F2.. majority)"
        ;;
    bridge)
        IFS='|' read -r a b c <<<"$arg"
        LABEL="bridge: {$(commas $b)} <-> node $a <-> {$(commas $c)}; the two sides cannot see each other"
        ;;
    oneway)
        IFS='|' read -r a b <<<"$arg"
        LABEL="one-way loss: ${b}% of node $a's packets to the other nodes dropped (it still receives)"
        ;;
    clientcut)
        IFS='|' read -r a b <<<"$arg"
        LABEL="client cut off: $b (fan-out) and R reach only node $a"
        ;;
    esac
}

# ---- sides: who is on which side in a window ---------------------------------------
# sides.tsv: window client side expect limit_ms avail
#   expect live:     must keep answering (after at most deadline + lease)
#   expect fastfail: cut from a quorum; must answer (false) within the deadline
#   expect down:     talks to a killed/stopped node; must give up by its own deadline
#   expect any:      heal windows: only the deadline bound is checked
#   avail:           the keys whose replicas the client's coordinator still
#                    reaches a quorum of (all | none | k1,k2,...).  With R < N
#                    a side may reach a quorum of some keys only (a split
#                    whose minority holds two of a key's three replicas, an
#                    edge of a bridge): on a live side, a call on one of the
#                    other keys must still answer within its deadline but
#                    need not succeed, and its answer counts as one for the
#                    side's stall; a side that reaches no key's quorum is
#                    fastfail.
side_row() { # side_row W CLIENT SIDE EXPECT [REACH...]: REACH = the nodes its coordinator reaches
    local w=$1 c=$2 side=$3 exp=$4 lim
    shift 4
    AVAIL=all
    if (($#)) && [[ $exp == live || $exp == fastfail ]]; then
        keys_with_quorum "$@"
        [[ $exp == live && $AVAIL == none ]] && exp=fastfail
    fi
    if [[ ${CL_KIND[$c]:-via} == fan ]]; then
        lim=$((FAN_DEADLINE_MS + MARGIN_MS))
    elif [[ $exp == down ]]; then
        lim=$((VIA_DEADLINE_MS + MARGIN_MS))
    else
        lim=$((SERVER_DEADLINE_MS + MARGIN_MS))
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$side" "$exp" "$lim" "$AVAIL" >>"$SIDES"
    SIDE_JSON+="${SIDE_JSON:+,}\"$c\":\"$side\""
}
# assign_sides W KIND ARG ROAMNODE
assign_sides() {
    local w=$1 kind=$2 arg=$3 rn=$4 c n a b x minority="" majority="" exp all rest
    all=$(seq -s ' ' 1 "$NODES")
    SIDE_JSON=""
    case $kind in
    baseline | heal)
        exp=live; [[ $kind == heal ]] && exp=any
        for c in "${CLIENTS[@]}" R; do
            [[ ${CL_KIND[$c]} == fan ]] && side_row "$w" "$c" fan-out $exp || side_row "$w" "$c" via $exp
        done
        ;;
    kill | wipe | pause)
        local what=down; [[ $kind == pause ]] && what=paused
        rest=$(nodes_except "$arg")
        for c in "${CLIENTS[@]}" R; do
            n=${CL_TARGET[$c]}; [[ $c == R ]] && n=$rn
            if [[ ${CL_KIND[$c]} == fan ]]; then side_row "$w" "$c" fan-out live $rest
            elif ((n == arg)); then side_row "$w" "$c" "via node $arg ($what)" down
            else side_row "$w" "$c" "via other nodes" live $rest; fi
        done
        ;;
    isolate | split | oneway)
        if [[ $kind == isolate ]]; then minority=$arg; majority=$(nodes_except "$arg")
        elif [[ $kind == split ]]; then IFS='|' read -r minority majority <<<"$arg"
        else IFS='|' read -r minority x <<<"$arg"; majority=$(nodes_except "$minority"); fi
        local j=0
        for c in "${CLIENTS[@]}" R; do
            if [[ ${CL_KIND[$c]} == fan ]]; then
                j=$((j + 1))
                if [[ $kind == split ]]; then
                    ((j == 1)) && side_row "$w" "$c" "minority {$(commas $minority)}" fastfail $minority ||
                        side_row "$w" "$c" "majority {$(commas $majority)}" live $majority
                else
                    side_row "$w" "$c" fan-out live $majority
                fi
                continue
            fi
            n=${CL_TARGET[$c]}; [[ $c == R ]] && n=$rn
            if [[ " $minority " == *" $n "* ]]; then
                # A lossy node (one-way loss) may still reach a quorum when
                # the loss is partial; either way it must answer in time.
                if [[ $kind == oneway ]]; then side_row "$w" "$c" "lossy node $minority ($x% out)" fastfail $minority
                else side_row "$w" "$c" "minority {$(commas $minority)}" fastfail $minority; fi
            else
                side_row "$w" "$c" "majority {$(commas $majority)}" live $majority
            fi
        done
        ;;
    bridge)
        IFS='|' read -r a b x <<<"$arg"
        for c in "${CLIENTS[@]}" R; do
            n=${CL_TARGET[$c]}; [[ $c == R ]] && n=$rn
            if [[ ${CL_KIND[$c]} == fan ]]; then side_row "$w" "$c" fan-out live $all
            elif ((n == a)); then side_row "$w" "$c" "bridge node $a" live $all
            elif [[ " $b " == *" $n "* ]]; then side_row "$w" "$c" "edge {$(commas $b)}" live $a $b
            else side_row "$w" "$c" "edge {$(commas $x)}" live $a $x; fi
        done
        ;;
    clientcut)
        IFS='|' read -r a x <<<"$arg"
        for c in "${CLIENTS[@]}" R; do
            if [[ $c == "$x" ]]; then side_row "$w" "$c" "cut-off fan-out (sees node $a only)" fastfail $a
            elif [[ $c == R ]]; then side_row "$w" "$c" "cut-off via node $a" live $all
            elif [[ ${CL_KIND[$c]} == fan ]]; then side_row "$w" "$c" fan-out live $all
            else side_row "$w" "$c" via live $all; fi
        done
        ;;
    esac
}

# apply_fault KIND ARG / end_fault KIND ARG
apply_fault() {
    local kind=$1 arg=$2 a b c x n ok=0
    case $kind in
    baseline | heal) ;;
    kill) kill_node "$arg" ;;
    wipe) kill_node "$arg"; rm -rf "$OUT/data/node$arg" ;;
    pause) kill -STOP "${NODE_PID[$arg]}"; NODE_STATE[$arg]=paused ;;
    isolate)
        block "$arg" $(nodes_except "$arg") || ok=1
        for n in $(nodes_except "$arg"); do block "$n" "$arg" || ok=1; done
        ;;
    split)
        IFS='|' read -r a b <<<"$arg"
        for n in $a; do block "$n" $b || ok=1; done
        for n in $b; do block "$n" $a || ok=1; done
        local j=0
        for c in "${CLIENTS[@]}"; do
            [[ ${CL_KIND[$c]} == fan ]] || continue
            j=$((j + 1))
            if ((j == 1)); then client_only "$c" $a || ok=1; else client_only "$c" $b || ok=1; fi
        done
        # R and the via clients talk to one node only; they follow its side.
        ;;
    bridge)
        IFS='|' read -r a b c <<<"$arg"
        for n in $b; do block "$n" $c || ok=1; done
        for n in $c; do block "$n" $b || ok=1; done
        ;;
    oneway)
        IFS='|' read -r a b <<<"$arg"
        x=$(ipset $(nodes_except "$a"))
        if ((b >= 100)); then
            nft_rules "$(ns_of_node "$a")" "output ip daddr $x drop" || ok=1
        else
            nft_rules "$(ns_of_node "$a")" "output ip daddr $x numgen random mod 100 < $b drop" || ok=1
        fi
        ;;
    clientcut)
        IFS='|' read -r a x <<<"$arg"
        client_only "$x" "$a" || ok=1
        client_only R "$a" || ok=1
        ;;
    esac
    ((ok == 0)) || fail_check "could not install the nft rules of $kind ($arg)"
}

end_fault() {
    local kind=$1 arg=$2
    case $kind in
    baseline | heal) ;;
    kill | wipe) start_node "$arg" ;;
    pause) kill -CONT "${NODE_PID[$arg]}"; NODE_STATE[$arg]=up ;;
    *) heal_network || fail_check "could not remove the nft rules (heal)" ;;
    esac
}

# ---- run -----------------------------------------------------------------------
CUR_W=0 CUR_LABEL="" PENDING_WIPE=""

# Windows are contiguous: a fault window ends when its fault is healed, and
# the heal window after it lasts until the next fault is applied (including
# the wait for every node to serve again), so every operation of the run
# falls into the window whose conditions it saw when it was called.
write_window() { # W START END KIND LABEL ROAMER_NODE SIDE_JSON
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$WINDOWS"
    printf '{"window":%d,"fault":"%s","args":"%s","label":"%s","start":%s,"end":%s,"roamer_node":%d,"sides":{%s}}\n' \
        "$1" "$4" "${PLAN_ARG[$1]}" "$5" "$2" "$3" "$6" "$7" >>"$TIMELINE"
}
run_schedule() {
    local w kind arg ms start rn prev_end=0 pend=()
    : >"$WINDOWS"; : >"$SIDES"; : >"$TIMELINE"
    for ((w = 0; w < ${#PLAN_KIND[@]}; w++)); do
        kind=${PLAN_KIND[w]} ms=${PLAN_MS[w]} arg=${PLAN_ARG[w]} rn=${PLAN_ROAM[w]}
        describe "$kind" "$arg"
        # Every fault starts from a healthy cluster (bounded wait).
        [[ $kind != heal ]] && ensure_all_serving 20
        if [[ $kind != heal && -n $PENDING_WIPE ]]; then
            check_wipe_recovery "$PENDING_WIPE"
            PENDING_WIPE=""
        fi
        [[ $kind == clientcut ]] && rn=${arg%%|*}
        stop_roamer
        CUR_W=$w CUR_LABEL=$LABEL
        log "window $w: $LABEL for $((ms / 1000)).$((ms % 1000 / 100)) s (R via node $rn)"
        # The window starts once the fault is in effect (nft rules installed,
        # node killed or stopped).
        apply_fault "$kind" "$arg"
        mono_now
        start=$NOW
        if ((${#pend[@]})); then
            write_window "${pend[@]:0:2}" "$start" "${pend[@]:2}"
            pend=()
        elif ((prev_end)); then
            start=$prev_end
        fi
        assign_sides "$w" "$kind" "$arg" "$rn"
        start_roamer "$w" "$rn"
        monitor_sleep "$ms"
        if [[ $kind == heal || $kind == baseline ]]; then
            pend=("$w" "$start" "$kind" "$LABEL" "$rn" "$SIDE_JSON")
            prev_end=0
        else
            # The window ends when healing begins; calls made while the
            # nemesis undoes the fault belong to the heal window.
            stop_roamer
            mono_now
            prev_end=$NOW
            write_window "$w" "$start" "$NOW" "$kind" "$LABEL" "$rn" "$SIDE_JSON"
            end_fault "$kind" "$arg"
            [[ $kind == wipe ]] && PENDING_WIPE=$arg
        fi
        if ((NOW - T0 > HARD_LIMIT_NS)); then
            fail_check "the run exceeded its time bound ($((HARD_LIMIT_NS / 1000000000)) s); schedule cut short"
            break
        fi
    done
    stop_roamer
    if ((${#pend[@]})); then
        mono_now
        write_window "${pend[@]:0:2}" "$NOW" "${pend[@]:2}"
    fi
}

# ---- membership schedule (--membership) -------------------------------------------
# The cluster starts with NODES members and SPARES nodes waiting to be added
# (JOIN=1, empty data directory, each in its namespace like the others).  A
# step is one of
#   add      `client --servers <members> members add ADDR` of a spare
#   remove   `... members remove ADDR` of a member (never below R members)
#   replace  kill -9 a member for good, add a spare, remove the dead member
#   race     two commands at once, sent to two different members first (add
#            two spares, or add one and remove a member): Paxos lets one
#            win the epoch, the other completes it and answers exit 1
#            ("another change won") or goes on to the next epoch
#   fault    a fault on its own (no change)
# add, remove and race come with a fault two times in three: either the
# fault is in effect first and the command is sent during it ("first"), or
# the command goes first and the fault hits 0-400 ms later ("mid": then
# half the time on the member the command was sent to, which drives the
# change, else on a node drawn among the members and the joining one, so
# the node being removed or added may be the one killed, stopped or cut
# off).  replace has its dead member as its fault.
# At most one node is down or cut off at a time: with R >= 3 every key keeps
# a quorum of its old and of its new replicas, so every change can complete.
# The seed fixes the steps and their random numbers; the targets are drawn
# from them at run time among the real members and spares, because a command
# whose outcome is unknown (exit 3) or refused (exit 1) leaves the
# configuration the nodes report, which is what the schedule goes on from.
MP_KIND=() MP_FAULT=() MP_MODE=() MP_DELAY=() MP_FMS=() MP_HEAL=()
MP_R1=() MP_R2=() MP_R3=() MP_R4=() MP_R5=()
M_PLANNED_MS=0
build_membership_plan() {
    rng_seed "$SEED"
    local m=$NODES s=$SPARES total=4000 k=0 kind f mode delay fms heal seen=" " x
    local valid unseen
    while ((total < DURATION * 1000 && k < 500)); do
        k=$((k + 1))
        valid=() unseen=()
        ((s > 0)) && valid+=(add)
        ((m > NREP)) && valid+=(remove)
        ((s > 0)) && valid+=(replace)
        ((s > 1 || (s > 0 && m > NREP))) && valid+=(race)
        for x in "${valid[@]}"; do [[ $seen == *" $x "* ]] || unseen+=("$x"); done
        # every kind of change early on, then a seeded mix; a fault alone
        # one step in four
        rand_below 4
        if ((${#valid[@]} == 0 || (k > 1 && R == 0))); then
            kind=fault
        elif ((${#unseen[@]})); then
            rand_below ${#unseen[@]}; kind=${unseen[R]}
        else
            rand_below ${#valid[@]}; kind=${valid[R]}
        fi
        seen+="$kind "
        f=none
        case $kind in
        fault) rand_below ${#FAULTS[@]}; f=${FAULTS[R]} ;;
        add | remove | race) rand_below 3; if ((R)); then rand_below ${#FAULTS[@]}; f=${FAULTS[R]}; fi ;;
        esac
        rand_below 2
        if ((R)); then mode=mid; rand_range 0 4; else mode=first; rand_range 3 15; fi
        delay=$((R * 100))
        rand_range 3 7; fms=$((R * 1000))
        [[ $f == pause ]] && ((fms < PAUSE_MIN_MS)) && fms=$PAUSE_MIN_MS
        rand_range 2 4; heal=$((R * 1000))
        MP_KIND+=("$kind") MP_FAULT+=("$f") MP_MODE+=("$mode") MP_DELAY+=("$delay") MP_FMS+=("$fms") MP_HEAL+=("$heal")
        rng_next; MP_R1+=("$R"); rng_next; MP_R2+=("$R"); rng_next; MP_R3+=("$R")
        rng_next; MP_R4+=("$R"); rng_next; MP_R5+=("$R")
        case $kind in
        add | race) m=$((m + 1)) s=$((s - 1)) ;; # (race: assume the add won)
        remove) m=$((m - 1)) s=$((s + 1)) ;;     # a removed node comes back as a spare
        esac
        if [[ $f != none ]]; then x=$((fms + 500)); elif [[ $kind == replace ]]; then x=4000; else x=1500; fi
        total=$((total + x + heal))
    done
    M_PLANNED_MS=$total
}
# m_step_text K -> STEP_TEXT (the plan, before targets are drawn)
m_step_text() {
    local k=$1 f=${MP_FAULT[$1]} d=${MP_DELAY[$1]} fl
    fl="$f for $((MP_FMS[k] / 1000)) s"
    case ${MP_KIND[k]} in
    fault) STEP_TEXT="no change; $fl" ;;
    replace) STEP_TEXT="replace a member: kill -9 it for good, add a spare, remove the dead member" ;;
    add | remove | race)
        case ${MP_KIND[k]} in
        add) STEP_TEXT="add a spare" ;; remove) STEP_TEXT="remove a member" ;;
        race) STEP_TEXT="race: two commands at once (add two spares, or add one and remove a member), to two members" ;;
        esac
        if [[ $f != none ]]; then
            if [[ ${MP_MODE[k]} == first ]]; then STEP_TEXT+=" while $fl (the command $((d / 1000)).$((d % 1000 / 100)) s into it)"
            else STEP_TEXT+="; $fl, from ${d} ms after the command"; fi
        fi
        ;;
    esac
    STEP_TEXT+="; then ${MP_HEAL[k]} ms healed"
}

# -- the real configuration: `client members` (from the control namespace) --
# read_members LIST: sets ME_EPOCH, ME_VIEW, ME_LIST (members, node
# indices), ME_NEXT (next members during a change, else empty), ME_HAS_NEXT
addr_list_to_idx() { # addr_list_to_idx '["a", "b"]' -> IDXS "i j" ascending; 1 if one is not ours
    local s=$1 a out=() arr
    s=${s#[}; s=${s%]}; s=${s//\"/}; s=${s// /}
    IFS=, read -r -a arr <<<"$s"
    IDXS=""
    for a in "${arr[@]}"; do
        [[ -n $a ]] || continue
        [[ -n ${ADDR_IDX[$a]:-} ]] || { IDX_BAD=$a; return 1; }
        out+=("${ADDR_IDX[$a]}")
    done
    ((${#out[@]})) || return 0
    IDXS=$(printf '%s\n' "${out[@]}" | sort -n | tr '\n' ' ')
    IDXS=${IDXS% }
}
read_members() {
    local out
    ME_EPOCH="" ME_VIEW="" ME_LIST="" ME_NEXT="" ME_HAS_NEXT=0
    out=$(ip netns exec "${CL_NS[ctl]}" "$CLIENT" "${TLS_FAN[@]}" --servers "$1" --deadline-ms 2000 --json members \
        2>>"$OUT/tmp/members.err") || return 1
    out=${out//$'\n'/ }
    ME_RAW=$out
    json_field epoch "$out" || return 1
    ME_EPOCH=$JV
    json_field view "$out" && ME_VIEW=$JV
    json_field members "$out" || return 1
    addr_list_to_idx "$JV" || { ME_ERR="unknown address $IDX_BAD in $out"; return 1; }
    ME_LIST=$IDXS
    [[ -n $ME_LIST ]] || return 1
    if json_field next_members "$out"; then
        addr_list_to_idx "$JV" || { ME_ERR="unknown address $IDX_BAD in $out"; return 1; }
        ME_NEXT=$IDXS
        [[ -n $ME_NEXT ]] && ME_HAS_NEXT=1
    fi
    return 0
}
# m_read_members LIST SECONDS: read_members, retried every 0.5 s (bounded)
m_read_members() {
    local end
    mono_now
    end=$((NOW + $2 * 1000000000))
    while :; do
        read_members "$1" && return 0
        mono_now
        ((NOW < end)) || return 1
        monitor_sleep 500
    done
}
# m_wait_settled LIST SECONDS: until no change is in progress (bounded)
m_wait_settled() {
    local end
    mono_now
    end=$((NOW + $2 * 1000000000))
    while :; do
        if read_members "$1" && ((!ME_HAS_NEXT)); then return 0; fi
        mono_now
        ((NOW < end)) || return 1
        monitor_sleep 500
    done
}

# -- commands ----------------------------------------------------------------------
# change_launch OP X SERVERS [SLOT]: `client --servers SERVERS members OP
# ADDR(X)` in the background, from the control namespace; --timeout bounds
# its wait (exit 3 after it), timeout(1) the process itself.  Two slots: a
# race step runs two commands at once.  change_wait SLOT / change_use SLOT
# set CH_N (its number), CH_BASE (changes/NN-OP-nodeX), CH_RC, CH_MS.
CH_N=0 CH_COUNT=0 CH_BASE="" CH_RC="" CH_MS=0
declare -A CHS_BASE CHS_T0 CHS_N CHS_RC CHS_MS
change_launch() {
    local op=$1 x=$2 servers=$3 slot=${4:-0} to=${5:-$CH_TIMEOUT} base first
    CH_COUNT=$((CH_COUNT + 1))
    base=$OUT/changes/$(printf '%02d' "$CH_COUNT")-$op-node$x
    first=${servers%%,*}
    first=${ADDR_IDX[$first]:-?}
    echo "client --servers $servers --timeout $to members $op $(node_ip "$x"):$PORT" >"$base.cmd"
    log "change #$CH_COUNT: members $op $(node_ip "$x"):$PORT (node $x), sent to node $first first (--servers $servers, --timeout $to)"
    mono_now
    CHS_T0[$slot]=$NOW CHS_BASE[$slot]=$base CHS_N[$slot]=$CH_COUNT CHS_RC[$slot]="" CHS_MS[$slot]=0
    (
        ip netns exec "${CL_NS[ctl]}" timeout -k 5 $((to + 15)) "$CLIENT" "${TLS_FAN[@]}" --servers "$servers" \
            --timeout "$to" members "$op" "$(node_ip "$x"):$PORT" >"$base.out" 2>"$base.err" </dev/null
        echo $? >"$base.rc"
    ) &
    CHS_PID[$slot]=$!
}
change_use() { # change_use SLOT
    CH_N=${CHS_N[$1]} CH_BASE=${CHS_BASE[$1]} CH_RC=${CHS_RC[$1]} CH_MS=${CHS_MS[$1]}
}
# change_wait [SLOT]: until the command exits (bounded), watching the processes
change_wait() {
    local slot=${1:-0} end base=${CHS_BASE[${1:-0}]}
    mono_now
    end=$((CHS_T0[$slot] + (CH_TIMEOUT + 30) * 1000000000))
    while [[ ! -s $base.rc ]]; do
        mono_now
        if ((NOW > end)); then
            kill -9 "${CHS_PID[$slot]}" 2>/dev/null
            echo 124 >"$base.rc"
            break
        fi
        check_procs
        sleep 0.1
    done
    wait "${CHS_PID[$slot]}" 2>/dev/null
    CHS_PID[$slot]=""
    CHS_RC[$slot]=$(<"$base.rc")
    mono_now
    CHS_MS[$slot]=$(((NOW - CHS_T0[$slot]) / 1000000))
    change_use "$slot"
    log "change #$CH_N: exit $CH_RC after $((CH_MS / 1000)).$((CH_MS % 1000 / 100)) s: $(head -c 300 "$base.out" | tr '\n' ' ')$(head -c 300 "$base.err" | tr '\n' ' ')"
}
rc_meaning() {
    case $1 in
    0) echo "done" ;; 1) echo "refused/failed" ;; 3) echo "outcome unknown" ;; 2) echo "usage error" ;;
    124 | 137) echo "hung: killed" ;; *) echo "status $1" ;;
    esac
}

# change_resolve OP X WHAT: after `members OP X` exited with CH_RC: read the
# configuration the nodes report; a change left in progress (its driver
# killed, or the command gave up waiting) gets 15 s to finish, then the same
# command again (safe: it completes or repeats it), at most twice; then the
# tracked member set is what the nodes report.  Exit 0 must mean the change
# is in it; exit 1 that this command changed nothing.
CHG_LINES=() CHG_RCS=() CHG_APPLIED=0 CHG_NOTAPPLIED=0 CHG_RETRIES=0
M_EPOCH="" FINAL_EPOCH=""
declare -A CHG_COUNT
change_resolve() {
    local op=$1 x=$2 what=$3 list att=0 rrc extra="" applied=0 ep0=${RESOLVE_EP0:-$M_EPOCH} base rs=() j line
    CHG_COUNT[$op]=$((${CHG_COUNT[$op]:-0} + 1))
    CHG_RCS+=("$CH_RC")
    list=$(addrs_of $(printf '%s\n' "${CUR[@]}" "$x" | sort -n -u))
    if ! m_read_members "$list" 30; then
        fail_check "change #$CH_N ($op node $x): no node answered \`client members\` for 30 s (${ME_ERR:-$(tail -n 1 "$OUT/tmp/members.err")})"
        CHG_LINES+=("#$CH_N $what: exit $CH_RC ($(rc_meaning "$CH_RC")) after $((CH_MS / 1000)).$((CH_MS % 1000 / 100)) s; configuration unreadable")
        return 1
    fi
    while ((ME_HAS_NEXT)); do
        log "change #$CH_N: epoch $ME_EPOCH is changing to {$(commas $ME_NEXT)}; waiting for it to complete"
        m_wait_settled "$list" 15 && break
        att=$((att + 1))
        if ((att > 2)); then
            fail_check "change #$CH_N ($op node $x): the change to {$(commas $ME_NEXT)} never completed (still in progress at epoch $ME_EPOCH after two repeated commands; see changes/ and logs/)"
            break
        fi
        rs=($ME_LIST $ME_NEXT)
        rs=($(printf '%s\n' "${rs[@]}" | sort -n -u))
        base=$CH_BASE.repeat$att
        log "change #$CH_N: repeating members $op $(node_ip "$x"):$PORT (the change is still in progress)"
        ip netns exec "${CL_NS[ctl]}" timeout -k 5 45 "$CLIENT" "${TLS_FAN[@]}" --servers "$(addrs_of "${rs[@]}")" \
            --timeout 30 members "$op" "$(node_ip "$x"):$PORT" >"$base.out" 2>"$base.err" </dev/null
        rrc=$?
        CHG_RETRIES=$((CHG_RETRIES + 1))
        extra+="; repeated: exit $rrc ($(rc_meaning $rrc))"
        log "change #$CH_N: repeat exited $rrc: $(head -c 300 "$base.out" | tr '\n' ' ')$(head -c 300 "$base.err" | tr '\n' ' ')"
        ((rrc == 0 || rrc == 1 || rrc == 3)) || fail_check "change #$CH_N: the repeated command exited $rrc ($(rc_meaning $rrc))"
        m_read_members "$list" 30 || { fail_check "change #$CH_N: \`client members\` unreadable after the repeat"; return 1; }
    done
    set_members $ME_LIST
    M_EPOCH=$ME_EPOCH
    if [[ $op == add ]]; then [[ -n ${IS_MEMBER[$x]:-} ]] && applied=1
    else [[ -z ${IS_MEMBER[$x]:-} ]] && applied=1; fi
    ((applied)) && CHG_APPLIED=$((CHG_APPLIED + 1)) || CHG_NOTAPPLIED=$((CHG_NOTAPPLIED + 1))
    case $CH_RC in
    0) ((applied)) || fail_check "change #$CH_N: \`members $op\` of node $x exited 0 (done) but the nodes report the members {$(commas "${CUR[@]}")} (epoch $M_EPOCH)" ;;
    1) # README: exit 1 = refused or failed, nothing changed by this command
       if ((applied)) && [[ -z $extra ]] && [[ $ep0 != "$M_EPOCH" ]]; then
           fail_check "change #$CH_N: \`members $op\` of node $x exited 1 (refused: nothing changed by this command) but the change it asked for was made while it ran (epoch $ep0 -> $M_EPOCH, members {$(commas "${CUR[@]}")}): '$(head -c 300 "$CH_BASE.out" | tr '\n' ' ')' (changes/$(basename "$CH_BASE").*)"
       fi ;;
    3) ;;
    *) fail_check "change #$CH_N: \`members $op\` of node $x exited $CH_RC ($(rc_meaning "$CH_RC")); see changes/$(basename "$CH_BASE").err" ;;
    esac
    line="#$CH_N [w$MW] $what: exit $CH_RC ($(rc_meaning "$CH_RC")) after $((CH_MS / 1000)).$((CH_MS % 1000 / 100)) s$extra; "
    line+="$( ((applied)) && echo applied || echo "not applied"); epoch $ep0 -> $M_EPOCH, members {$(commas "${CUR[@]}")}"
    CHG_LINES+=("$line")
    log "change #$CH_N: $( ((applied)) && echo applied || echo "not applied"); epoch $M_EPOCH, members {$(commas "${CUR[@]}")}"
}

# -- nodes that join and leave ----------------------------------------------------
# spare_ready I: a spare answers Stats (it waits to be added: epoch 0)
wait_spare_ready() {
    local i=$1 end
    mono_now
    end=$((NOW + 20000000000))
    while :; do
        node_stats "$i" >/dev/null 2>&1 && return 0
        alive "${NODE_PID[$i]}" || break
        mono_now
        ((NOW < end)) || break
        sleep 0.2
    done
    fail_check "spare node $i does not answer 20 s after its start (logs/node$i.log)"
    return 1
}
ensure_spares_ready() {
    local i
    for ((i = 1; i <= TOTAL; i++)); do
        [[ ${NODE_ROLE[$i]} == spare && ${NODE_STATE[$i]:-} == up && -z ${SPARE_OK[$i]:-} ]] || continue
        wait_spare_ready "$i" && SPARE_OK[$i]=1
    done
}
declare -A SPARE_OK
stop_via() { # stop_via I: stop the client of node I's public service
    local c=V$1
    ((${CL_RUNNING[$c]:-0})) || return 0
    CL_RUNNING[$c]=0
    stop_pid "${CL_PID[$c]}" "client $c" $((VIA_DEADLINE_MS + MARGIN_MS + 3000))
    CL_PID[$c]=""
}
# sync_via: a client of the public service on every member, none on others
VINC=0
sync_via() {
    local i c
    for ((i = 1; i <= TOTAL; i++)); do
        c=V$i
        if [[ -n ${IS_MEMBER[$i]:-} ]]; then
            ((${CL_RUNNING[$c]:-0})) && continue
            VINC=$((VINC + 1))
            start_client "$c" $((300 + VINC)) "$(printf '%s-w%03d' "$c" "$MW")"
            log "client $c started on member $i (history/${CL_FILE[$c]}.jsonl)"
        else
            stop_via "$i"
        fi
    done
}
# handle_removed I: node I is no longer a member.  Its Stats must say
# removed=true (polled for up to 20 s: a node that was down or cut off
# learns it from the members) and from then on it must refuse requests:
# three gets through its public service must fail with the node's own
# answer (not a connection failure).  Then it is stopped (SIGTERM: exit 0)
# and restarted empty as a spare (its old data directory is kept as
# data/nodeI.removed-N).  A node removed while down is first restarted on
# its own data directory, so the check covers a node that missed its
# removal.  The gets are recorded in history/checks.jsonl and checked with
# the rest.
REMOVED_NOTES=() RM_N=0
handle_removed() {
    local i=$1 t0 end known=0 refused=0 out rc err="" errs=() msg p k n tc
    NODE_ROLE[$i]=removed
    SPARE_OK[$i]=""
    stop_via "$i"
    if [[ ${NODE_STATE[$i]} == down ]]; then
        log "node $i was removed while down: restarting it on its data directory to check that it learns it"
        start_node "$i"
    fi
    mono_now
    t0=$NOW
    end=$((NOW + 20000000000))
    while :; do
        if node_stats "$i" && [[ $ST_REMOVED == true ]]; then known=1; break; fi
        alive "${NODE_PID[$i]}" || break
        mono_now
        ((NOW < end)) || break
        monitor_sleep 250
    done
    mono_now
    local ms=$(((NOW - t0) / 1000000))
    if ((known)); then
        for ((n = 0; n < 3; n++)); do
            k=$(((i + n) % KEYS))
            mono_now
            tc=$NOW
            out=$(ip netns exec "${CL_NS[ctl]}" "$CLIENT" "${TLS_VIA[@]}" --via "$(node_ip "$i"):$PORT" \
                --deadline-ms "$SERVER_DEADLINE_MS" get "$k" 2>"$OUT/tmp/removed.err")
            rc=$?
            mono_now
            if ((rc == 0)) && [[ $out =~ ^-?[0-9]+$ ]]; then
                printf '{"client":%d,"op":"get","key":%d,"value":%s,"call":%s,"return":%s,"ok":true}\n' \
                    $((100 + i)) "$k" "$out" "$tc" "$NOW" >>"$CHECK_HIST"
                errs+=("get($k) answered $out")
            else
                printf '{"client":%d,"op":"get","key":%d,"value":0,"call":%s,"return":%s,"ok":false}\n' \
                    $((100 + i)) "$k" "$tc" "$NOW" >>"$CHECK_HIST"
                err=$(grep -v 'warning:' "$OUT/tmp/removed.err" | tail -n 1 | head -c 200)
                if [[ $err == *"failed to connect"* || $err == *"DEADLINE_EXCEEDED"* || -z $err ]]; then
                    errs+=("get($k): ${err:-no answer}")
                else
                    refused=$((refused + 1))
                fi
            fi
        done
    fi
    if ((known && refused == 3)); then
        msg="node $i (removed at epoch $M_EPOCH): reports removed=true after ${ms} ms, 3 of 3 gets refused ('$err')"
    elif ((known)); then
        msg="node $i (removed at epoch $M_EPOCH): reports removed=true but does NOT refuse requests: ${errs[*]}"
        fail_check "node $i was removed (epoch $M_EPOCH) and says so, but only $refused of 3 gets through it were refused by it: ${errs[*]}"
    else
        msg="node $i (removed at epoch $M_EPOCH): does NOT report removed=true after 20 s (stats: ${STATS_JSON:0:300})"
        fail_check "node $i was removed (epoch $M_EPOCH) but 20 s later its stats do not say removed=true (logs/node$i.log)"
    fi
    # stop it: like every node, it must exit 0 on SIGTERM
    p=${NODE_PID[$i]}
    NODE_STATE[$i]=stopped
    kill -CONT "$p" 2>/dev/null
    kill -TERM "$p" 2>/dev/null
    for ((k = 0; k < 200; k++)); do alive "$p" || break; sleep 0.05; done
    if alive "$p"; then
        fail_check "removed node $i hung on SIGTERM (10 s); killed"
        kill -9 "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
    rc=$?
    ((rc == 0)) || fail_check "removed node $i exited with status $rc on SIGTERM"
    msg+="; stopped (exit $rc)"
    # ... and it comes back as a new, empty node at the same address
    RM_N=$((RM_N + 1))
    mv "$OUT/data/node$i" "$OUT/data/node$i.removed-$RM_N" 2>/dev/null
    NODE_ROLE[$i]=spare
    start_node "$i"
    if wait_spare_ready "$i"; then
        SPARE_OK[$i]=1
        msg+="; restarted empty as a spare (old data in data/node$i.removed-$RM_N)"
    fi
    log "$msg"
    REMOVED_NOTES+=("$msg")
}
# m_after_changes: the members now reported against those at the step's
# start: removed ones are checked and recycled, new ones get their client
STEP_BEFORE=""
m_after_changes() {
    local i
    for i in $STEP_BEFORE; do
        [[ -n ${IS_MEMBER[$i]:-} ]] || handle_removed "$i"
    done
    for i in "${CUR[@]}"; do
        [[ " $STEP_BEFORE " == *" $i "* ]] && continue
        NODE_ROLE[$i]=member
        SPARE_OK[$i]=""
        log "node $i is a member now"
    done
    # a member whose process is gone (a replaced node that is still a
    # member because its removal did not happen) comes back
    for i in "${CUR[@]}"; do
        if [[ ${NODE_STATE[$i]} == down ]]; then
            log "node $i is still a member: restarting it on its data directory"
            NOTES+=("node $i, killed to be replaced, is still a member (its removal did not happen): restarted on its data directory")
            start_node "$i"
        fi
    done
    sync_via
}

# -- windows ----------------------------------------------------------------------
# As in the other schedules windows are contiguous; a step's window runs
# from the fault (or the command, whichever comes first) until the fault is
# healed (a change alone: until its command exits); the heal window after it
# covers the rest of the command, the checks of removed nodes and the pause
# before the next step.
MW=-1 MW_OPEN=0 MW_START=0 MW_KIND="" MW_LABEL="" MW_RN=0 MW_SIDES=""
mwin_close() { # mwin_close [END]
    local end=${1:-}
    ((MW_OPEN)) || return 0
    if [[ -z $end ]]; then mono_now; end=$NOW; fi
    write_window "$MW" "$MW_START" "$end" "$MW_KIND" "$MW_LABEL" "$MW_RN" "$MW_SIDES"
    MW_OPEN=0
}
mwin_open() { # mwin_open KIND FAULT FARG RN LABEL [START]
    local kind=$1 f=$2 farg=$3 rn=$4 label=$5 start=${6:-}
    stop_roamer
    if [[ -z $start ]]; then mono_now; start=$NOW; fi
    mwin_close "$start"
    MW=$((MW + 1)) MW_OPEN=1 MW_START=$start MW_KIND=$kind MW_LABEL=$label MW_RN=$rn
    PLAN_ARG[MW]=$farg
    CUR_W=$MW CUR_LABEL=$label
    assign_sides_m "$MW" "$kind" "$f" "$farg" "$rn"
    MW_SIDES=$SIDE_JSON
    log "window $MW: $label (R via node $rn)"
    start_roamer "$MW" "$rn"
}
# m_heal F FARG RN: the step's window ends, the fault is undone, the heal
# window begins
m_heal() {
    local f=$1 farg=$2 rn=$3
    stop_roamer
    mono_now
    local end=$NOW
    mwin_close "$end"
    [[ $f != none ]] && end_fault "$f" "$farg"
    mwin_open heal none "" "$rn" "healed (no fault)" "$end"
}
# assign_sides_m W KIND FAULT FARG RN: like assign_sides, for one fault of
# one node (R >= 3: every key keeps a quorum of its replicas, old and new,
# on the side of the other nodes); the clients of a node's public service
# are listed whether or not they run in the window.
assign_sides_m() {
    local w=$1 kind=$2 f=$3 farg=$4 rn=$5 c n j=0 t="" cut=""
    SIDE_JSON=""
    t=${farg%%|*}
    [[ $f == clientcut ]] && cut=${farg#*|}
    for c in "${CLIENTS[@]}" R; do
        if [[ ${CL_KIND[$c]} == fan ]]; then
            j=$((j + 1))
            if [[ $kind == heal ]]; then side_row "$w" "$c" fan-out any
            elif [[ $f == split && $j == 1 ]]; then side_row "$w" "$c" "minority {$t}" fastfail
            elif [[ $f == clientcut && $c == "$cut" ]]; then side_row "$w" "$c" "cut-off fan-out (sees node $t only)" fastfail
            else side_row "$w" "$c" fan-out live; fi
            continue
        fi
        n=${CL_TARGET[$c]}
        [[ $c == R ]] && n=$rn
        if [[ $kind == heal ]]; then side_row "$w" "$c" via any; continue; fi
        case $f in
        kill | pause)
            if ((n == t)); then side_row "$w" "$c" "via node $t ($( [[ $f == kill ]] && echo down || echo paused))" down
            else side_row "$w" "$c" "via other nodes" live; fi
            ;;
        isolate | split)
            if ((n == t)); then side_row "$w" "$c" "minority {$t}" fastfail
            else side_row "$w" "$c" "majority" live; fi
            ;;
        oneway)
            if ((n == t)); then side_row "$w" "$c" "lossy node $t (${farg#*|}% out)" fastfail
            else side_row "$w" "$c" via live; fi
            ;;
        clientcut)
            if [[ $c == R ]]; then side_row "$w" "$c" "cut-off via node $t" live
            else side_row "$w" "$c" via live; fi
            ;;
        *) side_row "$w" "$c" via live ;;
        esac
    done
}
# m_fault_arg F T R2 -> FARG: apply_fault's argument for fault F on node T
m_fault_arg() {
    local f=$1 t=$2 r2=$3
    case $f in
    kill | pause | isolate) FARG=$t ;;
    split) FARG="$t|$(nodes_except "$t")" ;;
    oneway) FARG="$t|$( ((r2 % 2)) && echo 60 || echo 100)" ;;
    clientcut) FARG="$t|F$((r2 % FANOUT + 1))" ;;
    esac
}

# run_m_step K
run_m_step() {
    local k=$1 kind=${MP_KIND[$1]} f=${MP_FAULT[$1]} mode=${MP_MODE[$1]} delay=${MP_DELAY[$1]}
    local fms=${MP_FMS[$1]} heal=${MP_HEAL[$1]} r1=${MP_R1[$1]} r2=${MP_R2[$1]} r3=${MP_R3[$1]} r4=${MP_R4[$1]} r5=${MP_R5[$1]}
    local spares=() m=${#CUR[@]} i j x="" victim="" t="" label flabel="" note="" rn rn2 rot=() cand=() rcand=()
    local ops=() xs=() svs=() leaving=() joining=() c what cmds=""
    for ((i = 1; i <= TOTAL; i++)); do
        [[ ${NODE_ROLE[$i]} == spare && ${NODE_STATE[$i]:-} == up && -n ${SPARE_OK[$i]:-} ]] && spares+=("$i")
    done
    # The plan assumed every change happened; go on from the real state.
    case $kind in
    add | replace)
        if ((${#spares[@]} == 0)); then
            if ((m > NREP)); then note="no spare ready: remove instead of $kind"; kind=remove
            else note="no spare ready and $m members = R: a fault instead of $kind"; kind=fault; fi
        fi
        ;;
    remove)
        if ((m <= NREP)); then
            if ((${#spares[@]})); then note="$m members = R: add instead of remove"; kind=add
            else note="$m members = R and no spare: a fault instead of remove"; kind=fault; fi
        fi
        ;;
    race)
        if ((${#spares[@]} == 0 || (${#spares[@]} == 1 && m <= NREP))); then
            if ((${#spares[@]})); then note="one spare and $m members = R: add instead of race"; kind=add
            elif ((m > NREP)); then note="no spare ready: remove instead of race"; kind=remove
            else note="no spare and $m members = R: a fault instead of race"; kind=fault; fi
        fi
        ;;
    esac
    [[ $kind == fault && $f == none ]] && f=${FAULTS[r4 % ${#FAULTS[@]}]}
    [[ $kind == replace ]] && f=none
    [[ -n $note ]] && { log "step $k: $note"; NOTES+=("step $k: $note"); }
    STEP_BEFORE="${CUR[*]}"
    # The commands go to the members, each from a seeded one on: the first
    # that answers drives the change (a race: two different ones).
    for ((j = 0; j < m; j++)); do rot+=("${CUR[(j + r3 % m) % m]}"); done
    case $kind in
    add) x=${spares[r1 % ${#spares[@]}]}; ops=(add) xs=("$x") joining=("$x") ;;
    remove) x=${CUR[r1 % m]}; ops=(remove) xs=("$x") leaving=("$x") ;;
    replace) victim=${CUR[r1 % m]}; x=${spares[r2 % ${#spares[@]}]} ;;
    race)
        x=${spares[r1 % ${#spares[@]}]}
        ops=(add) xs=("$x") joining=("$x")
        if ((${#spares[@]} > 1 && (m <= NREP || r2 % 2 == 0))); then
            for i in "${spares[@]}"; do [[ $i != "$x" ]] && cand+=("$i"); done
            ops+=(add) xs+=("${cand[r2 % ${#cand[@]}]}") joining+=("${xs[1]}")
        else
            ops+=(remove) xs+=("${CUR[r2 % m]}") leaving+=("${xs[1]}")
        fi
        cand=()
        ;;
    esac
    svs=("$(addrs_of "${rot[@]}")")
    if [[ $kind == race ]]; then
        local rot2=()
        for ((j = 0; j < m; j++)); do rot2+=("${CUR[(j + r3 % m + 1) % m]}"); done
        svs+=("$(addrs_of "${rot2[@]}")")
    fi
    if [[ $f != none ]]; then
        if [[ $f == clientcut ]]; then
            # the cut-off clients keep one node: a member that stays one
            # (through it R must keep answering)
            cand=()
            for i in "${CUR[@]}"; do [[ " ${leaving[*]} " == *" $i "* ]] || cand+=("$i"); done
        else
            cand=("${CUR[@]}" "${joining[@]}")
        fi
        t=${cand[r4 % ${#cand[@]}]}
        # mid: half the time the member the command went to (the driver)
        [[ $mode == mid ]] && ((r4 / 7 % 2 == 0)) && [[ $f != clientcut || " ${leaving[*]} " != *" ${rot[0]} "* ]] && t=${rot[0]}
        m_fault_arg "$f" "$t" "$r2"
        describe "$f" "$FARG"
        flabel=$LABEL
    fi
    # R: a node that stays a member
    for i in "${CUR[@]}"; do
        [[ " ${leaving[*]} " == *" $i "* || $i == "$victim" ]] || rcand+=("$i")
    done
    rn=${rcand[r5 % ${#rcand[@]}]}
    rn2=${rcand[(r5 + 1) % ${#rcand[@]}]}
    [[ $f == clientcut ]] && rn=$t
    for ((j = 0; j < ${#ops[@]}; j++)); do
        cmds+="${cmds:+ and }${ops[j]} node ${xs[j]} (to node ${ADDR_IDX[${svs[j]%%,*}]} first)"
    done
    # A command whose driver is stopped under it gives up first (--timeout 3
    # s, shorter than any pause): exit 3, and the schedule has to find out
    # from the nodes what became of it.
    local cto=$CH_TIMEOUT
    if [[ $f == pause && $mode == mid && $t == "${rot[0]}" ]]; then
        cto=3
        cmds+=" with --timeout 3"
    fi
    case $kind in
    fault)
        stop_roamer
        apply_fault "$f" "$FARG"
        mwin_open "$f" "$f" "$FARG" "$rn" "$flabel (no change)"
        monitor_sleep "$fms"
        m_heal "$f" "$FARG" "$rn2"
        monitor_sleep "$heal"
        ;;
    add | remove | race)
        for i in "${leaving[@]}"; do stop_via "$i"; done
        what=$cmds
        [[ $kind == race ]] && what="race: $cmds at once"
        if [[ $f == none ]]; then
            mwin_open "$kind" none "" "$rn" "$what; no fault"
            for ((j = 0; j < ${#ops[@]}; j++)); do change_launch "${ops[j]}" "${xs[j]}" "${svs[j]}" "$j"; done
            for ((j = 0; j < ${#ops[@]}; j++)); do change_wait "$j"; done
            m_heal none "" "$rn2"
            what+=", no fault"
        elif [[ $mode == first ]]; then
            stop_roamer
            apply_fault "$f" "$FARG"
            mwin_open "$kind+$f" "$f" "$FARG" "$rn" "$what, $((delay / 1000)).$((delay % 1000 / 100)) s into: $flabel"
            monitor_sleep "$delay"
            for ((j = 0; j < ${#ops[@]}; j++)); do change_launch "${ops[j]}" "${xs[j]}" "${svs[j]}" "$j"; done
            monitor_sleep $((fms - delay))
            m_heal "$f" "$FARG" "$rn2"
            for ((j = 0; j < ${#ops[@]}; j++)); do change_wait "$j"; done
            what+=" during $f of node $t"
        else
            mwin_open "$kind+$f" "$f" "$FARG" "$rn" "$what; ${delay} ms later: $flabel"
            for ((j = 0; j < ${#ops[@]}; j++)); do change_launch "${ops[j]}" "${xs[j]}" "${svs[j]}" "$j" "$cto"; done
            monitor_sleep "$delay"
            apply_fault "$f" "$FARG"
            monitor_sleep "$fms"
            m_heal "$f" "$FARG" "$rn2"
            for ((j = 0; j < ${#ops[@]}; j++)); do change_wait "$j"; done
            what+=", $f of node $t ${delay} ms after the command"
        fi
        local RESOLVE_EP0=""
        [[ $kind == race ]] && RESOLVE_EP0=$M_EPOCH
        for ((j = 0; j < ${#ops[@]}; j++)); do
            change_use "$j"
            if [[ $kind == race ]]; then
                change_resolve "${ops[j]}" "${xs[j]}" "race: ${ops[j]} node ${xs[j]} (to node ${ADDR_IDX[${svs[j]%%,*}]} first) against ${ops[1 - j]} node ${xs[1 - j]}${what#*at once}"
            else
                change_resolve "${ops[j]}" "${xs[j]}" "$what"
            fi
        done
        m_after_changes
        monitor_sleep "$heal"
        ;;
    replace)
        stop_via "$victim"
        stop_roamer
        kill_node "$victim"
        label="replace node $victim: kill -9 it for good, add node $x, remove node $victim (commands to node ${rot[0]} first)"
        mwin_open "replace" kill "$victim" "$rn" "$label"
        CHG_COUNT[replace]=$((${CHG_COUNT[replace]:-0} + 1))
        monitor_sleep 1000
        change_launch add "$x" "${svs[0]}"
        change_wait
        change_resolve add "$x" "replace node $victim: add node $x (to node ${rot[0]} first, node $victim down)"
        if [[ -n ${IS_MEMBER[$victim]:-} ]] && ((${#CUR[@]} - 1 >= NREP)); then
            m=${#CUR[@]}
            rot=()
            for ((j = 0; j < m; j++)); do rot+=("${CUR[(j + r3 % m) % m]}"); done
            change_launch remove "$victim" "$(addrs_of "${rot[@]}")"
            change_wait
            change_resolve remove "$victim" "replace node $victim: remove node $victim (to node ${rot[0]} first, node $victim down)"
        elif [[ -n ${IS_MEMBER[$victim]:-} ]]; then
            NOTES+=("replace node $victim: the add did not happen and removing it would leave fewer than R members: it stays")
        fi
        m_heal none "" "$rn2"
        m_after_changes
        monitor_sleep "$heal"
        ;;
    esac
}

run_membership() {
    local k
    : >"$WINDOWS"; : >"$SIDES"; : >"$TIMELINE"
    mwin_open baseline none "" "${CUR[SEED % ${#CUR[@]}]}" "baseline (no fault, no change)"
    monitor_sleep 4000
    for ((k = 0; k < ${#MP_KIND[@]}; k++)); do
        # Every step starts from a healthy cluster (bounded waits).
        ensure_all_serving 20
        ensure_spares_ready
        run_m_step "$k"
        mono_now
        if ((NOW - T0 > HARD_LIMIT_NS)); then
            fail_check "the run exceeded its time bound ($((HARD_LIMIT_NS / 1000000000)) s); schedule cut short"
            break
        fi
    done
    stop_roamer
    mwin_close
}

# m_final_config: after the load stopped and every fault healed, the nodes
# report no change in progress and the member set the schedule tracked.
M_FINAL_SUMMARY="not checked"
m_final_config() {
    local all=() i
    for ((i = 1; i <= TOTAL; i++)); do [[ ${NODE_STATE[$i]:-} == up ]] && all+=("$i"); done
    if ! m_wait_settled "$(addrs_of "${CUR[@]}")" 30; then
        fail_check "final configuration: $( ((ME_HAS_NEXT)) && echo "a change to {$(commas $ME_NEXT)} still in progress" || echo "\`client members\` unreadable") 30 s after the run"
        M_FINAL_SUMMARY="FAILED (see below)"
        return 1
    fi
    FINAL_EPOCH=$ME_EPOCH
    if [[ $ME_LIST != "${CUR[*]}" ]]; then
        fail_check "final configuration: the nodes report the members {$(commas $ME_LIST)} (epoch $ME_EPOCH), the schedule tracked {$(commas "${CUR[@]}")} (epoch $M_EPOCH)"
        M_FINAL_SUMMARY="FAILED (see below)"
        set_members $ME_LIST
        return 1
    fi
    # every node (members, spares) asked together: the highest view must be the same
    if read_members "$(addrs_of "${all[@]}")" && [[ $ME_EPOCH != "$FINAL_EPOCH" || $ME_LIST != "${CUR[*]}" ]]; then
        fail_check "final configuration: asked together, all running nodes report epoch $ME_EPOCH members {$(commas $ME_LIST)}, the members alone epoch $FINAL_EPOCH"
    fi
    M_FINAL_SUMMARY="epoch $FINAL_EPOCH, members {$(commas "${CUR[@]}")} ($(addrs_of "${CUR[@]}")) = the configuration the schedule tracked"
}
# m_wait_recovered SECONDS: until no member has a partition recovering (a
# member added at the end may still be copying); bounded, then the checks
# below say what is left
m_wait_recovered() {
    local end i left t0
    mono_now
    t0=$NOW
    end=$((NOW + $1 * 1000000000))
    while :; do
        left=""
        for i in "${CUR[@]}"; do
            node_stats "$i" && ((ST_PREC == 0)) || left+=" $i"
        done
        [[ -z $left ]] && break
        mono_now
        ((NOW < end)) || break
        sleep 0.5
    done
    mono_now
    log "members recovered$( [[ -n $left ]] && echo " except$left") after $(((NOW - t0) / 1000000)) ms"
}
membership_lines() { # the report's membership section
    local rc n0=0 n1=0 n3=0 nx=0
    for rc in "${CHG_RCS[@]}"; do
        case $rc in 0) n0=$((n0 + 1)) ;; 1) n1=$((n1 + 1)) ;; 3) n3=$((n3 + 1)) ;; *) nx=$((nx + 1)) ;; esac
    done
    echo "membership: $NODES members + $SPARES spares at the start (R = $NREP, at least $NREP members kept; --timeout $CH_TIMEOUT s per command)"
    echo "  ${#CHG_RCS[@]} commands: ${CHG_COUNT[add]:-0} add, ${CHG_COUNT[remove]:-0} remove (of which ${CHG_COUNT[replace]:-0} replace = add + remove of a killed member); exit 0: $n0, 1: $n1, 3: $n3, other: $nx; $CHG_RETRIES repeated; $CHG_APPLIED applied, $CHG_NOTAPPLIED not"
    ((${#CHG_LINES[@]})) && printf '  %s\n' "${CHG_LINES[@]}"
    ((${#REMOVED_NOTES[@]})) && printf '  %s\n' "${REMOVED_NOTES[@]}"
    echo "  final configuration: $M_FINAL_SUMMARY"
    [[ -n $EPOCH_SUMMARY ]] && echo "  epochs: $EPOCH_SUMMARY"
    echo "  final placement of the workload's keys (client locate, the nodes' configuration):"
    placement_lines 32
}

# ---- final checks ------------------------------------------------------------------
# Reads every key through every node's public service (from the control
# namespace, sequentially, after all clients stopped); records the reads in
# the history format so the checker covers them too.
CONVERGED=1
final_reads() {
    local k i v rc t1 try out
    : >"$FINAL_HIST"
    declare -gA FINAL
    for ((k = 0; k < KEYS; k++)); do
        for i in "${CUR[@]}"; do
            v=""
            for ((try = 1; try <= 10; try++)); do
                mono_now; t1=$NOW
                out=$(ip netns exec "${CL_NS[ctl]}" "$CLIENT" "${TLS_VIA[@]}" --via "$(node_ip "$i"):$PORT" \
                    --deadline-ms "$VIA_DEADLINE_MS" get "$k" 2>>"$OUT/tmp/final.err")
                rc=$?
                mono_now
                if ((rc == 0)) && [[ $out =~ ^-?[0-9]+$ ]]; then
                    printf '{"client":%d,"op":"get","key":%d,"value":%s,"call":%s,"return":%s,"ok":true}\n' \
                        "$i" "$k" "$out" "$t1" "$NOW" >>"$FINAL_HIST"
                    v=$out
                    break
                fi
                printf '{"client":%d,"op":"get","key":%d,"value":0,"call":%s,"return":%s,"ok":false}\n' \
                    "$i" "$k" "$t1" "$NOW" >>"$FINAL_HIST"
                sleep 1
            done
            FINAL[$k,$i]=$v
            if [[ -z $v ]]; then
                fail_check "after healing, node $i could not answer get($k) in 10 tries"
                CONVERGED=0
            fi
        done
    done
    local diff=0 line i0=${CUR[0]}
    for ((k = 0; k < KEYS; k++)); do
        line=""
        for i in "${CUR[@]}"; do line+=" node$i=${FINAL[$k,$i]:-?}"; done
        for i in "${CUR[@]:1}"; do
            if [[ ${FINAL[$k,$i]} != "${FINAL[$k,$i0]}" ]]; then
                diff=$((diff + 1))
                CONVERGED=0
                fail_check "replicas disagree after healing: key $k:$line"
                break
            fi
        done
    done
}

# Raw replica state: dht.Replica/Read on each replica (its local value and
# version, no quorum).  Replicas that missed writes while cut off may lag
# behind until a later read or write repairs them; that is legal.  Two
# replicas holding different values under the same version is not.
pb_varint() { # decodes the varint at HEX[POS..]; sets PBV and POS
    local b shift=0
    PBV=0
    while ((POS + 2 <= ${#HEX})); do
        b=$((16#${HEX:POS:2}))
        POS=$((POS + 2))
        PBV=$((PBV | ((b & 127) << shift)))
        shift=$((shift + 7))
        ((b & 128)) || return 0
    done
    return 1
}
pb_uvarint() { # pb_uvarint TAG N: one varint field (N as unsigned 64 bits), nothing for 0
    local k=$2 out b
    ((k == 0)) && { echo ""; return; }
    out=$1
    while :; do
        b=$((k & 127))
        k=$(((k >> 7) & 0x01ffffffffffffff))
        if ((k)); then out+=$(printf '%02x' $((b | 128))); else out+=$(printf '%02x' $b); break; fi
    done
    echo "$out"
}
# protobuf ReadRequest{key=K, config=FINGERPRINT}: a node refuses replica
# requests without its configuration's fingerprint (FAILED_PRECONDITION);
# one that predates fingerprints ignores the field.
key_hex() { echo "$(pb_uvarint 08 "$1")$(pb_uvarint 10 "$RAW_FP")"; }
# RAW_FP: the nodes' fingerprint, from the line every node logs at start
# ("configuration ... (fingerprint 0123456789abcdef)"); 0 when none.
RAW_FP=0
raw_fingerprint() {
    local fp
    # Membership: the configuration changed since the logs' first lines;
    # rawcall puts in the fingerprint each node reports in its Stats.
    ((MEMBERSHIP)) && { RAW_FP=0; return; }
    fp=$(grep -o 'fingerprint [0-9a-f]\{16\}' "$OUT/logs/node1.log" 2>/dev/null | tail -n 1)
    fp=${fp#fingerprint }
    if [[ -n $fp ]]; then RAW_FP=$((16#$fp)); else RAW_FP=0; fi
}
RAW_SUMMARY=""
declare -A RAW_HELD RAW_UNREAD   # per node: keys held (version > 0), reads that failed
# raw_read I K: node I's own (value, version) of key K; sets RAW_OK (1 read,
# 0 the replica refused: recovering; -1 the call failed), RAW_VAL, RAW_VER
raw_read() {
    local out status f wt okf=0 value=0 counter=0 writer=0
    RAW_OK=-1 RAW_VAL="" RAW_VER=""
    out=$(ip netns exec "${CL_NS[ctl]}" env "${RAW_ENV[@]}" "$RAWCALL" "$(node_ip "$1"):$PORT" /dht.Replica/Read "$(key_hex "$2")" 2000 2>/dev/null)
    status=${out%% *}
    RAW_STATUS=${out%%$'\n'*}
    HEX=$(sed -n 2p <<<"$out")
    [[ $status == OK ]] || return 1
    POS=0
    while ((POS < ${#HEX})); do
        pb_varint || break
        f=$((PBV >> 3)) wt=$((PBV & 7))
        ((wt == 0)) || break
        pb_varint || break
        case $f in 1) okf=$PBV ;; 2) value=$PBV ;; 3) counter=$PBV ;; 4) writer=$PBV ;; esac
    done
    RAW_OK=$okf RAW_VAL=$value RAW_VER="$counter.$writer"
    return 0
}
raw_replica_state() {
    [[ -n $RAWCALL ]] || { RAW_SUMMARY="not checked (no rawcall binary)"; return; }
    raw_fingerprint
    local k i lag=0 same=0 bad=0 unread=0 stray=0 nonrep=0 leftover=0 nrefused=0
    local -A val ver
    for i in "${CUR[@]}"; do RAW_HELD[$i]=0 RAW_UNREAD[$i]=0; done
    for ((k = 0; k < KEYS; k++)); do
        for i in "${CUR[@]}"; do
            raw_read "$i" "$k"
            if ((MEMBERSHIP && RAW_OK == 0)) && ! is_replica "$k" "$i"; then
                # A member answers ok=false for a partition it does not
                # store in its configuration (what it may have left from an
                # earlier one is not readable this way).
                nonrep=$((nonrep + 1)) nrefused=$((nrefused + 1))
                continue
            fi
            if ((RAW_OK != 1)); then # failed, or ok=false: the replica is still recovering
                unread=$((unread + 1)) RAW_UNREAD[$i]=$((RAW_UNREAD[$i] + 1))
                ((MEMBERSHIP)) && echo "raw read of key $k on node $i: ok=$RAW_OK status '${RAW_STATUS:-}'" >>"$HLOG"
                continue
            fi
            [[ $RAW_VER != 0.0 ]] && RAW_HELD[$i]=$((RAW_HELD[$i] + 1))
            if ! is_replica "$k" "$i"; then
                # Not one of the key's replicas: it must hold nothing for it.
                nonrep=$((nonrep + 1))
                if ((MEMBERSHIP)) && [[ $RAW_VER != 0.0 || $RAW_VAL != 0 ]]; then
                    # ... except what it stored as a replica of an earlier
                    # configuration (a change copies partitions to their new
                    # replicas and leaves the old copies where they were):
                    # legal, but it is still compared with the others below,
                    # since one version can never hold two values.
                    leftover=$((leftover + 1))
                    val[$k,$i]=$RAW_VAL
                    ver[$k,$i]=$RAW_VER
                elif [[ $RAW_VER != 0.0 || $RAW_VAL != 0 ]]; then
                    stray=$((stray + 1))
                    fail_check "node $i holds key $k (value $RAW_VAL, version $RAW_VER) but is not one of its replicas {$(commas ${KREP[$k]})}"
                fi
                continue
            fi
            val[$k,$i]=$RAW_VAL
            ver[$k,$i]=$RAW_VER
        done
        # Only the key's own replicas are compared with each other (with
        # --membership every node that holds the key: leftovers too).
        local reps=(${KREP[$k]}) a b i2 j2 agree=1
        ((MEMBERSHIP)) && reps=("${CUR[@]}")
        for ((a = 0; a < ${#reps[@]}; a++)); do
            for ((b = a + 1; b < ${#reps[@]}; b++)); do
                i2=${reps[a]} j2=${reps[b]}
                [[ -n ${ver[$k,$i2]:-} && -n ${ver[$k,$j2]:-} ]] || continue
                if [[ ${ver[$k,$i2]} == "${ver[$k,$j2]}" ]]; then
                    if [[ ${val[$k,$i2]} != "${val[$k,$j2]}" ]]; then
                        bad=$((bad + 1))
                        fail_check "replicas $i2 and $j2 hold different values (${val[$k,$i2]} vs ${val[$k,$j2]}) under the same version ${ver[$k,$i2]} for key $k"
                    fi
                elif is_replica "$k" "$i2" && is_replica "$k" "$j2"; then
                    agree=0
                fi
            done
        done
        ((agree)) && same=$((same + 1)) || lag=$((lag + 1))
    done
    if ((NREP == ${#CUR[@]})); then
        RAW_SUMMARY="$same of $KEYS keys identical (value and version) on every replica"
    else
        RAW_SUMMARY="$same of $KEYS keys identical (value and version) on all $NREP of their replicas"
    fi
    RAW_SUMMARY+="; $lag keys where some replica still lags (legal: repaired by the next read or write of the key, or anti-entropy)"
    if ((MEMBERSHIP)); then
        RAW_SUMMARY+="; $nonrep reads of a key on a member that does not store it now: $nrefused refused (ok=false: not its partition), $leftover found an entry left from an earlier configuration (legal, compared with the others: no version with two values)"
    elif ((NREP < NODES)); then
        RAW_SUMMARY+="; $nonrep reads of a key on a node that does not store it: $( ((stray)) && echo "$stray found a value (FAILED)" || echo "all empty")"
    fi
    if ((unread)); then
        RAW_SUMMARY+="; $unread replica reads failed or found the replica recovering"
        if ((MEMBERSHIP)); then
            local per=""
            for i in "${CUR[@]}"; do ((RAW_UNREAD[$i])) && per+="${per:+, }node $i: ${RAW_UNREAD[$i]}"; done
            RAW_SUMMARY+=" ($per; harness.log says which)"
        fi
    fi
    ((bad)) && RAW_SUMMARY+="; $bad CONFLICTS (same version, different values)"
}

# ---- node statistics (`client --via ADDR stats`) -------------------------------
# node_stats I: sets ST_KEYS ST_REPLICAS ST_MEMBERS ST_FP ST_CID ST_PARTS
# ST_PREC from node I's stats (one JSON object); 1 if it could not be read.
# "members" may be a count or the list of addresses.
json_field() { # json_field NAME JSON -> the value (number, "string" unquoted, or [list])
    local re="\"$1\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|\\[[^]]*\\]|[-0-9.a-zA-Z]+)"
    [[ $2 =~ $re ]] || { JV=""; return 1; }
    JV=${BASH_REMATCH[1]}
    JV=${JV#\"} JV=${JV%\"}
}
STATS_JSON=""
# With membership changes also ST_EPOCH ST_VIEW ST_REMOVED, ST_MLIST and
# ST_NEXT (the members and the next members, as node indices; ST_NEXT
# empty when no change is in progress).
node_stats() {
    local out
    ST_KEYS="" ST_REPLICAS="" ST_MEMBERS="" ST_FP="" ST_CID="" ST_PARTS="" ST_PREC=""
    ST_EPOCH="" ST_VIEW="" ST_REMOVED="" ST_MLIST="" ST_NEXT=""
    out=$(ip netns exec "${CL_NS[ctl]}" "$CLIENT" "${TLS_FAN[@]}" --via "$(node_ip "$1"):$PORT" --deadline-ms 2000 stats 2>&1) || { STATS_JSON=$out; return 1; }
    STATS_JSON=${out//$'\n'/ }
    json_field keys "$STATS_JSON" && ST_KEYS=$JV
    json_field replicas "$STATS_JSON" && ST_REPLICAS=$JV
    if json_field members "$STATS_JSON"; then
        if [[ $JV == \[* ]]; then
            local inner=${JV#[} ; inner=${inner%]}
            local IFS=,
            local arr=($inner)
            ST_MEMBERS=${#arr[@]}
        else
            ST_MEMBERS=$JV
        fi
        ((MEMBERSHIP)) && addr_list_to_idx "$JV" && ST_MLIST=$IDXS
    fi
    if ((MEMBERSHIP)); then
        json_field epoch "$STATS_JSON" && ST_EPOCH=$JV
        json_field view "$STATS_JSON" && ST_VIEW=$JV
        json_field removed "$STATS_JSON" && ST_REMOVED=$JV
        json_field next_members "$STATS_JSON" && addr_list_to_idx "$JV" && ST_NEXT=$IDXS
    fi
    json_field fingerprint "$STATS_JSON" && ST_FP=$JV
    json_field cluster_id "$STATS_JSON" && ST_CID=$JV
    json_field partitions "$STATS_JSON" && ST_PARTS=$JV
    json_field partitions_recovering "$STATS_JSON" && ST_PREC=$JV
    [[ $ST_KEYS =~ ^[0-9]+$ && $ST_PARTS =~ ^[0-9]+$ && $ST_PREC =~ ^[0-9]+$ ]]
}

# check_wipe_recovery I: node I was wiped and restarted and serves again.
# It must have recovered from its peers (its log says so; a node that forms
# a "new cluster" while the others remember one lost acknowledged writes)
# and, when the client has `stats`, recorded the cluster id the others have,
# with no partition left recovering.
WIPE_NOTES=()
check_wipe_recovery() {
    local i=$1 seg why j cid="" other=""
    seg=$(awk '/harness: starting node/ { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' "$OUT/logs/node$i.log")
    # ("waiting ... to tell a new cluster from a lost disk" is fine: the decision is what counts)
    if grep -qE 'serving reads \(new cluster\)|this is a new cluster|formed with this node as a founder' <<<"$seg"; then
        fail_check "wiped node $i decided 'new cluster' on restart instead of recovering from its peers (logs/node$i.log)"
    fi
    why=$(grep -o 'serving reads ([^)]*)' <<<"$seg" | tail -n 1)
    local parts
    parts=$(grep -c 'partitions complete after copying' <<<"$seg")
    local msg="wiped node $i: ${why:-no 'serving reads' line in its log}"
    ((parts)) && msg+=", $parts partition-recovery steps logged"
    msg+="; stores ${NODE_NKEYS[i]} of the $KEYS keys"
    if ((HAS_STATS)); then
        if node_stats "$i"; then
            cid=$ST_CID
            msg+="; stats: ${ST_PARTS} partitions, ${ST_PREC} recovering, ${ST_KEYS} keys held, cluster id $cid"
            ((ST_PREC == 0)) || fail_check "wiped node $i serves but its stats say $ST_PREC partitions are still recovering"
            for ((j = 1; j <= NODES; j++)); do
                ((j == i)) && continue
                node_stats "$j" || continue
                other=$ST_CID
                [[ $cid == "$other" ]] || fail_check "wiped node $i recorded cluster id $cid, node $j has $other"
                break
            done
            [[ -n $other ]] && [[ $cid == "$other" ]] && msg+=" (= node $j's)"
        else
            fail_check "wiped node $i: stats failed: ${STATS_JSON:0:200}"
        fi
    fi
    log "$msg"
    WIPE_NOTES+=("$msg")
}

# cluster_stats: after healing, every node reports the same configuration
# (R, members, fingerprint) and cluster id, no partition still recovering,
# partitions stored adding up to P * R, and no more entries than the
# workload's keys it stores (an entry of a key it does not store would be a
# write that went to the wrong node), no fewer than the raw reads found.
#
# With --membership: the members of the final configuration, which must all
# report the epoch, view and member set the schedule tracked (`client
# members`), no change in progress, not removed; entries of keys a member no
# longer stores are legal (left from earlier configurations) and counted.
STATS_SUMMARY="not checked (the client has no 'stats' command)"
EPOCH_SUMMARY=""
cluster_stats() {
    ((HAS_STATS)) || return 0
    local i t fp="" cid="" sum=0 bad=0 end held nm=${#CUR[@]} ep="" vw="" left=0 i0=${CUR[0]}
    mono_now
    end=$((NOW + 30000000000))
    for i in "${CUR[@]}"; do
        while :; do
            if node_stats "$i" && ((ST_PREC == 0)); then break; fi
            mono_now
            if ((NOW >= end)); then
                fail_check "node $i: $( [[ -n $ST_PREC ]] && echo "$ST_PREC partitions still recovering" || echo "stats unreadable (${STATS_JSON:0:200})") 30 s after healing"
                bad=1
                break
            fi
            sleep 0.5
        done
        [[ -n $ST_PARTS ]] || continue
        [[ $ST_REPLICAS == "$NREP" ]] || { fail_check "node $i reports replicas=$ST_REPLICAS, not $NREP"; bad=1; }
        [[ $ST_MEMBERS == "$nm" ]] || { fail_check "node $i reports $ST_MEMBERS members, not $nm"; bad=1; }
        if [[ -z $fp ]]; then fp=$ST_FP; elif [[ $ST_FP != "$fp" ]]; then fail_check "node $i's fingerprint $ST_FP differs from node $i0's $fp"; bad=1; fi
        if [[ -z $cid ]]; then cid=$ST_CID; elif [[ $ST_CID != "$cid" ]]; then fail_check "node $i's cluster id $ST_CID differs from node $i0's $cid"; bad=1; fi
        [[ $ST_CID =~ ^0*$|^0x0*$ ]] && { fail_check "node $i has no cluster id"; bad=1; }
        sum=$((sum + ST_PARTS))
        if ((MEMBERSHIP)); then
            [[ $ST_MLIST == "${CUR[*]}" ]] || { fail_check "member $i reports the members {$(commas $ST_MLIST)}, not the tracked {$(commas "${CUR[@]}")}"; bad=1; }
            [[ -z $ST_NEXT ]] || { fail_check "member $i still reports a change in progress (next members {$(commas $ST_NEXT)})"; bad=1; }
            [[ $ST_REMOVED == false ]] || { fail_check "member $i reports removed=$ST_REMOVED"; bad=1; }
            if [[ -z $ep ]]; then ep=$ST_EPOCH vw=$ST_VIEW
            elif [[ $ST_EPOCH != "$ep" || $ST_VIEW != "$vw" ]]; then fail_check "member $i is at epoch $ST_EPOCH (view $ST_VIEW), member $i0 at epoch $ep (view $vw)"; bad=1; fi
            [[ -n $FINAL_EPOCH && $ST_EPOCH != "$FINAL_EPOCH" ]] && { fail_check "member $i is at epoch $ST_EPOCH, \`client members\` said $FINAL_EPOCH"; bad=1; }
            ((ST_KEYS > NODE_NKEYS[i])) && left=$((left + ST_KEYS - NODE_NKEYS[i]))
        elif ((ST_KEYS > NODE_NKEYS[i])); then
            fail_check "node $i holds $ST_KEYS keys but stores only ${NODE_NKEYS[i]} of the workload's $KEYS (entries of keys it does not store)"
            bad=1
        fi
        held=${RAW_HELD[$i]:-}
        if [[ -n $held && ${RAW_UNREAD[$i]:-1} == 0 ]] && ((ST_KEYS < held)); then
            fail_check "node $i's stats say $ST_KEYS keys, but its raw reads found $held"
            bad=1
        fi
    done
    if ((sum != 65536 * NREP)); then
        fail_check "the nodes store $sum partitions in all, not 65536 x $NREP"
        bad=1
    fi
    if ((MEMBERSHIP)); then
        ((bad)) && STATS_SUMMARY="FAILED (see below)" ||
            STATS_SUMMARY="every member: replicas=$NREP, the $nm tracked members, epoch $ep (view $vw), no change in progress, fingerprint $fp, cluster id $cid, no partition recovering; $sum partitions stored = 65536 x $NREP; $left entries of keys a member no longer stores (left from earlier configurations)"
        EPOCH_SUMMARY="every member reports epoch ${ep:-?} (view ${vw:-?})"
        ((bad)) && EPOCH_SUMMARY+=" (or FAILED, see below)"
        return
    fi
    ((bad)) && STATS_SUMMARY="FAILED (see below)" ||
        STATS_SUMMARY="every node: replicas=$NREP, $NODES members, fingerprint $fp, cluster id $cid, no partition recovering; $sum partitions stored = 65536 x $NREP; keys held within what each stores"
}

# ---- report --------------------------------------------------------------------
compute_stats() {
    local ops=$OUT/tmp/ops.tsv stall=$OUT/tmp/stall.tsv h hist=()
    for h in "$OUT"/history/*.jsonl; do [[ $h == "$FINAL_HIST" || $h == "$CHECK_HIST" ]] || hist+=("$h"); done
    awk -v mode=classify -f "$STATS_AWK" "$WINDOWS" "$SIDES" "${hist[@]}" >"$ops" 2>"$OUT/tmp/stats.err" &&
        LC_ALL=C sort -t $'\t' -k1,1n -k2,2 -k8,8n "$ops" | awk -v mode=stall -f "$STATS_AWK" "$WINDOWS" - >"$stall" 2>>"$OUT/tmp/stats.err" &&
        LC_ALL=C sort -t $'\t' -k1,1n -k2,2 -k7,7n "$ops" | awk -v mode=groups -f "$STATS_AWK" "$stall" - >"$OUT/tmp/groups.out" 2>>"$OUT/tmp/stats.err" ||
        fail_check "computing the statistics failed: $(head -c 500 "$OUT/tmp/stats.err")"
    grep -v '^LATE' "$OUT/tmp/groups.out" >"$GROUPS_TSV"
    grep '^LATE' "$OUT/tmp/groups.out" >"$OUT/tmp/late.tsv"
    rm -f "$ops"
}
write_report() {
    local groups=$GROUPS_TSV stall_limit_ms=$((GRACE_MS + MARGIN_MS))
    {
        echo "================ fault harness report ================"
        echo "date:      $(date -u '+%F %T UTC')   host: $(hostname)   cores: $(nproc)   kernel: $(uname -r)"
        echo "seed:      $SEED   schedule: $SCHEDULE   nodes: $NODES$( ((MEMBERSHIP)) && echo " members + $SPARES spares")   replicas per key: $NREP (quorum $QUORUM)   faults: ${FAULTS[*]}"
        echo "replay:    tests/harness/harness.sh $(replay_args)"
        echo "workload:  keys 0..$((KEYS - 1)), put ratio 0.5; fan-out clients F1..F$FANOUT x$CONC threads; via clients V1..V$NODES (Vi -> node i); R: via a node drawn per window; pace ${PACE_MS} ms"
        echo "deadlines: server $SERVER_DEADLINE_MS ms (lease $LEASE_MS ms); fan-out client $FAN_DEADLINE_MS ms; via client $VIA_DEADLINE_MS ms; margin $MARGIN_MS ms"
        echo "durability: $( ((HAS_DATADIR)) && echo "server has --data-dir: nodes restart with their WAL; wipe = empty dir" || echo "server has NO --data-dir: a killed node restarts EMPTY; wipe nemesis not run")"
        echo "clock:     CLOCK_MONOTONIC from /proc/$CLOCK_SRC"
        if ((MEMBERSHIP)); then
            echo "placement: each key on $NREP of the members, as the configuration changes (final placement below)"
            echo "via clients: Vi runs while node i is a member (a node added later: history/Vi-wNNN.jsonl)"
        elif ((NREP < NODES)); then
            echo "placement: each key on $NREP of the $NODES nodes (client locate; rendezvous hashing over 65,536 partitions):"
            placement_lines 32
        else
            echo "placement: every node stores every key (R = N = $NODES)"
        fi
        echo "transport: $TLS_SUMMARY"
        echo
        echo "Per fault window and side: ops called in the window; ok / fail (false or error) / unk (outcome"
        echo "unknown); latency percentiles in ms; stall = longest time (s) a 'live' side went without any ok"
        echo "answer; late = calls slower than their deadline + margin. expect: live = must keep answering,"
        echo "fastfail = no quorum reachable, must answer false/unavailable within the deadline,"
        echo "down = talks to a killed/stopped node, any = healing."
        echo
        awk -F '\t' -v t0="$T0" -v keys="$KEYS" '
            BEGIN { last = "none" }
            FILENAME ~ /windows\.tsv$/ { ws[$1] = $2; we[$1] = $3; lab[$1] = $5; next }
            FILENAME ~ /sides\.tsv$/ { if (!(($1, $3) in av)) av[$1, $3] = (NF >= 6 ? $6 : "all"); next }
            {
                if ($1 "" != last) {
                    last = $1 ""
                    printf "[%d] +%.1fs %5.1fs  %s\n", $1, (ws[$1] - t0) / 1e9, (we[$1] - ws[$1]) / 1e9, lab[$1]
                }
                st = ($13 == "-" ? "-" : ($13 == "nook" ? "NO-OK" : sprintf("%.1f", $13 / 1000)))
                printf "      %-34s %-14s %7d %7d %6d %5d %8.1f %8.1f %8.1f %6s %4d  %s\n", substr($2, 1, 34), substr($4, 1, 14), $5, $6, $7, $8, $9, $10, $11, st, $12, $3
                a = av[$1, $2]
                if (a != "" && a != "all" && a != "none") {
                    if (length(a) > 60) a = substr(a, 1, 57) "..."
                    printf "        quorum reachable from this side for keys {%s} only (of %d)", a, keys
                    if ($3 == "live") printf "; on those: %d of %d calls ok; on the others: %d calls, must answer in time, ok not required", $6 - $15, $5 - $14, $14
                    printf "\n"
                }
            }' "$WINDOWS" "$SIDES" "$groups" | sed '1i\      side                               clients            ops      ok   fail   unk   p50 ms   p99 ms   max ms  stall late  expect'
        echo
        awk -F '\t' '{ n += $5; ok += $6; f += $7; u += $8 } END { printf "total: %d operations: %d ok, %d failed, %d unknown\n", n, ok, f, u }' "$groups"
        echo
        echo "checks:"
        echo "  linearizability: $LIN_VERDICT"
        if ((LIN_RC == 1)); then
            echo "    smallest failing key's sub-history (lincheck.txt; '#' = op index in the merged"
            echo "    history, clients: pid*1000+thread of each history/*.jsonl, 1..N = final reads via node N):"
            head -n 200 "$OUT/lincheck.txt" | sed 's/^/    | /'
            (($(wc -l <"$OUT/lincheck.txt") > 200)) && echo "    | ... (truncated; see lincheck.txt)"
        fi
        echo "  convergence (every key read through every $( ((MEMBERSHIP)) && echo "final member" || echo node)'s public service after healing): $( ((CONVERGED)) && echo "all ${#CUR[@]} $( ((MEMBERSHIP)) && echo "members {$(commas "${CUR[@]}")}" || echo nodes) return the same value for all $KEYS keys" || echo "FAILED (see below)")"
        echo "  replica state (raw dht.Replica/Read on each node): $RAW_SUMMARY"
        echo "  node stats (client stats on each node after healing): $STATS_SUMMARY"
        ((${#WIPE_NOTES[@]})) && printf '  %s\n' "${WIPE_NOTES[@]}"
        ((MEMBERSHIP)) && membership_lines | sed 's/^/  /'
        if ((${#CRASHES[@]})); then
            echo "  node crashes: ${#CRASHES[@]}"
            printf '    %s\n' "${CRASHES[@]}"
        else
            echo "  node crashes: none (no node exited except by the nemesis' kill -9; shutdown: $SHUTDOWN_NOTE)"
        fi
        local nlate
        nlate=$(awk -F '\t' '{ n += $12 } END { print n + 0 }' "$groups")
        echo "  deadlines: $nlate calls slower than their deadline + $MARGIN_MS ms margin"
        awk -F '\t' '{ printf "    late: window %s client %s %s %s after %s ms (limit %s ms)\n", $2, $3, $4, $5, $6, $7 }' "$OUT/tmp/late.tsv"
        local stalls
        stalls=$(awk -F '\t' -v lim="$stall_limit_ms" '$3 == "live" && ($13 == "nook" || $13 + 0 > lim) { printf "window %s side %s: %s\n", $1, $2, ($13 == "nook" ? "no ok answer at all" : sprintf("%.1f s without an ok answer", $13 / 1000)) }' "$groups")
        echo "  liveness of 'live' sides (longest stall <= deadline + lease + margin = $stall_limit_ms ms): $([[ -z $stalls ]] && echo ok || echo FAILED)"
        [[ -n $stalls ]] && sed 's/^/    /' <<<"$stalls"
        ((${#NOTES[@]})) && printf '  note: %s\n' "${NOTES[@]}"
        echo
        if ((${#FAILURES[@]})); then
            echo "VERDICT: FAIL"
            printf '  - %s\n' "${FAILURES[@]}"
        else
            echo "VERDICT: PASS (linearizable, converged, no crash, no hang)"
        fi
        echo
        echo "files (in $OUT):"
        echo "  report.txt, timeline.jsonl (nemesis windows, CLOCK_MONOTONIC ns), plan.txt (the schedule),"
        echo "  history/*.jsonl (every operation; F*/V* whole run, R-wNNN per window, final.jsonl = final reads),"
        echo "  lincheck.txt, stats.tsv, logs/node*.log (through docker/entrypoint.sh), clients/*.out|err, harness.log"
        ((TLS)) && echo "  certs/ (the run's CA and certificates, made by scripts/make-certs.sh)"
        ((MEMBERSHIP)) && echo "  changes/NN-OP-nodeI.{cmd,out,err,rc} (each members add|remove; .repeatN: a repeat), history/checks.jsonl (gets through removed nodes), data/nodeI.removed-N (a removed node's data dir)"
        ((PASSED_PENDING && !KEEP && !OUT_GIVEN)) && echo "  (this directory is removed on exit because the run passed; use --keep or --out to keep it)"
    } >"$REPORT"
}

# ---- main ----------------------------------------------------------------------
HARD_LIMIT_NS=0
SHUTDOWN_NOTE="not reached"
LIN_VERDICT="not run" LIN_RC=-1
PASSED_PENDING=0

compute_placement
planned_ms=0
if ((MEMBERSHIP)); then
    build_membership_plan
    planned_ms=$M_PLANNED_MS
else
    build_plan
    for ms in "${PLAN_MS[@]}"; do planned_ms=$((planned_ms + ms)); done
fi
HARD_LIMIT_NS=$(((planned_ms + 120000) * 1000000 + planned_ms * 300000))
replay_args() {
    echo "--bin $BIN --schedule $SCHEDULE --seed $SEED --nodes $NODES$( ((MEMBERSHIP)) && echo " --spares $SPARES")$( ((HAS_REPLICAS)) && echo " --replicas $NREP")$( [[ $SCHEDULE != short ]] && echo " --duration $DURATION")$( [[ -n $FAULTS_ARG ]] && echo " --faults $FAULTS_ARG")$( ((KEYS_GIVEN)) && echo " --keys $KEYS")$( ((TLS)) && echo " --tls")"
}
print_plan() {
    echo "seed $SEED schedule $SCHEDULE nodes $NODES$( ((MEMBERSHIP)) && echo " + $SPARES spares") replicas $NREP (quorum $QUORUM) faults ${FAULTS[*]}"
    if ((MEMBERSHIP)); then
        echo "steps (targets drawn at run time among the real members and spares; about $((M_PLANNED_MS / 1000)) s planned):"
        printf '  b  4.0s  baseline (no fault, no change)\n'
        for ((w = 0; w < ${#MP_KIND[@]}; w++)); do
            m_step_text "$w"
            printf '%3d  %s\n' "$w" "$STEP_TEXT"
        done
        return
    fi
    if ((NREP < NODES)); then
        echo "placement (client locate):"
        placement_lines "$KEYS"
    fi
    for ((w = 0; w < ${#PLAN_KIND[@]}; w++)); do
        describe "${PLAN_KIND[w]}" "${PLAN_ARG[w]}"
        local rn=${PLAN_ROAM[w]}
        [[ ${PLAN_KIND[w]} == clientcut ]] && rn=${PLAN_ARG[w]%%|*}
        printf '%3d %5d.%ds  %s   [R via node %s]\n' "$w" $((PLAN_MS[w] / 1000)) $((PLAN_MS[w] % 1000 / 100)) "$LABEL" "$rn"
    done
}
if ((DRY_RUN)); then
    print_plan
    exit 0
fi
check_requirements
setup_out
sweep_leftovers
probe_capabilities
print_plan >"$OUT/plan.txt"
setup_tls

if ((MEMBERSHIP)); then
    log "fault harness: seed $SEED, schedule membership, $NODES members + $SPARES spares, $NREP replicas per key$( ((TLS)) && echo ", mutual TLS"), ${#MP_KIND[@]} steps, about $((planned_ms / 1000)) s planned (faults: ${FAULTS[*]})"
else
    log "fault harness: seed $SEED, schedule $SCHEDULE, $NODES nodes, $NREP replicas per key$( ((TLS)) && echo ", mutual TLS"), ${#PLAN_KIND[@]} windows, about $((planned_ms / 1000)) s of faults and heals"
fi
log "replay with: $0 $(replay_args)"
log "output: $OUT"
((HAS_DATADIR)) || NOTES+=("the server has no --data-dir: kill -9 restarts a node with an empty replica, and the wipe nemesis was not run")
[[ $CLOCK_SRC == uptime ]] && NOTES+=("/proc/timer_list unreadable: window boundaries from /proc/uptime (10 ms, CLOCK_BOOTTIME)")

# From here on, stderr of the harness itself (bash job notices such as
# "Killed" for the nemesis' kill -9, ip/nft diagnostics) goes to
# harness.log; everything a person needs is logged on stdout.
exec 2>>"$HLOG"
net_up || { echo "harness: network setup failed (see $HLOG)" >&3; exit 2; }
log "network: switch namespace $NS_SW, nodes $MEMBERS, clients ${CLIENTS[*]} R ctl on $NET.0/24"

for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
for ((i = 1; i <= NODES; i++)); do
    if ! wait_serving "$i" 20; then
        tail -n 20 "$OUT/logs/node$i.log" >&3
        echo "harness: node $i did not start (see $OUT/logs/node$i.log)" >&3
        exit 2
    fi
done
log "all $NODES nodes serving (started through docker/entrypoint.sh with env IP, PORT=$PORT, MEMBERS$( ((HAS_REPLICAS)) && echo ", REPLICAS=$NREP")$( ((TLS)) && echo ", TLS_CERT, TLS_KEY, TLS_CA"))"
tls_check
((TLS)) && log "transport: $TLS_SUMMARY"
if ((MEMBERSHIP)); then
    for ((i = NODES + 1; i <= TOTAL; i++)); do start_node "$i"; done
    ensure_spares_ready
    m_read_members "$MEMBERS" 20 || { echo "harness: \`client members\` does not answer (see $OUT/tmp/members.err)" >&3; exit 2; }
    M_EPOCH=$ME_EPOCH
    log "spares $(seq -s ' ' $((NODES + 1)) "$TOTAL") waiting to join (JOIN=1, empty data dirs); the cluster is at epoch $M_EPOCH with members {$(commas "${CUR[@]}")}"
fi

idx=0
for c in "${CLIENTS[@]}"; do
    idx=$((idx + 1))
    # (membership: a client of a node's public service only while it is a member)
    [[ ${CL_KIND[$c]} == via && -z ${IS_MEMBER[${CL_TARGET[$c]}]:-} ]] && continue
    start_client "$c" "$idx"
done
if ((MEMBERSHIP)); then run_membership; else run_schedule; fi

# ---- stop, check, report ------------------------------------------------------------
stop_roamer
for c in "${CLIENTS[@]}"; do
    ((${CL_RUNNING[$c]:-0})) || continue
    CL_RUNNING[$c]=0
    stop_pid "${CL_PID[$c]}" "client $c" $((VIA_DEADLINE_MS + MARGIN_MS + 3000))
    CL_PID[$c]=""
done
log "clients stopped; waiting until every node serves, then reading every key through every node"
heal_network all
for i in "${CUR[@]}"; do
    [[ ${NODE_STATE[$i]} == up ]] || { NODE_STATE[$i]=up; kill -CONT "${NODE_PID[$i]}" 2>/dev/null; }
done
for ((i = NODES + 1; i <= TOTAL; i++)); do # spares (membership)
    [[ ${NODE_STATE[$i]:-} == paused ]] && { NODE_STATE[$i]=up; kill -CONT "${NODE_PID[$i]}" 2>/dev/null; }
done
ensure_all_serving 30
check_procs
if [[ -n $PENDING_WIPE ]]; then check_wipe_recovery "$PENDING_WIPE"; PENDING_WIPE=""; fi
if ((MEMBERSHIP)); then
    # The final checks run on the final members and the placement of the
    # final configuration.
    m_final_config
    MEMBERS=$(addrs_of "${CUR[@]}")
    compute_placement final || fail_check "final placement: $PLACE_ERR"
    m_wait_recovered 30
fi
final_reads
raw_replica_state
cluster_stats

log "checking $(cat "$OUT"/history/*.jsonl | wc -l) operations with lincheck"
lin_args=()
[[ -n $BUDGET ]] && lin_args+=(--budget "$BUDGET")
timeout 300 "$LINCHECK" "${lin_args[@]}" "$OUT"/history/*.jsonl >"$OUT/lincheck.txt" 2>&1
lrc=$?
LIN_RC=$lrc
case $lrc in
0) LIN_VERDICT="linearizable ($(head -n 1 "$OUT/lincheck.txt"))" ;;
1) LIN_VERDICT="$(head -n 1 "$OUT/lincheck.txt")"
   fail_check "history is not linearizable: $(head -n 1 "$OUT/lincheck.txt")" ;;
3) LIN_VERDICT="INCONCLUSIVE (search budget exhausted): $(head -n 1 "$OUT/lincheck.txt")"
   fail_check "lincheck inconclusive: zero violations not shown (raise --budget)" ;;
124) LIN_VERDICT="lincheck timed out after 300 s"; fail_check "lincheck timed out" ;;
*) LIN_VERDICT="lincheck error $lrc: $(head -n 3 "$OUT/lincheck.txt")"; fail_check "lincheck failed with status $lrc" ;;
esac

# Graceful stop: every node must exit 0 on SIGTERM (membership: the spares
# waiting to join too; removed nodes were stopped and checked already).
bad_stop=()
for ((i = 1; i <= TOTAL; i++)); do
    [[ -n ${NODE_PID[$i]:-} && ${NODE_STATE[$i]} != stopped ]] || continue
    p=${NODE_PID[$i]}
    kill -TERM "$p" 2>/dev/null
done
for ((i = 1; i <= TOTAL; i++)); do
    [[ -n ${NODE_PID[$i]:-} && ${NODE_STATE[$i]} != stopped ]] || continue
    p=${NODE_PID[$i]}
    for ((k = 0; k < 100; k++)); do alive "$p" || break; sleep 0.05; done
    if alive "$p"; then
        bad_stop+=("node $i hung on SIGTERM")
        kill -9 "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
    rc=$?
    ((rc == 0)) || bad_stop+=("node $i exited with status $rc on SIGTERM")
    NODE_PID[$i]=""
done
if ((${#bad_stop[@]})); then
    SHUTDOWN_NOTE="${bad_stop[*]}"
    fail_check "clean shutdown: ${bad_stop[*]}"
else
    SHUTDOWN_NOTE="all nodes exited 0 on SIGTERM"
fi
for ((i = 1; i <= TOTAL; i++)); do
    [[ -f $OUT/logs/node$i.log ]] || continue
    if grep -qE 'AddressSanitizer|runtime error:|ThreadSanitizer|Assertion .* failed' "$OUT/logs/node$i.log"; then
        fail_check "node $i log reports a sanitizer error or failed assertion (logs/node$i.log)"
    fi
done

# Latency and liveness checks come from the statistics.
log "computing per-window statistics"
compute_stats
nlate=$(awk -F '\t' '{ n += $12 } END { print n + 0 }' "$GROUPS_TSV")
((nlate > 0)) && fail_check "$nlate calls took longer than their deadline + $MARGIN_MS ms (hung instead of failing fast)"
stalls=$(awk -F '\t' -v lim=$((GRACE_MS + MARGIN_MS)) '$3 == "live" && ($13 == "nook" || $13 + 0 > lim)' "$GROUPS_TSV" | wc -l)
((stalls > 0)) && fail_check "$stalls live sides stopped answering for longer than deadline + lease + margin"
slow_heals=$(awk -F '\t' -v lim=$((GRACE_MS + MARGIN_MS)) '$3 == "any" && ($13 == "nook" || $13 + 0 > lim) { printf "%s%s/%s %s", sep, $1, $2, ($13 == "nook" ? "no ok" : sprintf("%.1fs", $13 / 1000)); sep = ", " }' "$GROUPS_TSV")
[[ -n $slow_heals ]] && NOTES+=("slow recovery after healing (longest time without an ok answer in a heal window > $((GRACE_MS + MARGIN_MS)) ms; not a failure): $slow_heals")
[[ -s $OUT/tmp/stats.err ]] && NOTES+=("$(cat "$OUT/tmp/stats.err")")
((${#FAILURES[@]})) || PASSED_PENDING=1
write_report
cat "$REPORT"
if ((${#FAILURES[@]})); then
    exit 1
fi
PASSED=1
exit 0
