#!/usr/bin/env bash
# Durability: kill -9 all three servers during a random put load with
# --fsync always, restart them: every acknowledged put is still readable with
# its last acknowledged value.  The load's history, including the puts that
# failed or were left unknown by the crash, is checked together with reads
# of every key after the restart.
. "$(dirname "$0")/lib.sh"
SERVER_ARGS="--fsync always"
start_cluster
KEYS=10
client random --keys $KEYS --put-ratio 0.8 --duration 4 --concurrency 6 --deadline-ms 500 --quiet \
    --history "$WORK/h1.jsonl" >"$WORK/c1.out" 2>"$WORK/c1.err" &
c1=$!
sleep 1.5
log "kill -9 all three servers"
for i in 1 2 3; do kill -9 "${PIDS[$i]}"; done
for i in 1 2 3; do kill_node "$i"; done
wait $c1 || fail "load client exited non-zero"
cat "$WORK/c1.out"
ok=$(summary_field "$WORK/c1.out" ok)
[ "$(grep -o 'puts ok=[0-9]*' "$WORK/c1.out" | cut -d= -f2)" -gt 50 ] || fail "too few acknowledged puts before the crash"
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_serving "$i" || fail "node $i did not restart"; done
grep -h "keys loaded" "$WORK"/node*.log | tail -n 3
final_reads "$WORK/h2.jsonl"
"$LINCHECK" "$WORK/h1.jsonl" "$WORK/h2.jsonl" || fail "acknowledged put lost or history not linearizable"
log "PASS d1 kill -9 all, restart, nothing acknowledged lost"
