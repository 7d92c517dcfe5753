#!/usr/bin/env bash
# bench/bench.sh - our store and etcd, side by side, on this machine.
#
#   bash bench/bench.sh            full run (about 5 minutes)
#   bash bench/bench.sh --quick    smoke run (about 2 minutes)
#
# One run: installs etcd (Debian's etcd-server and etcd-client, when missing
# and run as root), builds our binaries in Release (build-bench/), starts our
# 3 nodes (--fsync batch: group commit, a write is acked after its fsync) and
# a 3-member etcd cluster (default fsync: every raft entry fsynced before it
# is acked), all on 127.0.0.1 with data in one temp dir, then drives both
# with the same load generator (`client random`, which speaks our public
# KeyValue API with --via and etcd's KV API with --etcd):
#
#   {put, get, mix 50/50} x concurrency {1, 16, 64}, --duration S each,
#   1000 keys, 8-byte values, alternating which system goes first per cell;
#   gets are linearizable on both sides (etcd: Range with serializable=false).
#
# and prints ops/s, p50, p99 of each, the ratio us/etcd, and the servers' CPU
# time per operation (utime+stime of the 3 server processes, /proc/PID/stat,
# before and after each run).  Then a failover run on each: a put load at
# concurrency 16 for --failover S seconds, kill -9 of one node (etcd: its
# leader) a third of the way in; printed: the longest stretch with no
# completed operation and the number of failed operations (from --history).
#
# Options:
#   --duration S     seconds per matrix cell (default 10; --quick: 3)
#   --failover S     seconds of each failover run (default 30; --quick: 10)
#   --rounds N       run the whole matrix N times (default 1) and report, per
#                    cell and system, the run with the median ops/s: on a
#                    machine that other work shares, 3 rounds tame the noise
#   --keys N         key space (default 1000)
#   --bin DIR        use the server/client in DIR instead of building
#   --out FILE       raw results, JSON Lines (default bench/results/DATE.jsonl)
#   --ours-client M  how the matrix drives our store: via (default: each op is
#                    one call to a node's public KeyValue service, which
#                    coordinates it, as an etcd member does), fanout (our
#                    `client` as built: it coordinates on all replicas
#                    itself, so the coordinator's CPU moves from the servers
#                    to the client), or both (each cell runs both, and two
#                    tables compare each with the same etcd runs)
#   --nodes N        our nodes (default 3; 3..9): every one on 127.0.0.1
#   --replicas R     our replicas per key (default: the server's, min(3, N));
#                    with N > R each node stores R/N of the keys, and the
#                    report adds each node's key count
#   --our-workers N  completion-queue threads of each of our nodes (default 1:
#                    three nodes share this machine's cores; the server's own
#                    default is one per core, which here measured 20-35%
#                    slower through extra thread switches)
#   --perf           perf record our servers during the put/64 run (needs perf)
#   --no-failover    skip the failover runs
#   --failover-only  skip the matrix: only the failover runs
#   --keep           keep the temp dir (logs, histories, data)
#   --ctest          for ctest's bench_smoke: exit 77 (skip) unless etcd is
#                    installed and DHT_BENCH=1 is set; never installs
#   --help
#
# Everything is bounded in time, and every process this script starts is
# killed (by its pid) and the temp dir removed on exit, however it ends.
set -u
set -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=10 FAILOVER=30 KEYS=1000 BIN="" OUT="" PERF=0 DO_FAILOVER=1 KEEP=0 CTEST=0 QUICK=0
OURS_CLIENT=via ROUNDS=1 OUR_WORKERS=1 DO_MATRIX=1 NODES=3 REPLICAS=""
CONCS="1 16 64"
WORKLOADS="put get mix"

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "bench: $*" >&2; exit 1; }
num() { [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || { echo "bench: $1 needs a positive integer, got '$2'" >&2; usage >&2; exit 2; }; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1; DURATION=3; FAILOVER=10 ;;
    --duration) num "$1" "${2:-}"; DURATION=$2; shift ;;
    --failover) num "$1" "${2:-}"; FAILOVER=$2; shift ;;
    --keys) num "$1" "${2:-}"; KEYS=$2; shift ;;
    --rounds) num "$1" "${2:-}"; ROUNDS=$2; shift ;;
    --our-workers) num "$1" "${2:-}"; OUR_WORKERS=$2; shift ;;
    --nodes) num "$1" "${2:-}"; [ "$2" -ge 3 ] && [ "$2" -le 9 ] || die "--nodes must be 3..9"; NODES=$2; shift ;;
    --replicas) num "$1" "${2:-}"; REPLICAS=$2; shift ;;
    --bin) [ -n "${2:-}" ] || { usage >&2; exit 2; }; BIN=$2; shift ;;
    --out) [ -n "${2:-}" ] || { usage >&2; exit 2; }; OUT=$2; shift ;;
    --ours-client)
        case ${2:-} in via|fanout|both) OURS_CLIENT=$2 ;; *) echo "bench: --ours-client via|fanout|both" >&2; usage >&2; exit 2 ;; esac
        shift ;;
    --perf) PERF=1 ;;
    --no-failover) DO_FAILOVER=0 ;;
    --failover-only) DO_MATRIX=0 ;;
    --keep) KEEP=1 ;;
    --ctest) CTEST=1 ;;
    --help|-h) usage; exit 0 ;;
    *) echo "bench: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[ "$FAILOVER" -ge 3 ] || die "--failover must be at least 3 seconds"
