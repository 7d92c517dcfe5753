#!/usr/bin/env bash
# Membership changes between real processes, under load:
#  - three members grow to five (two nodes started with --join, then
#    `members add`) and shrink back to three by removing two of the
#    ORIGINAL members, while the fan-out client writes and reads: zero
#    failed operations, and its history is linearizable;
#  - a member down during a change (node 4 killed) restarts with the
#    original MEMBERS and learns the current configuration;
#  - a removed node refuses every request, also after a restart;
#  - two `members add` at once: exactly one wins;
#  - refusals: a removal that would leave fewer members than R, adding a
#    member twice, a bad address; --join on a directory with data.
. "$(dirname "$0")/lib.sh"
N=3 start_cluster
KEYS=200
ORIG=$MEMBERS
addr() { echo "127.0.0.1:${PORTS[$1]}"; }

# start_joiner I: a new node on a free port, waiting to be added.
start_joiner() {
    local i=$1
    PORTS[$i]=$((PORTS[3] + i - 3))
    "$SERVER" --port "${PORTS[$i]}" --ip 127.0.0.1 --members "$ORIG" --join \
        --data-dir "$WORK/data$i" $(tls_node_args "$i") >>"$WORK/node$i.log" 2>&1 </dev/null &
    PIDS[$i]=$!
    disown "$!"
    for k in $(seq 1 100); do
        via "$i" stats >/dev/null 2>&1 && return 0
        kill -0 "${PIDS[$i]}" 2>/dev/null || fail "joiner $i exited: $(tail -3 "$WORK/node$i.log")"
        sleep 0.1
    done
    fail "joiner $i does not answer"
}
# members_cmd ARGS...: `client members ...` through the listed servers;
# sets $out and $rc.
members_cmd() {
    out=$("$CLIENT" --servers "$1" $(tls_coord_args) members "${@:2}" 2>&1)
    rc=$?
}

start_joiner 4
start_joiner 5
via 4 get 1 >/dev/null 2>&1 && fail "a joining node served a get"
via 4 stats | grep -q '"epoch": 0' || fail "a joining node claims a configuration: $(via 4 stats)"

log "load: fan-out client, 8 clients, while the members change"
"$CLIENT" --servers "$ORIG" $(tls_coord_args) random --keys $KEYS --concurrency 8 --duration 20 \
    --quiet --history "$WORK/history.txt" >"$WORK/load.out" 2>"$WORK/load.err" &
LOAD=$!
sleep 1

members_cmd "$ORIG" add "$(addr 4)"
[ $rc = 0 ] || fail "add node 4: exit $rc: $out"
echo "$out" | grep -q "epoch 2" || fail "add node 4 does not report epoch 2: $out"
members_cmd "$ORIG" add "$(addr 5)"
[ $rc = 0 ] || fail "add node 5: exit $rc: $out"
log "grew to five: $out"
members_cmd "$ORIG" add "$(addr 5)"
[ $rc = 1 ] && echo "$out" | grep -q "already a member" || fail "adding node 5 twice: exit $rc: $out"

# Node 4 goes down; node 1 is removed meanwhile (a change with a member
# down); node 4 comes back with the ORIGINAL MEMBERS and catches up.
kill_node 4
members_cmd "$(addr 2),$(addr 3),$(addr 5)" remove "$(addr 1)"
[ $rc = 0 ] || fail "remove node 1 (node 4 down): exit $rc: $out"
"$SERVER" --port "${PORTS[4]}" --ip 127.0.0.1 --members "$ORIG" --data-dir "$WORK/data4" \
    $(tls_node_args 4) >>"$WORK/node4.log" 2>&1 </dev/null &
PIDS[4]=$!
disown "$!"
for k in $(seq 1 100); do
    via 4 stats 2>/dev/null | grep -q '"epoch": 4' && break
    sleep 0.1
