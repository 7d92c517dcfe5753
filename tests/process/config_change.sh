#!/usr/bin/env bash
# A data directory records the configuration this node knows (the file
# `config`; membership changes update it), so MEMBERS at a restart is only
# a seed: a node restarted with another MEMBERS runs on the recorded
# configuration and says so; another --replicas is refused (R cannot
# change) and its data is left as it was; a directory of an earlier
# version (data, no `config`, no meta.config) starts only with R = N; a
# directory recorded for another node is refused; bad --replicas values are
# refused.
. "$(dirname "$0")/lib.sh"
start_cluster
for k in 1 2 3; do expect_eq "$(client put $k $((k * 10)))" true "put $k"; done
expect_eq "$(via 3 get 2)" 20 "node 3 reads key 2"
# A put returns once a majority has it: wait until node 3 itself holds all
# three, so that its directory is known to hold them.
for t in $(seq 1 100); do
    held=0
    for k in 1 2 3; do
        [ "$(via 3 replica-read $k 2>/dev/null | cut -d' ' -f1)" = $((k * 10)) ] && held=$((held + 1))
    done
    [ $held = 3 ] && break
    sleep 0.1
done
expect_eq "$held" 3 "keys held by node 3"
kill_node 3 TERM
d3=$WORK/data3
grep -q "replicas=3 partitions=65536 members=" "$d3/meta.config" || fail "no meta.config in $d3"

# fingerprint: every file of the directory but LOCK and leftovers, hashed
fingerprint() { (cd "$1" && find . -type f ! -name LOCK ! -name '*.tmp' | sort | xargs sha256sum); }
before=$(fingerprint "$d3")

# srv3 EXPECTED_RC PATTERN ARGS...: node 3 on its directory, in the foreground
srv3() {
    local rc=$1 pat=$2; shift 2
    out=$(timeout 10 "$SERVER" --port "${PORTS[3]}" --ip 127.0.0.1 --data-dir "$d3" "$@" 2>&1 </dev/null)
    got=$?
    [ $got = "$rc" ] || fail "server $*: exit $got, expected $rc ($out)"
    echo "$out" | grep -q -- "$pat" || fail "server $*: message lacks '$pat': $out"
}
grep -q "^members = " "$d3/config" || fail "no recorded configuration in $d3/config"
srv3 1 "records 3 replicas per key, not the 2 asked for: R cannot change" --members "$MEMBERS" --replicas 2
REPLICAS=1 srv3 1 "records 3 replicas per key, not the 1" --members "$MEMBERS"
expect_eq "$(fingerprint "$d3")" "$before" "node 3's files after the refusals"
# Another node's directory.
out=$(timeout 10 "$SERVER" --port "$((PORTS[3] + 51))" --ip 127.0.0.1 --data-dir "$d3" --members "$MEMBERS" 2>&1 </dev/null)
[ $? = 1 ] || fail "another node on node 3's directory was not refused: $out"
echo "$out" | grep -q "belongs to the node 127.0.0.1:${PORTS[3]}, not to this node" ||
    fail "the refusal does not name the owner: $out"
expect_eq "$(fingerprint "$d3")" "$before" "node 3's files after another node tried them"

# Another MEMBERS (a member that is not there, listed first) is only a
# seed: node 3 runs on its recorded configuration.
extra=127.0.0.1:$((PORTS[3] + 50))
MEMBERS_SAVED=$MEMBERS MEMBERS="$extra,$MEMBERS"
restart_node 3
MEMBERS=$MEMBERS_SAVED
grep -q "MEMBERS ($extra,.*) is only a seed" "$WORK/node3.log" || fail "no log line for the seed MEMBERS"
stats3=$(via 3 stats)
echo "$stats3" | grep -q "\"epoch\": 1" || fail "node 3 is not at epoch 1: $stats3"
echo "$stats3" | grep -q "$extra" && fail "node 3 took the seed list as its members: $stats3"
expect_eq "$(via 3 get 3)" 30 "node 3 reads key 3 after a restart with other MEMBERS"
kill_node 3 TERM
before=$(fingerprint "$d3")

# Bad R: refused before the directory is touched.
srv3 2 "replicas '4' is not a number of replicas per key from 1 to 3.*has 3 members" --members "$MEMBERS" --replicas 4
srv3 2 "replicas 'abc' is not a number" --members "$MEMBERS" --replicas abc
srv3 2 "replicas '0' is not a number" --members "$MEMBERS" --replicas 0
srv3 2 "replicas ' 3' is not a number" --members "$MEMBERS" --replicas " 3"
REPLICAS=3x srv3 2 "environment REPLICAS='3x' is not a number" --members "$MEMBERS"
expect_eq "$(fingerprint "$d3")" "$before" "node 3's files after the bad flags"

# The same configuration in another order and spelling is the same line.
reordered=$(echo "$MEMBERS" | tr , '\n' | tac | sed 's/127\.0\.0\.1/localhost/' | paste -sd,)
MEMBERS_SAVED=$MEMBERS MEMBERS=$reordered
SERVER_ARGS="--replicas 3" restart_node 3
MEMBERS=$MEMBERS_SAVED
expect_eq "$(via 3 replica-read 2 | awk '{print $1}')" 20 "node 3's key 2 after the restart"
expect_eq "$(via 3 get 3)" 30 "node 3 reads key 3"
kill_node 3 TERM

# A directory of the earlier version: data and meta.initialized, no
# meta.config (nor meta.cluster_id).  Only R = N = 3 starts it.
rm -f "$d3/meta.config" "$d3/meta.cluster_id" "$d3/config"
srv3 1 "records no configuration.*every member stored every key.*--replicas 3 (the number of members), not 2" \
    --members "$MEMBERS" --replicas 2
[ ! -e "$d3/meta.config" ] || fail "a refused start recorded a configuration"
[ ! -e "$d3/config" ] || fail "a refused start recorded a configuration record"
restart_node 3
cmp -s "$d3/meta.config" "$WORK/data1/meta.config" || fail "node 3 recorded another configuration than node 1"
grep -q "from before configurations were recorded" "$WORK/node3.log" || fail "no log line for the old directory"
expect_eq "$(via 3 replica-read 1 | awk '{print $1}')" 10 "node 3's key 1 after the upgrade"
expect_eq "$(client get 1)" 10 "cluster read after the upgrade"
grep -q "configuration replicas=3 partitions=65536 members=.* (fingerprint [0-9a-f]\{16\}) at epoch 1" "$WORK/node1.log" ||
    fail "no configuration line at start-up"
for i in 1 2 3; do kill -0 "${PIDS[$i]}" || fail "node $i died"; done
log "PASS config change"