[ -z "$REPLICAS" ] || [ "$REPLICAS" -le "$NODES" ] || die "--replicas $REPLICAS is more than --nodes $NODES"

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---- etcd ------------------------------------------------------------------
if [ $CTEST = 1 ]; then
    command -v etcd >/dev/null && command -v etcdctl >/dev/null ||
        { echo "bench: etcd not installed: skipped"; exit 77; }
    [ "${DHT_BENCH:-0}" = 1 ] || { echo "bench: set DHT_BENCH=1 to run the benchmark smoke test"; exit 77; }
fi
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    [ "$(id -u)" = 0 ] || die "etcd is not installed; run as root (apt-get install etcd-server etcd-client)"
    log "installing etcd-server and etcd-client with apt-get"
    # The package may try to start a system etcd on 2379; policy-rc.d in
    # containers prevents that, and our ports differ anyway.
    timeout 600 apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq etcd-server etcd-client >/dev/null ||
        die "apt-get install etcd-server etcd-client failed"
fi
export ETCDCTL_API=3
ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# ---- our binaries ----------------------------------------------------------
if [ -z "$BIN" ]; then
    log "building our server and client (Release) in build-bench/"
    cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null ||
        die "cmake configure failed"
    cmake --build "$ROOT/build-bench" -j "$(nproc)" --target server client >/dev/null ||
        die "build failed (cmake --build build-bench --target server client)"
    BIN=$ROOT/build-bench/bin
fi
BIN=$(cd "$BIN" && pwd) || die "no such directory: $BIN"
SERVER=$BIN/server CLIENT=$BIN/client
[ -x "$SERVER" ] && [ -x "$CLIENT" ] || die "no server/client in $BIN"
"$CLIENT" --help | grep -q -- --etcd || die "$CLIENT has no --etcd (rebuild)"

