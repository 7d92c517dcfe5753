#!/usr/bin/env bash
# Bad input gets a clear error and never takes a node down: malformed
# protobuf, unknown methods, absurd flags, busy ports, bad member lists.
. "$(dirname "$0")/lib.sh"
start_cluster
expect_eq "$(client put 1 1)" true "initial put"
a="127.0.0.1:${PORTS[1]}"
status() { "$RAWCALL" "$@" | head -n1 | cut -d' ' -f1; }
expect_eq "$(status "$a" /dht.KeyValue/Put ffffffffff)" INVALID_ARGUMENT "garbage Put"
expect_eq "$(status "$a" /dht.KeyValue/Get 08)" INVALID_ARGUMENT "truncated Get"
expect_eq "$(status "$a" /dht.Replica/Write 0a0201)" INVALID_ARGUMENT "wrong wire type Write"
expect_eq "$(status "$a" /dht.Replica/Lock "$(printf '78%.0s' $(seq 3000))")" INVALID_ARGUMENT "oversized Lock"
expect_eq "$(status "$a" /dht.KeyValue/Nope 0801)" UNIMPLEMENTED "unknown method"
expect_eq "$(status "$a" /other.Service/Put 0801)" UNIMPLEMENTED "unknown service"
expect_eq "$(status "$a" /dht.KeyValue/Get "")" OK "empty Get is key 0"
kill -0 "${PIDS[1]}" || fail "node 1 died on bad input"
expect_eq "$(via 1 get 1)" 1 "node 1 still serves"

# Server flags: each refused with exit 2 and a one-line reason.
srv_err() { # srv_err EXPECTED_RC PATTERN ARGS...
    local rc=$1 pat=$2; shift 2
    out=$(timeout 10 "$SERVER" "$@" 2>&1 </dev/null); got=$?
    [ $got = "$rc" ] || fail "server $*: exit $got, expected $rc ($out)"
    echo "$out" | grep -q -- "$pat" || fail "server $*: message lacks '$pat': $out"
}
srv_err 2 "not a port number" --port 99999
srv_err 2 "not a port number" --port abc
srv_err 2 "unknown or incomplete option" --bogus
srv_err 2 "bad members list" --port 40000 --members "nonsense"
srv_err 2 "port must be a number" --port 40000 --members "127.0.0.1:0,127.0.0.1:2"
srv_err 2 "appears twice" --port 40000 --members "127.0.0.1:40000,127.0.0.1:40000"
srv_err 2 "not in the members list" --port 40000 --members "127.0.0.1:40001,127.0.0.1:40002"
srv_err 2 "no port given" --members "$MEMBERS"
srv_err 1 "already in use" --port "${PORTS[2]}" --ip 127.0.0.1 --members "$MEMBERS"
srv_err 1 "not an address of this host" --port 40000 --ip 10.255.255.1 --members 10.255.255.1:40000
PORT=abc srv_err 2 "environment PORT" --members "$MEMBERS"
kill -0 "${PIDS[2]}" || fail "node 2 died when a second server tried its port"

# Client flags and arguments.
cli_err() { # cli_err PATTERN ARGS...
    local pat=$1; shift
    out=$(timeout 10 "$CLIENT" "$@" 2>&1); got=$?
    [ $got = 2 ] || fail "client $*: exit $got, expected 2 ($out)"
    echo "$out" | grep -q -- "$pat" || fail "client $*: message lacks '$pat': $out"
}
cli_err "put takes two integers" put abc 1
cli_err "put takes two integers" put 1
cli_err "get takes one integer KEY" get 1 2
cli_err "get takes one integer KEY" get 99999999999999999999
cli_err "unknown command" frobnicate
cli_err "put-ratio" random --put-ratio 2
cli_err "concurrency" random --concurrency 0
cli_err "bad server address" --servers "localhost" get 1
cli_err "bad server address" --via "x:70000" get 1
expect_eq "$(client put -5 -6)" true "negative key and value"
expect_eq "$(client get -5)" -6 "negative key read"
for i in 1 2 3; do kill -0 "${PIDS[$i]}" || fail "node $i died"; done
log "PASS bad input"
