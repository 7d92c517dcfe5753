#!/usr/bin/env bash
# Storage errors at the process level: torn tail (truncated with a warning),
# corrupt record in the middle (refused, naming file and offset), a second
# server on one directory (refused), an unusable directory (clean error), a
# full disk (puts fail cleanly, the node stays up and says so).
. "$(dirname "$0")/lib.sh"
start_cluster
for k in $(seq 1 30); do client put "$k" "$k" >/dev/null || fail "put $k"; done
d=$WORK/data1
seg=$(ls "$d"/log.* | tail -n 1)

# Second instance on the same directory.
out=$(timeout 10 "$SERVER" --port 1 --members 127.0.0.1:1 --data-dir "$d" 2>&1) && fail "second instance started"
echo "$out" | grep -q "in use by another server (pid ${PIDS[1]})" || fail "second instance message: $out"

kill_node 1 9
# Torn tail: half a record right after the last one, as a crash mid-append
# leaves it (segments are zero-filled in advance, so that is not the end of
# the file: find the first 44-byte slot that does not start a record).
end=0
while [ "$(dd if="$seg" bs=1 skip="$end" count=4 status=none)" = DWAL ]; do end=$((end + 44)); done
[ "$end" -gt 0 ] || fail "no records found in $seg"
printf 'DWAL\001\002\003' | dd of="$seg" bs=1 seek="$end" conv=notrunc status=none
restart_node 1
grep -q "torn" "$WORK/node1.log" || fail "no torn-tail warning: $(tail -n 5 "$WORK/node1.log")"
expect_eq "$(via 1 replica-read 30 | cut -d' ' -f1)" 30 "data kept after torn tail"

kill_node 1 9
# Corrupt middle: flip a byte inside the second record.
cp "$seg" "$WORK/seg.bak"
printf '\xff' | dd of="$seg" bs=1 seek=60 conv=notrunc status=none
out=$(timeout 10 "$SERVER" --port "${PORTS[1]}" --ip 127.0.0.1 --members "$MEMBERS" --data-dir "$d" 2>&1) && fail "started on a corrupt log"
echo "$out" | grep -q "$(basename "$seg")" || fail "corruption message lacks the file: $out"
echo "$out" | grep -q "offset" || fail "corruption message lacks the offset: $out"
log "refused as expected: $out"
cp "$WORK/seg.bak" "$seg"
restart_node 1

# Unusable directory: its parent is a regular file.
touch "$WORK/plainfile"
out=$(timeout 10 "$SERVER" --port 1 --members 127.0.0.1:1 --data-dir "$WORK/plainfile/x" 2>&1) && fail "started on an unusable dir"
echo "$out" | grep -qi "not a directory" || fail "unusable dir message: $out"

# Full disk on two nodes: a 16 KiB file-size limit makes their log writes
# fail with EFBIG.  Puts then cannot reach a quorum: they fail cleanly
# (false), the nodes stay up and log the error.
for i in 1 2; do kill_node "$i"; done
for i in 1 2; do
    ( ulimit -f 16; exec "$SERVER" --port "${PORTS[$i]}" --ip 127.0.0.1 --members "$MEMBERS" \
        --data-dir "$WORK/data$i" ) >>"$WORK/node$i.log" 2>&1 </dev/null &
    PIDS[$i]=$!
    disown
done
for i in 1 2; do wait_serving "$i" || fail "node $i did not restart under the limit"; done
fails=0
for k in $(seq 100 600); do
    r=$(client --deadline-ms 500 put "$k" "$k" 2>/dev/null)
    [ "$r" = true ] || fails=$((fails + 1))
    [ $fails -ge 5 ] && break
done
[ $fails -ge 5 ] || fail "puts kept succeeding with two full disks"
for i in 1 2 3; do kill -0 "${PIDS[$i]}" 2>/dev/null || fail "node $i died on a full disk"; done
grep -qi "file too large\|no space" "$WORK/node1.log" || fail "node 1 did not log the storage error"
expect_eq "$(client get 30)" 30 "reads still served with full disks"
log "PASS d5 storage errors"
