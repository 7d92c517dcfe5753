#!/usr/bin/env bash
# The public dht.KeyValue service on each node: a put through any node is
# read through every other node and through the fan-out client.
. "$(dirname "$0")/lib.sh"
start_cluster
for i in 1 2 3; do
    k=$((100 + i))
    expect_eq "$(via "$i" put "$k" $((i * 11)))" true "put via node $i"
    for j in 1 2 3; do expect_eq "$(via "$j" get "$k")" $((i * 11)) "get($k) via node $j"; done
    expect_eq "$(client get "$k")" $((i * 11)) "fan-out get($k)"
done
# The raw wire format of the public contract (proto/dht.proto), without our
# client: PutRequest{key=7,value=300} = 08 07 10 ac 02; PutReply{ok=true} = 08 01
out=$("$RAWCALL" "127.0.0.1:${PORTS[2]}" /dht.KeyValue/Put 080710ac02)
expect_eq "$(echo "$out" | head -n1 | cut -d' ' -f1)" OK "raw Put status"
expect_eq "$(echo "$out" | sed -n 2p)" 0801 "raw PutReply"
# GetRequest{key=7}; GetReply{value=300} = 08 ac 02
out=$("$RAWCALL" "127.0.0.1:${PORTS[3]}" /dht.KeyValue/Get 0807)
expect_eq "$(echo "$out" | sed -n 2p)" 08ac02 "raw GetReply"
# Never-written key: GetReply with the default value encodes as empty.
out=$("$RAWCALL" "127.0.0.1:${PORTS[1]}" /dht.KeyValue/Get 08e807)
expect_eq "$(echo "$out" | head -n1 | cut -d' ' -f1)" OK "raw Get of unwritten key"
expect_eq "$(echo "$out" | sed -n 2p)" "" "raw GetReply of unwritten key"
log "PASS public service on each node"