# ---- temp dir, processes, cleanup -------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dht-bench.XXXXXX")
declare -a OUR_PID ETCD_PID
LOADPID=""
cleanup() {
    local p
    for p in "${OUR_PID[@]:-}" "${ETCD_PID[@]:-}" $LOADPID; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    wait 2>/dev/null
    if [ $KEEP = 1 ]; then echo "bench: temp dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

OUR_PORTS=(0)
for i in $(seq 1 "$NODES"); do OUR_PORTS+=($((23720 + i))); done
OUR_NODES=$(seq 1 "$NODES" | paste -sd' ')
ETCD_PORTS=(0 23791 23792 23793)
ETCD_PEER=(0 23801 23802 23803)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${OUR_PORTS[@]:1}" "${ETCD_PORTS[@]:1}" "${ETCD_PEER[@]:1}"; do
    port_busy "$p" && die "port $p on 127.0.0.1 is in use (another benchmark running?)"
done
OURS=$(for i in $OUR_NODES; do printf '127.0.0.1:%s\n' "${OUR_PORTS[$i]}"; done | paste -sd,)
REPLICAS_ARG=()
[ -z "$REPLICAS" ] || REPLICAS_ARG=(--replicas "$REPLICAS")
ETCD=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
ETCD_CLUSTER=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803

start_our_node() {
    local i=$1
    "$SERVER" --port "${OUR_PORTS[$i]}" --ip 127.0.0.1 --members "$OURS" \
        --data-dir "$WORK/ours/node$i" --fsync batch --workers "$OUR_WORKERS" --log-level warn \
        "${REPLICAS_ARG[@]}" \
        >>"$WORK/ours-node$i.log" 2>&1 </dev/null &
    OUR_PID[$i]=$!
    disown "$!" # no "Killed" notice from bash when the failover run kills it
}
start_etcd_member() {
    local i=$1 state=${2:-new}
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
        --listen-client-urls "http://127.0.0.1:${ETCD_PORTS[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${ETCD_PORTS[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
        --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state "$state" \
        --initial-cluster-token dht-bench \
        >>"$WORK/etcd-e$i.log" 2>&1 </dev/null &
    ETCD_PID[$i]=$!
    disown "$!"
}
# wait_ours I...: until each node answers its health check (bounded: 20 s).
wait_ours() {
    local i k
    for i in "$@"; do
        for k in $(seq 1 200); do
            "$CLIENT" --via "127.0.0.1:${OUR_PORTS[$i]}" --deadline-ms 200 health >/dev/null 2>&1 && continue 2
            kill -0 "${OUR_PID[$i]}" 2>/dev/null || { tail -n 20 "$WORK/ours-node$i.log" >&2; die "our node $i exited"; }
            sleep 0.1
        done
        die "our node $i is not serving after 20 s"
    done
}
# wait_etcd: until every member reports healthy (a committed proposal; 30 s).
wait_etcd() {
    local k
    for k in $(seq 1 60); do
        timeout 10 etcdctl --endpoints "$ETCD" --command-timeout 2s endpoint health >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    tail -n 20 "$WORK"/etcd-e*.log >&2
    die "etcd is not healthy after 30 s"
}
# etcd_leader: index 1..3 of the member that is the raft leader.
etcd_leader() {
    local line i
    line=$(timeout 10 etcdctl --endpoints "$ETCD" --command-timeout 2s endpoint status -w simple 2>/dev/null |
        awk -F', ' '$5 == "true" {print $1}' | head -n 1)
    for i in 1 2 3; do
        [ "$line" = "127.0.0.1:${ETCD_PORTS[$i]}" ] && { echo "$i"; return 0; }
    done
    return 1
}

# cpu_ticks PID...: utime+stime of the processes, in clock ticks.
cpu_ticks() {
    local p total=0 t
    for p in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
TCK=$(getconf CLK_TCK)
# ctx_switches PID...: voluntary + involuntary context switches of all their
# threads (alive ones: a thread that exited takes its count with it).
ctx_switches() {
    local p
    for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
        awk '/ctxt_switches/ {n += $2} END {printf("%d", n)}'
}

# json_field JSON NAME: a number from the client's one-line summary.
json_field() { echo "$1" | grep -o "\"$2\":[-0-9.]*" | head -n 1 | cut -d: -f2; }
json_str() { echo "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }

# ---- start both clusters ----------------------------------------------------
log "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v n="$(nproc)" '{exit !($1 > n / 2)}' /proc/loadavg &&
    log "warning: this machine is already busy (load $(cut -d' ' -f1 /proc/loadavg)): the numbers will be noisy"
log "temp dir $WORK"
mkdir -p "$WORK/ours" "$WORK/etcd"
for i in $OUR_NODES; do start_our_node "$i"; done
for i in 1 2 3; do start_etcd_member "$i"; done
wait_ours $OUR_NODES
wait_etcd
log "ours: $OURS (server --fsync batch --workers $OUR_WORKERS), etcd $ETCD_VERSION: $ETCD (default fsync)"

if [ -z "$OUT" ]; then
    mkdir -p "$ROOT/bench/results"
    OUT=$ROOT/bench/results/$(date +%Y%m%d-%H%M%S).jsonl
fi
: >"$OUT" || die "cannot write $OUT"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "{\"system\":\"meta\",\"date\":\"$(date -Iseconds)\",\"nproc\":$(nproc),\"cpu\":\"$CPU_MODEL\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"etcd_version\":\"$ETCD_VERSION\",\"keys\":$KEYS,\"duration_s\":$DURATION,\"failover_s\":$FAILOVER,\"ours_client\":\"$OURS_CLIENT\",\"our_workers\":$OUR_WORKERS,\"nodes\":$NODES,\"replicas\":\"${REPLICAS:-default}\",\"git\":\"$(git -C "$ROOT" describe --always --dirty 2>/dev/null)\"}" >>"$OUT"

# run_load SYSTEM NAME ARGS...: one client run against SYSTEM (etcd, or ours
# as ours|ours-fanout),
# bounded by a timeout; prints the client's JSON summary and appends a
# result line to $OUT with the servers' and the client's CPU per operation.
run_load() {
    local sys=$1 name=$2; shift 2
    local pids target before after json ops scpu ccpu tfile=$WORK/time.$$ bound
    if [ "$sys" = etcd ]; then pids="${ETCD_PID[*]}"; else pids="${OUR_PID[*]}"; fi
    bound=$((DURATION > FAILOVER ? DURATION : FAILOVER))
    before=$(cpu_ticks $pids)
    local cs0 cs1 csop
    cs0=$(ctx_switches $pids)
    local TIMEFORMAT='%U %S'
    json=$( { time timeout $((bound + 60)) "$CLIENT" "$@" --json 2>>"$WORK/client-$sys.log" ; } 2>"$tfile" )
    after=$(cpu_ticks $pids)
    cs1=$(ctx_switches $pids)
    [ -n "$json" ] || { log "$sys $name: the client printed nothing (see $WORK/client-$sys.log)"; json='{"ops":0}'; }
    [ "$(json_field "$json" ops)" != 0 ] || echo "$sys $name" >>"$WORK/broken"
    ops=$(json_field "$json" ops)
    scpu=$(awk -v d=$((after - before)) -v t="$TCK" -v n="$ops" 'BEGIN {printf("%.0f", (n > 0 ? d / t * 1e6 / n : 0))}')
    csop=$(awk -v d=$((cs1 - cs0)) -v n="$ops" 'BEGIN {printf("%.1f", (n > 0 ? d / n : 0))}')
    ccpu=$(awk -v n="$ops" '{printf("%.0f", (n > 0 ? ($1 + $2) * 1e6 / n : 0))}' "$tfile")
    echo "{\"system\":\"$sys\",\"run\":\"$name\",\"server_cpu_us_per_op\":$scpu,\"client_cpu_us_per_op\":$ccpu,\"server_ctx_switches_per_op\":$csop,\"result\":$json}" >>"$OUT"
    echo "$json" "$scpu" "$ccpu"
}

# ---- preload ----------------------------------------------------------------
PRELOAD=$((KEYS * 10))
log "preloading: $PRELOAD random puts over $KEYS keys on each system"
run_load ours preload --via "$OURS" random --keys "$KEYS" --put-ratio 1 --concurrency 16 --ops "$PRELOAD" >/dev/null
run_load etcd preload --etcd "$ETCD" random --keys "$KEYS" --put-ratio 1 --concurrency 16 --ops "$PRELOAD" >/dev/null

# ---- the matrix -------------------------------------------------------------
declare -A RES
[ $DO_MATRIX = 1 ] || ROUNDS=0
# Our systems in the matrix: "ours" is driven as --ours-client says (with
# both: through the nodes), "ours-fanout" by the fan-out client.
case $OURS_CLIENT in both) OURS_SYS="ours ours-fanout" ;; *) OURS_SYS="ours" ;; esac
for round in $(seq 1 "$ROUNDS"); do
cell=$((round - 1))
for wl in $WORKLOADS; do
    case $wl in put) ratio=1 ;; get) ratio=0 ;; mix) ratio=0.5 ;; esac
    for c in $CONCS; do
        if [ $((cell % 2)) = 0 ]; then order="$OURS_SYS etcd"
        else order="etcd $(echo $OURS_SYS | tr ' ' '\n' | tac | paste -sd' ')"; fi
        cell=$((cell + 1))
        for sys in $order; do
            if [ $sys = etcd ]; then target=(--etcd "$ETCD")
            elif [ $sys = ours ] && [ $OURS_CLIENT != fanout ]; then target=(--via "$OURS")
            else target=(--servers "$OURS"); fi
            perfpid=""
            if [ $PERF = 1 ] && [ $round = 1 ] && [ $sys = ours ] && [ $wl = put ] && [ "$c" = 64 ] && command -v perf >/dev/null; then
                perf record -F 499 -g -o "$WORK/perf.data" -p "$(IFS=,; echo "${OUR_PID[*]:1}")" \
                    -- sleep $((DURATION > 2 ? DURATION - 1 : 1)) >"$WORK/perf.log" 2>&1 &
                perfpid=$!
            fi
            log "$wl c=$c $sys (${DURATION}s, round $round/$ROUNDS)"
            RES[$sys,$wl,$c,$round]=$(run_load $sys "$wl/$c/$round" "${target[@]}" random --keys "$KEYS" \
                --put-ratio $ratio --concurrency "$c" --duration "$DURATION")
            if [ -n "$perfpid" ]; then
                wait "$perfpid"
                mkdir -p "$(dirname "$OUT")"
                {
                    echo "# perf record -F 499 -g of our 3 servers during put, concurrency $c"
                    echo "# by shared object:"
                    perf report -i "$WORK/perf.data" --stdio --no-children -g none -F overhead,dso 2>/dev/null |
                        grep -v '^#' | grep -v '^$' | head -n 15
                    echo "# by symbol:"
                    perf report -i "$WORK/perf.data" --stdio --no-children -g none -F overhead,dso,sym 2>/dev/null |
                        grep -v '^#' | grep -v '^$' | head -n 40
                    echo "# call graphs (callee first):"
                    perf report -i "$WORK/perf.data" --stdio --no-children -F overhead,sym --percent-limit 2 2>/dev/null |
                        grep -v '^$' | head -n 300
                } >"${OUT%.jsonl}.perf.txt"
                log "perf profile of our servers (put c=64): ${OUT%.jsonl}.perf.txt"
            fi
            sleep 0.5
        done
    done
