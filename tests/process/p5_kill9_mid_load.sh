#!/usr/bin/env bash
# Property 5, reliability: kill -9 one server in the middle of a concurrent
# load.  No operation fails (fan-out client and a client whose node stays
# up), no acknowledged put is lost (final reads of every key are checked
# together with the load's history), and the history is linearizable.
. "$(dirname "$0")/lib.sh"
start_cluster
KEYS=10
client random --keys $KEYS --duration 6 --concurrency 6 --quiet --history "$WORK/h1.jsonl" >"$WORK/c1.out" 2>"$WORK/c1.err" &
c1=$!
via 1 random --keys $KEYS --duration 6 --concurrency 2 --quiet --history "$WORK/h2.jsonl" >"$WORK/c2.out" 2>"$WORK/c2.err" &
c2=$!
sleep 2
log "kill -9 node 3 (pid ${PIDS[3]})"
kill_node 3 9
wait $c1 || fail "fan-out client exited non-zero"
wait $c2 || fail "via client exited non-zero"
cat "$WORK/c1.out" "$WORK/c2.out"
grep -q "warning: server 127.0.0.1:${PORTS[3]} is not answering" "$WORK/c1.err" ||
    fail "fan-out client did not warn about the dead server: $(cat "$WORK/c1.err")"
for f in c1 c2; do
    errs=$(summary_field "$WORK/$f.out" errors)
    ops=$(summary_field "$WORK/$f.out" ops)
    [ "$errs" = 0 ] || fail "$f: $errs failed operations"
    [ "${ops:-0}" -gt 100 ] || fail "$f: only ${ops:-0} operations"
done
# Final read of every key, recorded, then checked with the load history.
client random --keys $KEYS --put-ratio 0 --ops 200 --quiet --history "$WORK/h3.jsonl" >"$WORK/c3.out"
grep -q "errors=0" "$WORK/c3.out" || fail "final reads failed: $(cat "$WORK/c3.out")"
"$LINCHECK" "$WORK/h1.jsonl" "$WORK/h2.jsonl" "$WORK/h3.jsonl" || fail "history not linearizable"
log "PASS p5 kill -9 mid-load"
