#!/usr/bin/env bash
# Property 3, consistency: after a concurrent random load (fan-out and
# through single nodes at once), every node returns the same value for
# every key, and the recorded history is linearizable.
. "$(dirname "$0")/lib.sh"
start_cluster
KEYS=20
client random --keys $KEYS --ops 1500 --concurrency 4 --quiet --history "$WORK/h1.jsonl" >"$WORK/c1.out" &
c1=$!
via 2 random --keys $KEYS --ops 800 --concurrency 2 --quiet --history "$WORK/h2.jsonl" >"$WORK/c2.out" &
c2=$!
wait $c1 || fail "client 1 failed: $(cat "$WORK/c1.out")"
wait $c2 || fail "client 2 failed: $(cat "$WORK/c2.out")"
cat "$WORK/c1.out" "$WORK/c2.out"
for k in $(seq 0 $((KEYS - 1))); do
    v1=$(via 1 get "$k") || fail "get($k) via node 1"
    v2=$(via 2 get "$k") || fail "get($k) via node 2"
    v3=$(via 3 get "$k") || fail "get($k) via node 3"
    vf=$(client get "$k") || fail "fan-out get($k)"
    [ "$v1" = "$v2" ] && [ "$v2" = "$v3" ] && [ "$v3" = "$vf" ] ||
        fail "key $k differs: node1=$v1 node2=$v2 node3=$v3 fan-out=$vf"
done
"$LINCHECK" "$WORK/h1.jsonl" "$WORK/h2.jsonl" || fail "history not linearizable"
log "PASS p3 same value from every node"