done
done

# median SYS WL C: the result (JSON CPU CPU) of the round with the median
# ops/s (the lower median for an even number of rounds).
median() {
    local r
    for r in $(seq 1 "$ROUNDS"); do
        echo "$(json_field "${RES[$1,$2,$3,$r]}" ops_per_sec) $r"
    done | sort -g | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) {print $2}' | {
        read -r r
        echo "${RES[$1,$2,$3,$r]}"
    }
}

# ---- the table --------------------------------------------------------------
f() { json_field "$1" "$2"; }
# print_table SYS: the matrix of our SYS (ours|ours-fanout) against etcd.
print_table() {
    local sys=$1
    printf '%-5s %5s | %9s %8s %8s | %9s %8s %8s | %6s | %9s %9s\n' \
        workload conc "ours op/s" "p50 ms" "p99 ms" "etcd op/s" "p50 ms" "p99 ms" "ratio" "cpu us/op" "(etcd)"
    printf -- '------------+------------------------------+------------------------------+--------+--------------------\n'
    local wl c o e
    for wl in $WORKLOADS; do
        for c in $CONCS; do
            o=$(median "$sys" "$wl" "$c") e=$(median etcd "$wl" "$c")
            set -- $o; local oj=$1 oc=$2
            set -- $e; local ej=$1 ec=$2
            printf '%-5s %5s | %9.0f %8.2f %8.2f | %9.0f %8.2f %8.2f | %6.2f | %9s %9s\n' \
                "$wl" "$c" "$(f "$oj" ops_per_sec)" "$(f "$oj" p50_ms)" "$(f "$oj" p99_ms)" \
                "$(f "$ej" ops_per_sec)" "$(f "$ej" p50_ms)" "$(f "$ej" p99_ms)" \
                "$(awk -v a="$(f "$oj" ops_per_sec)" -v b="$(f "$ej" ops_per_sec)" 'BEGIN {printf("%.2f", (b > 0 ? a / b : 0))}')" \
                "$oc" "$ec"
            local oe ee
            oe=$(f "$oj" errors) ee=$(f "$ej" errors)
            [ "${oe:-0}" = 0 ] || echo "      ours: $oe failed operations, first: $(json_str "$oj" first_error)"
            [ "${ee:-0}" = 0 ] || echo "      etcd: $ee failed operations, first: $(json_str "$ej" first_error)"
        done
    done
}

