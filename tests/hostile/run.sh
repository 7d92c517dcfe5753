#!/usr/bin/env bash
# The hostile-client suite: three real nodes attacked by a gRPC client that
# is not ours (hostile.py, Debian's python3-grpcio) while honest clients
# keep using keys 0..999.  Passes when
#  - every hostile call got the answer it must (hostile.py prints a DEFECT
#    line with the exact request otherwise), and no node crashed or hung;
#  - the honest histories are linearizable;
#  - every replica holds, outside keys 0..999, exactly what it held before
#    the attack (the attack aims at these keys; see hostile.py for why it
#    never sends a well-formed in-range Write in plaintext mode);
#  - afterwards every node runs, reports SERVING and serves a put and a get.
# The attack's replica requests carry the configuration fingerprint each
# node reports in dht.Admin/Stats (a node refuses them otherwise, before
# validating them); its "configuration" phase sends well-formed requests
# that would change the seeded keys with no fingerprint or a wrong one, all
# of which must be refused (FAILED_PRECONDITION) and change nothing.
#
# Usage: run.sh BIN_DIR [plain|tls]
#   tls: the nodes serve only TLS, with --client-cert-auth, and the
#   certificates of scripts/make-certs.sh (lib.sh's TLS=1); the general
#   phases call with the fan-out client's peer-role certificate, and the
#   attack also calls without a certificate, with the role-less one, with
#   another CA's and in plaintext, sending well-formed in-range Writes and
#   Locks too: then nothing at all may change.
# Exit 77 (skipped) only when python3-grpcio can be neither imported nor
# installed.  SEED=N repeats an attack; KEEP_WORK=1 keeps the logs.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=${2:-plain}
PY=/usr/bin/python3 # Debian's: python3-grpcio is built for it, not for other pythons on PATH

case "$MODE" in plain | tls) ;; *) echo "usage: $0 BIN_DIR [plain|tls]" >&2; exit 2 ;; esac

if ! "$PY" -c 'import grpc' 2>/dev/null; then
    echo "python3-grpcio cannot be imported by $PY: installing it (scripts/deps.sh)"
    deps_log=$(mktemp)
    timeout 600 bash "$ROOT/scripts/deps.sh" >"$deps_log" 2>&1
    deps_rc=$?
    if ! why=$("$PY" -c 'import grpc' 2>&1); then
        echo "SKIP: python3-grpcio cannot be imported ($(echo "$why" | tail -n 1)), and" \
            "scripts/deps.sh (exit $deps_rc) did not make it importable:" \
            "$(tail -n 3 "$deps_log" | tr '\n' ' ')"
        rm -f "$deps_log"
        exit 77
    fi
    rm -f "$deps_log"
fi

if [ "$MODE" = tls ]; then
    TLS=1
    SERVER_ARGS="${SERVER_ARGS:-} --client-cert-auth"
fi
. "$HERE/../process/lib.sh"
if [ "$MODE" = tls ]; then
    [ -x "$ROOT/scripts/make-certs.sh" ] || fail "TLS mode: scripts/make-certs.sh is missing"
    "$SERVER" --help 2>&1 | grep -q -- --client-cert-auth || fail "TLS mode: the server has no TLS flags"
    # as members see the replicas (scans), and as a KeyValue client with a
    # certificate (the nodes require one)
    PEER_TLS=(--tls-ca "$CERTS/ca.crt" --tls-cert "$CERTS/coordinator.crt" --tls-key "$CERTS/coordinator.key")
    KV_TLS=(--tls-ca "$CERTS/ca.crt" --tls-cert "$CERTS/client.crt" --tls-key "$CERTS/client.key")
    ATTACK_TLS=(--tls-dir "$CERTS" --client-cert-auth)
else
    PEER_TLS=() KV_TLS=() ATTACK_TLS=()
fi
hostile() { "$PY" "$HERE/hostile.py" "$@"; }
kv_via() { local i=$1; shift; "$CLIENT" --via "127.0.0.1:${PORTS[$i]}" "${KV_TLS[@]}" "$@"; }
problems=()
problem() {
    log "PROBLEM: $*"
    problems+=("$*")
}

# The honest load runs for the whole attack (about a minute at scale 1) and is
# stopped (SIGTERM: it finishes its calls and its history) when the attack
# ends; the duration only bounds it should the attack hang.
SCALE=${HOSTILE_SCALE:-1}
HONEST_SECONDS=150
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}

