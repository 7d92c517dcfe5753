#!/usr/bin/env bash
# Property 2: a key never written reads 0, from every node and the fan-out
# client, including the extreme int64 keys; writing one key leaves the others 0.
. "$(dirname "$0")/lib.sh"
start_cluster
for k in 0 1 42 -1 -9223372036854775808 9223372036854775807 123456789; do
    expect_eq "$(client get "$k")" 0 "fan-out get($k)"
    for i in 1 2 3; do expect_eq "$(via "$i" get "$k")" 0 "get($k) via node $i"; done
done
expect_eq "$(client put 5 55)" true "put(5, 55)"
expect_eq "$(client get 6)" 0 "neighbour key"
expect_eq "$(client get 4)" 0 "neighbour key"
log "PASS p2 zero for unwritten keys"