# ---- failover ---------------------------------------------------------------
# gap_stats HISTORY: "LONGEST_GAP_MS AT_S FAILED TOTAL" - the longest stretch
# with no successfully completed operation between the first successful
# return (so the client's connection setup does not count) and the last
# return, when it started (seconds after the first call), and how many
# operations did not succeed (ok false or null).
gap_stats() {
    awk -F'[:,}]' '
        {
            for (i = 1; i < NF; i++) {
                if ($i == "\"call\"") call = $(i + 1)
                if ($i == "\"return\"") ret = $(i + 1)
                if ($i == "\"ok\"") ok = $(i + 1)
            }
            total++
            if (first == "" || call + 0 < first + 0) first = call
            if (ret != "null" && (last == "" || ret + 0 > last + 0)) last = ret
            if (ok == "true") print ret; else failed++
        }
        END { printf "#%s %s %d %d\n", first, last, failed, total }' "$1" |
    sort -n | awk '
        /^#/ { split(substr($0, 2), h, " "); next }
        { t[n++] = $1 }
        END {
            first = h[1]; last = h[2]; best = 0; at = 0; prev = n > 0 ? t[0] : first
            for (i = 0; i < n; i++) { if (t[i] - prev > best) { best = t[i] - prev; at = prev }; prev = t[i] }
            if (last - prev > best) { best = last - prev; at = prev }
            printf "%.1f %.2f %d %d\n", best / 1e6, (at - first) / 1e9, h[3], h[4]
        }'
}

