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
# Replica requests carry the node's configuration fingerprint: rawcall puts
# the one the node reports (dht.Admin/Stats) in front of the bytes given
# here, so these reach the validation; the same requests with no fingerprint
# or another one are refused (FAILED_PRECONDITION) and change nothing.
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

# Another configuration's requests (a member or client started with other
# MEMBERS or --replicas), well-formed and in range: refused, nothing changes.
# Write key 5 value 999 counter 2^61 writer 7; Lock key 5 for 60 s; a Batch
# of both; a streamed Batch of one Read.
write_high=080510e707188080808080808080202007
lock_long=0805108f1818e0d403
batch_both=0a130803100518e7072080808080808080802028070a0b08011005308f1838e0d403
for i in 1 2 3; do
    a="127.0.0.1:${PORTS[$i]}"
    for cfg in none 0123456789abcdef; do
        for m in "Write $write_high" "Lock $lock_long" "Unlock 0805108f18" "Read 0805" \
            "Scan 100118e807" "Batch $batch_both" "Stream 0a04080410051001"; do
            expect_eq "$(status --config $cfg "$a" "/dht.Replica/${m% *}" "${m#* }")" \
                FAILED_PRECONDITION "${m% *} with config $cfg to node $i"
        done
    done
    out=$("$RAWCALL" --config 0123456789abcdef "$a" /dht.Replica/Write "$write_high" | head -n1)
    for w in "configuration mismatch" 0123456789abcdef "MEMBERS and --replicas"; do
        echo "$out" | grep -q -- "$w" || fail "the refusal does not say '$w': $out"
    done
    expect_eq "$(status "$a" /dht.Admin/Stats ffff)" INVALID_ARGUMENT "garbage Stats to node $i"
    expect_eq "$(status "$a" /dht.Admin/Stats "")" OK "Stats of node $i"
done
expect_eq "$(client get 5)" 12 "nothing changed by another configuration"
expect_eq "$(via 1 put 5 13)" true "the key is not locked"

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
