# Shared helpers of the process tests: start real servers on 127.0.0.1,
# kill and restart them, and clean up whatever happens.  Sourced by each
# test script with the binary directory as $1.
#
# Every wait here is bounded; a test never hangs on a dead server.

set -u
BIN=${1:?usage: $0 BIN_DIR}
BIN=$(cd "$BIN" && pwd)
SERVER=$BIN/server
CLIENT=$BIN/client
LINCHECK=$BIN/lincheck
RAWCALL=$BIN/rawcall
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dht-proc.XXXXXX")
N=${N:-3}
declare -a PORTS PIDS
MEMBERS=""

# TLS=1: every node serves only TLS with the certificates that
# scripts/make-certs.sh makes in $CERTS (all names 127.0.0.1 and localhost):
# node I presents nodeI, the fan-out client the coordinator's certificate
# (peer role), --via and the health probe only check the nodes' with the CA.
TLS=${TLS:-0}
CERTS=$WORK/certs
# The binaries read these too; one left in the caller's environment must
# not turn a test's plaintext client into a TLS one, or the reverse.
unset TLS_CERT TLS_KEY TLS_CA CLIENT_CERT_AUTH
tls_node_args() { [ "$TLS" = 1 ] && echo "--tls-cert $CERTS/node$1.crt --tls-key $CERTS/node$1.key --tls-ca $CERTS/ca.crt"; }
tls_coord_args() { [ "$TLS" = 1 ] && echo "--tls-cert $CERTS/coordinator.crt --tls-key $CERTS/coordinator.key --tls-ca $CERTS/ca.crt"; }
tls_ca_args() { [ "$TLS" = 1 ] && echo "--tls-ca $CERTS/ca.crt"; }
make_certs() {
    [ "$TLS" = 1 ] && [ ! -s "$CERTS/ca.crt" ] || return 0
    local i names=()
    for i in $(seq 1 "$N"); do names+=(127.0.0.1,localhost); done
    "$(dirname "${BASH_SOURCE[0]}")/../../scripts/make-certs.sh" "$CERTS" "${names[@]}" >/dev/null ||
        fail "make-certs.sh failed"
}

log() { echo "[$(date +%H:%M:%S.%3N)] $*"; }

fail() {
    log "FAIL: $*"
    for f in "$WORK"/node*.log; do
        [ -f "$f" ] && { echo "--- $f (last 20 lines)"; tail -n 20 "$f"; }
    done
    exit 1
}

cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start_node I: starts member I (1-based) with the current MEMBERS.
start_node() {
    local i=$1
    "$SERVER" --port "${PORTS[$i]}" --ip 127.0.0.1 --members "$MEMBERS" \
        --data-dir "$WORK/data$i" ${SERVER_ARGS:-} $(tls_node_args "$i") \
        >>"$WORK/node$i.log" 2>&1 </dev/null &
    PIDS[$i]=$!
    disown "$!" # no "Killed" job notices from bash when tests kill it
}

# wait_serving I: until node I answers its health check (at most ~10 s).
wait_serving() {
    local i=$1 k
    for k in $(seq 1 100); do
        if "$CLIENT" --via "127.0.0.1:${PORTS[$i]}" $(tls_ca_args) --deadline-ms 200 health >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "${PIDS[$i]}" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_cluster: picks free ports (retrying on a busy one) and starts N nodes.
start_cluster() {
    local attempt i ok
    make_certs
    for attempt in $(seq 1 20); do
        local base=$((20000 + (RANDOM % 400) * 100))
        MEMBERS=""
        for i in $(seq 1 "$N"); do
            PORTS[$i]=$((base + i))
            MEMBERS="$MEMBERS${MEMBERS:+,}127.0.0.1:${PORTS[$i]}"
        done
        for i in $(seq 1 "$N"); do start_node "$i"; done
        ok=1
        for i in $(seq 1 "$N"); do wait_serving "$i" || ok=0; done
        if [ $ok = 1 ]; then
            log "cluster up: $MEMBERS"
            return 0
        fi
        for i in $(seq 1 "$N"); do kill_node "$i"; wipe_node "$i"; done
        log "ports $base+ unusable, retrying"
    done
    fail "could not start a cluster"
}

# kill_node I [SIGNAL]: signals node I and waits (bounded) until it is gone.
kill_node() {
    local pid=${PIDS[$1]} k
    [ -n "$pid" ] || return 0
    kill -"${2:-9}" "$pid" 2>/dev/null
    for k in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    PIDS[$1]=""
}

wipe_node() { rm -rf "$WORK/data$1"; }

# restart_node I: starts node I again and waits until it serves reads.
restart_node() {
    start_node "$1"
    wait_serving "$1" || fail "node $1 did not come back"
}

client() { "$CLIENT" --servers "$MEMBERS" $(tls_coord_args) "$@"; }
via() { local i=$1; shift; "$CLIENT" --via "127.0.0.1:${PORTS[$i]}" $(tls_ca_args) "$@"; }

expect_eq() { # expect_eq ACTUAL EXPECTED WHAT
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

# summary_field FILE NAME: a number from the client's summary line.
summary_field() {
    grep -o "$2=[0-9.]*" "$1" | head -n 1 | cut -d= -f2
}

# final_reads FILE: reads every key 0..KEYS-1 through the fan-out client and
# records them (history FILE), so the checker sees the final state too.
final_reads() {
    local out=$WORK/final.out
    client random --keys "$KEYS" --put-ratio 0 --ops $((KEYS * 20)) --concurrency 2 --quiet \
        --history "$1" >"$out" || fail "final reads failed"
    grep -q "errors=0" "$out" || fail "final reads had errors: $(cat "$out")"
}