# failover SYSTEM LABEL VICTIM ARGS...: FAILOVER seconds of puts at c=16; kill -9
# of node VICTIM (etcd: "leader") after a third of it; restarts it afterwards.
declare -a FO
failover() {
    local sys=$1 label=$2 victim=$3; shift 3
    local hist=$WORK/history-$label.jsonl pid killat start json stats
    log "failover $label: ${FAILOVER}s of puts at concurrency 16, kill -9 after $((FAILOVER / 3))s"
    start=$(date +%s%N)
    timeout $((FAILOVER + 60)) "$CLIENT" "$@" random --keys "$KEYS" --put-ratio 1 --concurrency 16 \
        --duration "$FAILOVER" --history "$hist" --json >"$WORK/fo-$label.json" 2>>"$WORK/client-$label.log" &
    LOADPID=$!
    sleep $((FAILOVER / 3))
    if [ "$victim" = leader ]; then
        victim=$(etcd_leader) || { log "could not find etcd's leader"; victim=1; }
        pid=${ETCD_PID[$victim]}
    else
        pid=${OUR_PID[$victim]}
    fi
    killat=$(date +%s%N)
    kill -9 "$pid"
    log "killed $sys node $victim (pid $pid) at +$(awk -v a="$start" -v b="$killat" 'BEGIN {printf "%.1f", (b - a) / 1e9}')s"
    wait "$LOADPID"
    LOADPID=""
    json=$(cat "$WORK/fo-$label.json")
    [ -n "$json" ] || json='{"ops":0}'
    stats=$(gap_stats "$hist")
    echo "{\"system\":\"$sys\",\"run\":\"failover-$label\",\"killed\":$victim,\"kill_at_s\":$(awk -v a="$start" -v b="$killat" 'BEGIN {printf "%.2f", (b - a) / 1e9}'),\"longest_gap_ms\":$(echo "$stats" | cut -d' ' -f1),\"gap_at_s\":$(echo "$stats" | cut -d' ' -f2),\"failed\":$(echo "$stats" | cut -d' ' -f3),\"result\":$json}" >>"$OUT"
    FO+=("$label|$victim|$stats|$(json_field "$json" ops_per_sec)")
    # Bring the victim back so the next run starts from a whole cluster.
    if [ "$sys" = ours ]; then
        start_our_node "$victim"
        wait_ours "$victim"
    else
        start_etcd_member "$victim" existing
        wait_etcd
    fi
}

