#!/usr/bin/env bash
# Catch-up: a node stalled (SIGSTOP) while puts happened gets the newer
# versions by itself, through anti-entropy, within seconds of coming back,
# without any read touching those keys.
. "$(dirname "$0")/lib.sh"
SERVER_ARGS="--anti-entropy-ms 300"
start_cluster
kill -STOP "${PIDS[3]}"
for k in $(seq 1 20); do
    [ "$(client --deadline-ms 1000 put "$k" $((k + 500)) 2>/dev/null)" = true ] || fail "put $k"
done
kill -CONT "${PIDS[3]}"
ok=0
for t in $(seq 1 50); do
    ok=1
    for k in $(seq 1 20); do
        v=$(via 3 replica-read "$k" 2>/dev/null | cut -d' ' -f1)
        [ "$v" = $((k + 500)) ] || { ok=0; break; }
    done
    [ $ok = 1 ] && break
    sleep 0.2
done
[ $ok = 1 ] || fail "node 3 did not catch up (key $k has '$v')"
log "node 3 caught up after about $((t * 200)) ms"
grep -h "anti-entropy" "$WORK/node3.log" | head -n 3
log "PASS d4 catch-up"
