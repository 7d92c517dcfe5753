#!/usr/bin/env bash
# Two internal requests that used to make a put lie, sent to every node as
# any gRPC client could (the node boundary, docs/design.md):
#  - Replica/Write of key 5 with version (2^64-1, 2^64-1): accepted, so the
#    next put's version max+1 wrapped to 0, the replicas kept the "newer"
#    one, answered ok, and `put 5 11` printed true while get 5 read 666;
#  - Replica/Lock with a lease of 2^32-1 ms: granted, blocking the key for
#    49 days.
# Now both are refused (INVALID_ARGUMENT) and change nothing; a version at
# the ceiling (2^62, well-formed) makes the next put answer false with a
# reason instead of writing.
. "$(dirname "$0")/lib.sh"
start_cluster
status() { "$RAWCALL" "$@" | head -n1 | cut -d' ' -f1; }
expect_eq "$(client put 5 1)" true "initial put"

# key 5, value 666, counter 2^64-1, writer 2^64-1, release_owner 0
write_wrap=0805109a0518ffffffffffffffffff0120ffffffffffffffffff01
# key 5, owner 1, lease_ms 2^32-1
lock_forever=0805100118ffffffff0f
for i in 1 2 3; do
    a="127.0.0.1:${PORTS[$i]}"
    expect_eq "$(status "$a" /dht.Replica/Write $write_wrap)" INVALID_ARGUMENT "wrapping Write to node $i"
    expect_eq "$(status "$a" /dht.Replica/Lock $lock_forever)" INVALID_ARGUMENT "49-day Lock to node $i"
done
expect_eq "$(client put 5 11)" true "put after the hostile Write"
expect_eq "$(client get 5)" 11 "get after the hostile Write"
for i in 1 2 3; do
    expect_eq "$(via "$i" get 5)" 11 "get via node $i"
done
expect_eq "$(via 2 put 5 12)" true "put via a node after the hostile Lock"
expect_eq "$(client get 5)" 12 "the key is not blocked"

# Out-of-range fields, each refused: lock owner 0, lease 0, writer 0,
# counter 0, a scan page of 2^32-1 entries, a stripe past the end.
for i in 1 2 3; do
    a="127.0.0.1:${PORTS[$i]}"
    expect_eq "$(status "$a" /dht.Replica/Lock 08051800)" INVALID_ARGUMENT "lock owner 0"
    expect_eq "$(status "$a" /dht.Replica/Lock 080510011800)" INVALID_ARGUMENT "lease 0"
    expect_eq "$(status "$a" /dht.Replica/Unlock 0805)" INVALID_ARGUMENT "unlock owner 0"
    expect_eq "$(status "$a" /dht.Replica/Write 0805100718012000)" INVALID_ARGUMENT "writer 0"
    expect_eq "$(status "$a" /dht.Replica/Write 080510071800200a)" INVALID_ARGUMENT "counter 0"
    expect_eq "$(status "$a" /dht.Replica/Scan 100118ffffffff0f)" INVALID_ARGUMENT "huge scan page"
    expect_eq "$(status "$a" /dht.Replica/Scan 1001180120e807)" INVALID_ARGUMENT "scan stripe 1000"
done
expect_eq "$(client get 5)" 12 "nothing changed"

# A well-formed version at the ceiling: stored, and then a put refuses to
# go past it with a reason (false, exit 1), never wrapping.
# key 6, value 66, counter 2^62, writer 1
ceiling=080610421880808080808080804020''01
for i in 1 2 3; do
    expect_eq "$(status "127.0.0.1:${PORTS[$i]}" /dht.Replica/Write $ceiling)" OK "ceiling Write to node $i"
done
out=$(client put 6 7 2>&1); rc=$?
expect_eq "$rc" 1 "put past the ceiling exits 1"
echo "$out" | grep -q "no version left" || fail "put past the ceiling: no reason given: $out"
expect_eq "$(client get 6)" 66 "the key keeps its value"
out=$(via 1 put 6 7 2>&1)
echo "$out" | grep -q "^false" || fail "put via a node past the ceiling: $out"
for i in 1 2 3; do kill -0 "${PIDS[$i]}" || fail "node $i died"; done
log "PASS hostile regressions"
