#!/usr/bin/env bash
# Property 4, liveness: every call returns (within the deadline, here 1 s,
# plus process start-up) even with a quorum down, and a put that returned
# false succeeds when retried once the cluster can make progress again.
. "$(dirname "$0")/lib.sh"
start_cluster
expect_eq "$(client put 1 10)" true "put with all nodes up"
kill_node 2
kill_node 3
start=$(date +%s%N)
out=$(timeout 20 "$CLIENT" --servers "$MEMBERS" --deadline-ms 1000 put 1 11 2>"$WORK/err"); rc=$?
elapsed=$((($(date +%s%N) - start) / 1000000))
[ $rc -ne 124 ] || fail "put hung"
expect_eq "$out" false "put without quorum"
[ $rc -eq 1 ] || fail "put without quorum exited $rc, expected 1"
grep -q "not applied" "$WORK/err" || fail "no reason on stderr: $(cat "$WORK/err")"
log "put without quorum returned false in ${elapsed} ms: $(cat "$WORK/err")"
timeout 20 "$CLIENT" --servers "$MEMBERS" --deadline-ms 1000 get 1 >/dev/null 2>&1
[ $? -eq 1 ] || fail "get without quorum should fail with exit 1"
via 1 --deadline-ms 1000 put 1 12 >/dev/null 2>&1 && fail "public put without quorum said true"
start_node 2
wait_serving 2 || fail "node 2 did not come back"
# Retry until true, bounded: the channel may still be in reconnect backoff.
ok=0
for try in $(seq 1 20); do
    if [ "$(client put 1 11 2>/dev/null)" = true ]; then ok=1; break; fi
    sleep 0.2
done
[ $ok = 1 ] || fail "retried put never succeeded"
expect_eq "$(client get 1)" 11 "value after successful retry"
expect_eq "$(via 2 get 1)" 11 "value via restarted node"
log "PASS p4 liveness (retry succeeded after $try tries)"
