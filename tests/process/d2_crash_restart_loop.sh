#!/usr/bin/env bash
# Durability: one node killed with -9 and restarted with its data directory
# four times during a load; no operation fails and the history (with final
# reads) is linearizable.
. "$(dirname "$0")/lib.sh"
start_cluster
KEYS=8
client random --keys $KEYS --duration 10 --concurrency 6 --quiet --history "$WORK/h1.jsonl" \
    >"$WORK/c1.out" 2>"$WORK/c1.err" &
c1=$!
for cycle in 1 2 3 4; do
    victim=$(( (cycle % 3) + 1 ))
    sleep 0.7
    log "cycle $cycle: kill -9 node $victim"
    kill_node "$victim" 9
    sleep 0.5
    restart_node "$victim"
done
wait $c1 || fail "load client exited non-zero"
cat "$WORK/c1.out"
[ "$(summary_field "$WORK/c1.out" errors)" = 0 ] || fail "operations failed during crash-restart cycles"
final_reads "$WORK/h2.jsonl"
"$LINCHECK" "$WORK/h1.jsonl" "$WORK/h2.jsonl" || fail "history not linearizable"
log "PASS d2 crash-restart loop"