if [ $DO_FAILOVER = 1 ]; then
    failover ours ours-fanout 1 --servers "$OURS"
    failover ours ours-via 2 --via "$OURS"
    failover etcd etcd leader --etcd "$ETCD"
fi

# ---- report -----------------------------------------------------------------
echo
echo "== $(date '+%Y-%m-%d %H:%M'), $(nproc) cores, $CPU_MODEL, load average before the run $(sed -n 's/.*"loadavg":"\([^"]*\)".*/\1/p' "$OUT" | head -n 1)"
VIA_DESC="client --via all $NODES nodes (each op one call to a node, which coordinates it)"
FAN_DESC="fan-out client --servers (our client as built: it coordinates itself)"
case $OURS_CLIENT in via) oc=$VIA_DESC ;; fanout) oc=$FAN_DESC ;; both) oc="see each table" ;; esac
echo "== ours: $NODES nodes${REPLICAS:+, --replicas $REPLICAS}, --fsync batch --workers $OUR_WORKERS, $oc | etcd $ETCD_VERSION: 3 members, default fsync, client --etcd all 3"
if [ "$ROUNDS" = 1 ]; then rd="one run per cell"; else rd="median of $ROUNDS rounds per cell"; fi
echo "== $KEYS keys, 8-byte values, ${DURATION}s per run, $rd, linearizable gets; ratio = ours/etcd ops/s;"
echo "== cpu us/op = CPU time of the server processes per operation (our $NODES, then etcd's 3)"
if [ $DO_MATRIX = 1 ]; then
    if [ $OURS_CLIENT = both ]; then
        echo
        echo "-- ours with the $VIA_DESC"
        print_table ours
        echo
        echo "-- ours with the $FAN_DESC (same etcd runs)"
        print_table ours-fanout
    else
        print_table ours
    fi
fi
if [ $DO_FAILOVER = 1 ]; then
    echo
    echo "== failover: ${FAILOVER}s of puts at concurrency 16, kill -9 of one node after $((FAILOVER / 3))s"
    printf '%-34s %7s %14s %10s %10s %9s\n' run killed "longest gap ms" "gap at s" failed "ops/s"
    for r in "${FO[@]}"; do
        IFS='|' read -r label victim stats rate <<<"$r"
        set -- $stats
        case $label in
        ours-fanout) d="ours, fan-out client (--servers)" ;;
        ours-via) d="ours, --via (rotate on failure)" ;;
        *) d="etcd, --etcd (rotate on failure)" ;;
        esac
        printf '%-34s %7s %14s %10s %10s %9.0f\n' "$d" "node $victim" "$1" "$2" "$3/$4" "${rate:-0}"
    done
    echo "(our failover target is judged on the fan-out client: it coordinates on all three"
    echo " replicas itself, so a dead node costs it nothing; a --via client's calls in flight"
    echo " at the killed node fail, then it moves on to the next node, as the etcd client does)"
fi
echo
echo "== keys stored per node (client --via NODE stats), of $KEYS written"
for i in $OUR_NODES; do
    st=$("$CLIENT" --via "127.0.0.1:${OUR_PORTS[$i]}" stats 2>/dev/null)
    k=$(echo "$st" | grep -o "\"keys\": *[0-9]*" | grep -o "[0-9]*$")
    echo "{\"system\":\"ours\",\"run\":\"stats\",\"node\":$i,\"stats\":${st:-null}}" >>"$OUT"
    printf '  node %d: %s keys\n' "$i" "${k:-?}"
done
echo
echo "raw results: $OUT"
if [ -s "$WORK/broken" ]; then
    echo "bench: runs that completed no operation: $(paste -sd, "$WORK/broken")" >&2
    exit 1
fi
