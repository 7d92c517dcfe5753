#!/usr/bin/env bash
# Six nodes, three replicas per key: with two nodes down, the keys whose
# replicas include both (two of three, no majority left) refuse within the
# deadline, and every other key keeps working, through the fan-out client
# and through a node.  Each node stores about half of the keys.
N=6
SERVER_ARGS="--replicas 3"
. "$(dirname "$0")/lib.sh"
start_cluster
KEYS=40
for k in $(seq 0 $((KEYS - 1))); do
    [ "$(client put "$k" $((1000 + k)))" = true ] || fail "put($k) with every node up"
done
# A put returns once two replicas have it; the third gets it moments later
# (or from anti-entropy), so wait until every replica holds every key.
for try in $(seq 1 50); do
    total=0 counts=""
    for i in $(seq 1 $N); do
        n=$(via "$i" stats | grep -o '"keys": *[0-9]*' | grep -o '[0-9]*$')
        [ -n "$n" ] || fail "stats of node $i"
        total=$((total + n)) counts="$counts $n"
    done
    [ "$total" = $((KEYS * 3)) ] && break
    sleep 0.2
done
log "keys stored by nodes 1..$N:$counts (of $KEYS, three replicas each)"
expect_eq "$total" $((KEYS * 3)) "keys stored over all nodes (R = 3)"

A=127.0.0.1:${PORTS[1]} B=127.0.0.1:${PORTS[4]}
log "kill -9 nodes 1 and 4"
kill_node 1 9
kill_node 4 9
shared=0 other=0
for k in $(seq 0 $((KEYS - 1))); do
    loc=$(client locate "$k") || fail "locate $k"
    t0=$(date +%s%N)
    if [[ $loc == *" $A"* && $loc == *" $B"* ]]; then
        shared=$((shared + 1))
        out=$(client --deadline-ms 1000 put "$k" 7 2>/dev/null) && fail "put($k) succeeded with two of its three replicas down ($loc)"
        [ "$out" = false ] || fail "put($k): expected false, got '$out'"
        via 2 --deadline-ms 1000 get "$k" >/dev/null 2>&1 && fail "get($k) through node 2 succeeded with two replicas down"
        ms=$((($(date +%s%N) - t0) / 1000000))
        ((ms < 4000)) || fail "key $k: refusing took $ms ms, beyond its deadlines"
    else
        other=$((other + 1))
        [ "$(client --deadline-ms 2000 put "$k" $((2000 + k)))" = true ] || fail "put($k) with one replica down at most ($loc)"
        expect_eq "$(via 3 get "$k")" $((2000 + k)) "get($k) through node 3"
    fi
done
log "$shared keys refused (their replicas include nodes 1 and 4), $other kept working"
((shared > 0 && other > shared)) || fail "placement: $shared shared keys of $KEYS"
log "PASS n6 two nodes down: only the keys they share refuse"
