#!/usr/bin/env bash
# Property 1, repeatable read: once put(k, v) returned true, every later get
# of k, through the fan-out client or through any node, returns v until the
# next put of k.
. "$(dirname "$0")/lib.sh"
start_cluster
for k in 1 2 3 -9 9223372036854775807; do
    v=$((k * 7 + 1000))
    expect_eq "$(client put "$k" "$v")" true "put($k, $v)"
    for r in 1 2 3 4 5; do
        expect_eq "$(client get "$k")" "$v" "fan-out get($k) #$r"
        for i in 1 2 3; do expect_eq "$(via "$i" get "$k")" "$v" "get($k) via node $i #$r"; done
    done
done
expect_eq "$(client put 1 -5)" true "overwrite"
for i in 1 2 3; do expect_eq "$(via "$i" get 1)" -5 "get(1) via node $i after overwrite"; done
log "PASS p1 repeatable read"