start_cluster
pids=$(IFS=,; echo "${PIDS[*]:1}")

# State in the hostile range for the attack to aim at (honest puts).
v=7000
for k in $(hostile keys); do
    v=$((v + 1))
    expect_eq "$(client put "$k" "$v")" true "seeding put $k $v"
done
hostile snapshot "$MEMBERS" "$WORK/before.json" --agree 15 "${PEER_TLS[@]}" ||
    fail "the replicas never agreed on the seeded keys"

"$CLIENT" --servers "$MEMBERS" "${PEER_TLS[@]}" random --keys 1000 --duration "$HONEST_SECONDS" --concurrency 4 \
    --quiet --history "$WORK/honest_fanout.jsonl" >"$WORK/honest_fanout.out" 2>&1 &
h1=$!
"$CLIENT" --via "$MEMBERS" "${KV_TLS[@]}" random --keys 1000 --duration "$HONEST_SECONDS" --concurrency 4 \
    --quiet --history "$WORK/honest_via.jsonl" >"$WORK/honest_via.out" 2>&1 &
h2=$!
sleep 1

# The upstream version of the gRPC library the nodes link (Debian's
# libgrpc-dev), for the one defect hostile.py knows to be gRPC's own.
DHT_GRPC_UPSTREAM=$(dpkg-query -W -f='${Version}' libgrpc-dev 2>/dev/null | sed 's/-[^-]*$//; s/^[0-9]*://')
export DHT_GRPC_UPSTREAM
log "attack (seed $SEED; gRPC ${DHT_GRPC_UPSTREAM:-version unknown})"
# Every call and phase of the attack is bounded; this bounds the whole, so
# that a hang is reported here rather than by ctest's timeout.
timeout -k 5 200 "$PY" "$HERE/hostile.py" attack "$MEMBERS" --pids "$pids" --seed "$SEED" \
    --scale "$SCALE" "${ATTACK_TLS[@]}" 2>&1 | tee "$WORK/attack.out"
rc=${PIPESTATUS[0]}
case $rc in
0) ;;
1) problem "the attack found defects (DEFECT lines above)" ;;
124 | 137) problem "the attack did not end within 200 s (a hang)" ;;
*) problem "hostile.py itself failed (exit $rc, see above)" ;;
esac

kill -TERM "$h1" "$h2" 2>/dev/null
for h in "$h1:honest_fanout" "$h2:honest_via"; do
    wait "${h%%:*}" || problem "${h#*:}: the honest client failed: $(tail -n 3 "$WORK/${h#*:}.out")"
    log "${h#*:}: $(grep summary "$WORK/${h#*:}.out")"
    ops=$(summary_field "$WORK/${h#*:}.out" ops)
    [ "${ops:-0}" -ge 200 ] || problem "${h#*:}: only ${ops:-0} operations under attack"
done
"$LINCHECK" "$WORK/honest_fanout.jsonl" "$WORK/honest_via.jsonl" ||
    problem "the honest history is not linearizable"

if hostile snapshot "$MEMBERS" "$WORK/after.json" "${PEER_TLS[@]}"; then
    hostile compare "$WORK/before.json" "$WORK/after.json" ||
        problem "state outside the honest keys changed"
else
    problem "could not scan every replica after the attack"
fi

for i in $(seq 1 "$N"); do
    kill -0 "${PIDS[$i]}" 2>/dev/null || problem "node $i (pid ${PIDS[$i]}) is not running"
done
hostile alive "$MEMBERS" "${PEER_TLS[@]}" || problem "a node does not report SERVING"
for i in $(seq 1 "$N"); do
    k=$((990 + i)) v=$((424200 + i))
    got=$(kv_via "$i" put "$k" "$v" 2>&1)
    [ "$got" = true ] || problem "put $k $v via node $i: $got"
    for j in $(seq 1 "$N"); do
        got=$(kv_via "$j" get "$k" 2>&1)
        [ "$got" = "$v" ] || problem "get $k via node $j after put via node $i: '$got', expected $v"
    done
done

if [ ${#problems[@]} -gt 0 ]; then
    fail "hostile suite ($MODE, seed $SEED): ${#problems[@]} problems: $(printf '%s; ' "${problems[@]}")"
fi
log "PASS hostile suite ($MODE, seed $SEED)"
