#!/usr/bin/env bash
# Rejoin empty: node 3 loses its disk and restarts; it recovers from its
# peers before answering reads.  Then node 1 is killed: the cluster of the
# recovered node 3 and node 2 must still return every acknowledged value
# (no stale read), checked by the linearizability checker.
. "$(dirname "$0")/lib.sh"
start_cluster
KEYS=12
client random --keys $KEYS --duration 9 --concurrency 6 --quiet --history "$WORK/h1.jsonl" \
    >"$WORK/c1.out" 2>"$WORK/c1.err" &
c1=$!
sleep 1.5
log "kill -9 node 3 and wipe its data directory"
kill_node 3 9
wipe_node 3
sleep 1
restart_node 3
grep -q "recovery complete" "$WORK/node3.log" || fail "node 3 served without recovering"
grep -h "recover" "$WORK/node3.log"
sleep 1
log "kill -9 node 1"
kill_node 1 9
wait $c1 || fail "load client exited non-zero"
cat "$WORK/c1.out"
[ "$(summary_field "$WORK/c1.out" errors)" = 0 ] || fail "operations failed"
final_reads "$WORK/h2.jsonl"
"$LINCHECK" "$WORK/h1.jsonl" "$WORK/h2.jsonl" || fail "stale read after recovery"
log "PASS d3 wipe, recover, kill another: no stale read"
