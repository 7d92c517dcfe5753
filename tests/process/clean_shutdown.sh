#!/usr/bin/env bash
# SIGTERM and SIGINT stop a node cleanly even with requests in flight: exit
# status 0 and a "stopped" line.  Under the ASan build a leak or a memory
# error at shutdown makes the exit status non-zero, so this also checks
# that every allocation has an owner that frees it.
. "$(dirname "$0")/lib.sh"
start_cluster
# Children of this shell (not disowned) so that their exit status can be read.
for i in 1 2 3; do kill_node "$i" TERM; done
declare -a CHILD
for i in 1 2 3; do
    "$SERVER" --port "${PORTS[$i]}" --ip 127.0.0.1 --members "$MEMBERS" --data-dir "$WORK/data$i" \
        >>"$WORK/node$i.log" 2>&1 </dev/null &
    CHILD[$i]=$!
    PIDS[$i]=$!
done
for i in 1 2 3; do wait_serving "$i" || fail "node $i did not restart"; done
client random --keys 20 --duration 3 --concurrency 4 --quiet >"$WORK/c1.out" 2>&1 &
via 1 random --keys 20 --duration 3 --concurrency 4 --quiet >"$WORK/c2.out" 2>&1 &
sleep 1.5
kill -TERM "${CHILD[1]}"
kill -INT "${CHILD[2]}"
for i in 1 2; do
    wait "${CHILD[$i]}"; rc=$?
    PIDS[$i]=""
    [ $rc = 0 ] || fail "node $i exited with status $rc on a stop signal"
    grep -q "INFO  stopped" "$WORK/node$i.log" || fail "node $i did not log its clean stop"
done
wait %1 %2 2>/dev/null
kill -TERM "${CHILD[3]}"
wait "${CHILD[3]}"; rc=$?
PIDS[3]=""
[ $rc = 0 ] || fail "node 3 exited with status $rc"
grep -h "received, shutting down" "$WORK"/node*.log
log "PASS clean shutdown"
