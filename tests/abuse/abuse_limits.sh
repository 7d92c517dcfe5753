#!/usr/bin/env bash
# Bounded resources under abuse (README, "Security"): 5,000 idle TCP
# connections, then streams that send batches and never read a reply, each
# against node 1 while an honest client keeps calling that node.  Passes
# when the node lives, the honest client finishes without errors, the
# node's memory stays bounded, and every history is linearizable; prints
# the honest client's latency without and with each abuse (for the README;
# timing is reported, not asserted).
. "$(dirname "$0")/../process/lib.sh"
PY=/usr/bin/python3
"$PY" -c 'import h2, grpc' 2>/dev/null ||
    { echo "SKIP: python3-h2 or python3-grpcio not installed (scripts/deps.sh installs them)"; exit 77; }
start_cluster
a1="127.0.0.1:${PORTS[1]}"
rss() { awk '/VmRSS/ {print $2}' "/proc/${PIDS[1]}/status"; }

honest() { # honest NAME: 8 s of puts and gets through node 1
    via 1 random --keys 1000 --duration 8 --concurrency 8 --history "$WORK/$1.jsonl" \
        >"$WORK/$1.out" 2>"$WORK/$1.err" || fail "$1: honest client failed: $(cat "$WORK/$1.err")"
    local errs ops
    errs=$(summary_field "$WORK/$1.out" errors)
    ops=$(summary_field "$WORK/$1.out" ops)
    [ "$errs" = 0 ] || fail "$1: $errs failed operations: $(cat "$WORK/$1.out")"
    [ "${ops:-0}" -gt 100 ] || fail "$1: only ${ops:-0} operations"
    log "$1: $(grep -o 'ops=[0-9]*\|p50=[0-9.]*\|p99=[0-9.]*' "$WORK/$1.out" | tr '\n' ' ')"
}

rss0=$(rss)
honest baseline

"$PY" "$(dirname "$0")/abuser.py" idle "$a1" 5000 12 >"$WORK/idle.out" 2>&1 &
ab=$!
sleep 3
honest idle_connections
wait $ab || fail "idle abuser: $(cat "$WORK/idle.out")"
cat "$WORK/idle.out"
kill -0 "${PIDS[1]}" || fail "node 1 died under 5,000 idle connections"
log "node 1 RSS: ${rss0} kB before, $(rss) kB after the idle connections"

"$PY" "$(dirname "$0")/abuser.py" streams "$a1" 32 16 >"$WORK/streams.out" 2>&1 &
ab=$!
t0=$(date +%s)
sleep 1
honest unread_streams &
hc=$!
sleep 3
early=$(rss)
sleep $((t0 + 14 - $(date +%s)))
late=$(rss)
wait $hc || exit 1
wait $ab || fail "stream abuser: $(cat "$WORK/streams.out")"
cat "$WORK/streams.out"
kill -0 "${PIDS[1]}" || fail "node 1 died under unread streams"
log "node 1 RSS under unread streams: $early kB after 4 s, $late kB after 14 s"
# A node that keeps reading batches whose answers cannot leave grows for as
# long as the sender goes on (about 8 MB/s here without the backlog bound);
# with it, reading stops and memory stays flat.
[ $((late - early)) -lt $((30 * 1024)) ] ||
    fail "node 1 grew from $early kB to $late kB while its answers went unread"

"$LINCHECK" "$WORK"/baseline.jsonl "$WORK"/idle_connections.jsonl "$WORK"/unread_streams.jsonl ||
    fail "honest history not linearizable"
expect_eq "$(via 1 put 7 7)" true "node 1 serves after the abuse"
log "PASS abuse limits"