done
via 4 stats | grep -q '"epoch": 4' || fail "node 4 did not learn epoch 4: $(via 4 stats)"
grep -q "MEMBERS ($ORIG) is only a seed" "$WORK/node4.log" || fail "node 4 did not say MEMBERS is a seed"

members_cmd "$(addr 3),$(addr 4),$(addr 5)" remove "$(addr 2)"
[ $rc = 0 ] || fail "remove node 2: exit $rc: $out"
log "shrank to three: $out"
members_cmd "$(addr 3)" remove "$(addr 4)"
[ $rc = 1 ] && echo "$out" | grep -q "fewer than" || fail "removing below R: exit $rc: $out"

wait $LOAD || fail "the load generator failed: $(tail -3 "$WORK/load.err")"
cat "$WORK/load.out"
expect_eq "$(summary_field "$WORK/load.out" errors)" 0 "failed operations of the fan-out client"
"$LINCHECK" "$WORK/history.txt" >"$WORK/lincheck.out" 2>&1 || fail "history not linearizable: $(tail -5 "$WORK/lincheck.out")"

members_cmd "$(addr 3)"
echo "$out" | grep -q "epoch 5: replicas=3 .*members=$(addr 3),$(addr 4),$(addr 5)" ||
    fail "members after the changes: $out"

# The removed nodes refuse everything, also after a restart.
for i in 1 2; do
    via "$i" get 1 >/dev/null 2>&1 && fail "removed node $i served a get"
    via "$i" stats | grep -q '"removed": true' || fail "node $i does not say it was removed"
done
kill_node 1
start_node 1
sleep 1
kill -0 "${PIDS[1]}" 2>/dev/null || fail "removed node 1 did not start (it should start and refuse)"
via 1 get 1 >/dev/null 2>&1 && fail "removed node 1 served a get after a restart"
via 1 stats | grep -q '"removed": true' || fail "node 1 forgot its removal"

# Every key reads the same through each remaining member.
for k in 0 17 99 150; do
    v3=$(via 3 get $k) v4=$(via 4 get $k) v5=$(via 5 get $k)
    [ "$v3" = "$v4" ] && [ "$v4" = "$v5" ] || fail "key $k reads $v3/$v4/$v5 through nodes 3/4/5"
done

# Two changes at once: exactly one wins.
start_joiner 6
start_joiner 7
NOW="$(addr 3),$(addr 4),$(addr 5)"
("$CLIENT" --servers "$(addr 3)" $(tls_coord_args) members add "$(addr 6)" >"$WORK/c6.out" 2>&1; echo $? >"$WORK/c6.rc") &
("$CLIENT" --servers "$(addr 4)" $(tls_coord_args) members add "$(addr 7)" >"$WORK/c7.out" 2>&1; echo $? >"$WORK/c7.rc") &
wait
r6=$(cat "$WORK/c6.rc") r7=$(cat "$WORK/c7.rc")
log "concurrent adds: node 6 exit $r6 ($(cat "$WORK/c6.out")); node 7 exit $r7 ($(cat "$WORK/c7.out"))"
[ $((r6 == 0)) != $((r7 == 0)) ] || fail "two concurrent changes: exits $r6 and $r7 (exactly one must win)"
grep -q "another change" "$WORK/c$([ "$r6" = 0 ] && echo 7 || echo 6).out" || fail "the loser does not say another change won"
members_cmd "$NOW"
echo "$out" | grep -q "epoch 6:" || fail "not at epoch 6 after one of two concurrent changes: $out"

# --join on a directory with data, and a bad address.
kill_node 5
out=$(timeout 10 "$SERVER" --port "${PORTS[5]}" --ip 127.0.0.1 --members "$NOW" --join \
    --data-dir "$WORK/data1" 2>&1 </dev/null)
[ $? = 1 ] || fail "--join on another node's data directory was not refused: $out"
members_cmd "$NOW" add "not-an-address"
[ $rc = 2 ] || [ $rc = 1 ] || fail "a bad address: exit $rc: $out"
log "PASS membership"
