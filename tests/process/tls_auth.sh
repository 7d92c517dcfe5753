#!/usr/bin/env bash
# TLS and member authentication (README "Security") on three TLS nodes:
# the store works over TLS (fan-out, --via, a linearizable load); every
# dht.Replica method (and dht.Admin/Control) refuses a caller without a certificate
# (UNAUTHENTICATED), with a certificate of the CA but without the peer role
# (PERMISSION_DENIED), with another CA's certificate or in plaintext (the
# handshake fails); KeyValue is open to any TLS client unless
# --client-cert-auth; and after all of it no replica has changed.  Last,
# bad TLS flags and files, the name check, and the plaintext warning.
TLS=1
. "$(dirname "$0")/lib.sh"
start_cluster
a1="127.0.0.1:${PORTS[1]}"

# ---- the store over TLS ----------------------------------------------------
# Keys 1001 and 1002, outside the load's, which the checker must see whole.
expect_eq "$(client put 1001 11)" true "fan-out put over TLS"
expect_eq "$(via 2 put 1002 22)" true "put via node 2 over TLS"
for i in 1 2 3; do
    expect_eq "$(via "$i" get 1001)" 11 "get(1001) via node $i"
    expect_eq "$(via "$i" get 1002)" 22 "get(1002) via node $i"
done
expect_eq "$(client get 1002)" 22 "fan-out get(1002)"

KEYS=20
client random --keys $KEYS --duration 4 --concurrency 4 --quiet --history "$WORK/h1.jsonl" \
    >"$WORK/c1.out" 2>"$WORK/c1.err" &
c1=$!
"$CLIENT" --via "$MEMBERS" $(tls_ca_args) random --keys $KEYS --duration 4 --concurrency 3 \
    --quiet --history "$WORK/h2.jsonl" >"$WORK/c2.out" 2>"$WORK/c2.err" &
c2=$!
wait $c1 || fail "fan-out load over TLS failed: $(cat "$WORK/c1.out" "$WORK/c1.err")"
wait $c2 || fail "--via load over TLS failed: $(cat "$WORK/c2.out" "$WORK/c2.err")"
grep -q "errors=0" "$WORK/c1.out" || fail "fan-out load had errors: $(cat "$WORK/c1.out")"
grep -q "errors=0" "$WORK/c2.out" || fail "--via load had errors: $(cat "$WORK/c2.out")"
final_reads "$WORK/h3.jsonl"
"$LINCHECK" "$WORK/h1.jsonl" "$WORK/h2.jsonl" "$WORK/h3.jsonl" ||
    fail "history over TLS not linearizable"
log "store over TLS: fan-out, --via, linearizable load"

# ---- who may call what ------------------------------------------------------
# rawcall_as WHO ADDR METHOD HEX: the status name (empty if no status came).
# WHO: plain (no TLS), none (TLS, no certificate), or a certificate in $CERTS.
rawcall_as() {
    local who=$1 ca=$CERTS/ca.crt cert="" key=""
    shift
    case $who in
    plain) ca="" ;;
    none) ;;
    *) cert=$CERTS/$who.crt key=$CERTS/$who.key ;;
    esac
    TLS_CA=$ca TLS_CERT=$cert TLS_KEY=$key "$RAWCALL" "$@" 3000 2>/dev/null | head -n1 | cut -d' ' -f1
}
# Replica requests that would change key 1 or 2 if they were served.
declare -A hostile=(
    [Lock]=08011007180a            # Lock(1, owner 7, 10 ms)
    [Unlock]=08021007              # Unlock(2, owner 7)
    [Write]=080110e70718c0843d2005 # Write(1, 999, version (1000000, 5))
    [Read]=0801
    [Scan]=10011864                # from the start, 100 entries
    [Batch]=0a0d0803100118e70720c0843d2805 # [Write(1, 999, (1000000, 5))]
    [Stream]=0a0d0803100118e70720c0843d2805
)
# entries_of HEX: the entries (field 1, each under 128 bytes) that open a
# ScanReply, without what follows them: the cursor and the replier's
# cluster id and incarnation, which differ between nodes and restarts.
entries_of() {
    local h=$1 out="" n
    while [ "${h:0:2}" = 0a ]; do
        n=$((16#${h:2:2}))
        out+=${h:0:$((4 + 2 * n))}
        h=${h:$((4 + 2 * n))}
    done
    echo "$out"
}
# scan_all I: node I's whole replica, as a member sees it: the status, then
# the entries.
scan_all() {
    local r
    r=$(TLS_CA=$CERTS/ca.crt TLS_CERT=$CERTS/coordinator.crt TLS_KEY=$CERTS/coordinator.key \
        "$RAWCALL" "127.0.0.1:${PORTS[$1]}" /dht.Replica/Scan 10011864 3000)
    echo "$(echo "$r" | head -n 1) $(entries_of "$(echo "$r" | sed -n 2p)")"
}
# Anti-entropy may still be copying the load's last writes: wait until the
# three replicas agree, then nothing but a served write can change them.
for k in $(seq 1 100); do
    s1=$(scan_all 1)
    [ "$s1" = "$(scan_all 2)" ] && [ "$s1" = "$(scan_all 3)" ] && break
    sleep 0.1
done
case $s1 in OK*) ;; *) fail "Scan with the coordinator's certificate: $s1" ;; esac
for i in 1 2 3; do before[$i]=$(scan_all "$i"); done

for m in Lock Unlock Write Read Scan Batch Stream; do
    p=/dht.Replica/$m h=${hostile[$m]}
    expect_eq "$(rawcall_as none "$a1" "$p" "$h")" UNAUTHENTICATED "$m without a certificate"
    expect_eq "$(rawcall_as client "$a1" "$p" "$h")" PERMISSION_DENIED "$m with the role-less certificate"
    st=$(rawcall_as other-peer "$a1" "$p" "$h")
    [ -z "$st" ] || [ "$st" = UNAVAILABLE ] || fail "$m with another CA's certificate: got '$st'"
    st=$(rawcall_as plain "$a1" "$p" "$h")
    [ -z "$st" ] || [ "$st" = UNAVAILABLE ] || fail "$m in plaintext to a TLS port: got '$st'"
done
# The same certificates on the other nodes, and the fan-out client with
# certificates that cannot coordinate.
for i in 2 3; do
    a="127.0.0.1:${PORTS[$i]}"
    expect_eq "$(rawcall_as none "$a" /dht.Replica/Write "${hostile[Write]}")" UNAUTHENTICATED "Write to node $i without a certificate"
    expect_eq "$(rawcall_as client "$a" /dht.Replica/Stream "${hostile[Stream]}")" PERMISSION_DENIED "Stream to node $i with the role-less certificate"
done
"$CLIENT" --servers "$MEMBERS" --tls-ca "$CERTS/ca.crt" --tls-cert "$CERTS/client.crt" \
    --tls-key "$CERTS/client.key" --deadline-ms 500 put 1 999 >/dev/null 2>&1 &&
    fail "a fan-out client without the peer role put a value"
"$CLIENT" --via "$a1" get 1 >/dev/null 2>&1 && fail "a plaintext client read from a TLS node"
"$CLIENT" --via "$a1" --tls-ca "$CERTS/other-ca.crt" get 1 >/dev/null 2>&1 &&
    fail "a client trusting another CA accepted node 1's certificate"
# Members may: Read, Scan, Batch and Stream (reads) with a peer-role certificate.
for who in coordinator node2; do
    expect_eq "$(rawcall_as $who "$a1" /dht.Replica/Read 0801)" OK "Read as $who"
    expect_eq "$(rawcall_as $who "$a1" /dht.Replica/Batch 0a0408041001)" OK "Batch(Read) as $who"
    expect_eq "$(rawcall_as $who "$a1" /dht.Replica/Stream 0a0408041001)" OK "Stream(Read) as $who"
done
# dht.Admin/Control (membership changes) needs the peer role like
# dht.Replica; what the node's control service answers a member's "hi"
# (ControlRequest{body: "hi"}) is its own business, but not a refusal of
# the caller.
for i in 1 2; do
    a="127.0.0.1:${PORTS[$i]}"
    expect_eq "$(rawcall_as none "$a" /dht.Admin/Control 0a026869)" UNAUTHENTICATED "Control to node $i without a certificate"
    expect_eq "$(rawcall_as client "$a" /dht.Admin/Control 0a026869)" PERMISSION_DENIED "Control to node $i with the role-less certificate"
    st=$(rawcall_as other-peer "$a" /dht.Admin/Control 0a026869)
    [ -z "$st" ] || [ "$st" = UNAVAILABLE ] || fail "Control with another CA's certificate: got '$st'"
    st=$(rawcall_as coordinator "$a" /dht.Admin/Control 0a026869)
    case $st in
    "" | UNAUTHENTICATED | PERMISSION_DENIED | UNAVAILABLE) fail "Control to node $i as a member: got '$st'" ;;
    esac
done
# KeyValue and health: any TLS client.
expect_eq "$(rawcall_as none "$a1" /dht.KeyValue/Get 0801)" OK "KeyValue.Get without a certificate"
expect_eq "$(rawcall_as none "$a1" /grpc.health.v1.Health/Check "")" OK "health without a certificate"
# dht.Admin/Stats is read-only: open like KeyValue.
expect_eq "$(rawcall_as none "$a1" /dht.Admin/Stats "")" OK "Stats without a certificate"
"$CLIENT" --via "$a1" $(tls_ca_args) stats | grep -q '"replicas": 3' ||
    fail "client stats over TLS without a certificate"
log "dht.Replica refused to every caller without the peer role; KeyValue and Admin open"

# ---- --client-cert-auth (node 3, from the environment) ----------------------
kill_node 3 TERM
CLIENT_CERT_AUTH=1 restart_node 3
a3="127.0.0.1:${PORTS[3]}"
expect_eq "$(rawcall_as none "$a3" /dht.KeyValue/Get 0801)" UNAUTHENTICATED "Get without a certificate, --client-cert-auth"
expect_eq "$(rawcall_as none "$a3" /dht.KeyValue/Put 08011003)" UNAUTHENTICATED "Put without a certificate, --client-cert-auth"
expect_eq "$(rawcall_as client "$a3" /dht.KeyValue/Get 0801)" OK "Get with the role-less certificate, --client-cert-auth"
expect_eq "$(rawcall_as client "$a3" /dht.Replica/Write "${hostile[Write]}")" PERMISSION_DENIED "Write with the role-less certificate, --client-cert-auth"
expect_eq "$(rawcall_as none "$a3" /grpc.health.v1.Health/Check "")" OK "health without a certificate, --client-cert-auth"
expect_eq "$(rawcall_as none "$a3" /dht.Admin/Stats "")" UNAUTHENTICATED "Stats without a certificate, --client-cert-auth"
expect_eq "$(rawcall_as client "$a3" /dht.Admin/Stats "")" OK "Stats with the role-less certificate, --client-cert-auth"
expect_eq "$(TLS_CERT=$CERTS/client.crt TLS_KEY=$CERTS/client.key via 3 get 1002)" 22 "get via node 3 with the role-less certificate"
via 3 get 1002 >/dev/null 2>&1 && fail "a client without a certificate read through node 3 (--client-cert-auth)"
grep -q "KeyValue for any certificate of" "$WORK/node3.log" || fail "node 3 did not log --client-cert-auth"
log "--client-cert-auth: KeyValue needs a certificate of the CA"

# ---- nothing changed ---------------------------------------------------------
for i in 1 2 3; do
    expect_eq "$(scan_all "$i")" "${before[$i]}" "node $i's replica after the refused calls"
    # No lock of owner 7 is held: another owner gets key 1 and key 2 at once.
    for lk in 08011008180a 08021008180a; do
        r=$(TLS_CA=$CERTS/ca.crt TLS_CERT=$CERTS/node1.crt TLS_KEY=$CERTS/node1.key \
            "$RAWCALL" "127.0.0.1:${PORTS[$i]}" /dht.Replica/Lock "$lk" 3000 | sed -n 2p)
        case $r in 0801*) ;; *) fail "node $i: key lock not free after the refused calls ($r)" ;; esac
    done
done
expect_eq "$(client get 1)" "$(via 1 get 1)" "fan-out and --via agree on key 1"
[ "$(client get 1)" != 999 ] || fail "a refused Write was applied"
log "no replica changed"

# ---- flags, files, names, the plaintext warning --------------------------------
P=$((PORTS[1] + 50))
srv_err() { # srv_err EXPECTED_RC PATTERN ARGS...
    local rc=$1 pat=$2 out got
    shift 2
    out=$(timeout 10 "$SERVER" --port $P --ip 127.0.0.1 --members 127.0.0.1:$P \
        --data-dir "$WORK/solo" "$@" 2>&1 </dev/null)
    got=$?
    [ $got = "$rc" ] || fail "server $*: exit $got, expected $rc ($out)"
    echo "$out" | grep -q -- "$pat" || fail "server $*: message lacks '$pat': $out"
}
C=$CERTS
echo "not a certificate" >"$WORK/junk.pem"
srv_err 2 "all three of --tls-cert" --tls-cert $C/node1.crt
srv_err 2 "--tls-ca missing" --tls-cert $C/node1.crt --tls-key $C/node1.key
TLS_CA=$C/ca.crt srv_err 2 "--tls-key missing" --tls-cert $C/node1.crt
srv_err 2 "--client-cert-auth needs" --client-cert-auth
CLIENT_CERT_AUTH=yes srv_err 2 "CLIENT_CERT_AUTH" --tls-cert $C/node1.crt --tls-key $C/node1.key --tls-ca $C/ca.crt
srv_err 1 "$WORK/nope.crt" --tls-cert "$WORK/nope.crt" --tls-key $C/node1.key --tls-ca $C/ca.crt
srv_err 1 "$WORK/junk.pem: no PEM certificate" --tls-cert "$WORK/junk.pem" --tls-key $C/node1.key --tls-ca $C/ca.crt
srv_err 1 "$C/node1.crt: no PEM private key" --tls-cert $C/node1.crt --tls-key $C/node1.crt --tls-ca $C/ca.crt
srv_err 1 "$WORK/junk.pem: no PEM certificate" --tls-cert $C/node1.crt --tls-key $C/node1.key --tls-ca "$WORK/junk.pem"
srv_err 1 "refused them: the key is not the certificate's" --tls-cert $C/node1.crt --tls-key $C/node2.key --tls-ca $C/ca.crt
cli_err() { # cli_err EXPECTED_RC PATTERN ARGS...
    local rc=$1 pat=$2 out got
    shift 2
    out=$(timeout 10 "$CLIENT" "$@" 2>&1)
    got=$?
    [ $got = "$rc" ] || fail "client $*: exit $got, expected $rc ($out)"
    echo "$out" | grep -q -- "$pat" || fail "client $*: message lacks '$pat': $out"
}
cli_err 2 "go together" --via "$a1" --tls-ca $C/ca.crt --tls-cert $C/client.crt get 1
cli_err 2 "needs --tls-ca" --via "$a1" --tls-cert $C/client.crt --tls-key $C/client.key get 1
cli_err 2 "peer-role certificate" --servers "$MEMBERS" --tls-ca $C/ca.crt get 1
cli_err 1 "$WORK/nope.crt" --via "$a1" --tls-ca "$WORK/nope.crt" get 1
TLS_CA=$C/ca.crt TLS_CERT=$C/coordinator.crt TLS_KEY=$C/client.key \
    cli_err 1 "refused them" --servers "$MEMBERS" get 1

# Names: a node's certificate must name the host it is dialled by.
"$(dirname "$0")/../../scripts/make-certs.sh" "$WORK/named" localhost >/dev/null || fail "make-certs.sh localhost"
"$SERVER" --port $P --ip 127.0.0.1 --members 127.0.0.1:$P --data-dir "$WORK/solo" \
    --tls-cert "$WORK/named/node1.crt" --tls-key "$WORK/named/node1.key" \
    --tls-ca "$WORK/named/ca.crt" >"$WORK/solo.log" 2>&1 </dev/null &
PIDS[9]=$!
disown $!
# Resolving a name, gRPC's c-ares leaks 10 bytes that LeakSanitizer would
# turn into a failed client in the ASan build; that leak is not ours.
echo "leak:libcares" >"$WORK/lsan.supp"
ok=0
for k in $(seq 1 50); do
    out=$(LSAN_OPTIONS=suppressions=$WORK/lsan.supp "$CLIENT" --via "localhost:$P" \
        --tls-ca "$WORK/named/ca.crt" --deadline-ms 500 health 2>&1)
    case $out in *SERVING*) ok=1; break ;; esac
    sleep 0.1
done
[ $ok = 1 ] || fail "health by the certificate's name (localhost) failed: $out"
out=$("$CLIENT" --via "127.0.0.1:$P" --tls-ca "$WORK/named/ca.crt" --deadline-ms 1000 health 2>&1) &&
    fail "a certificate for localhost was accepted for 127.0.0.1: $out"
grep -q PLAINTEXT "$WORK/solo.log" && fail "a TLS node warned that it serves plaintext"
kill_node 9 TERM
rm -rf "$WORK/solo"
"$SERVER" --port $P --ip 127.0.0.1 --members 127.0.0.1:$P --data-dir "$WORK/solo" \
    >"$WORK/plain.log" 2>&1 </dev/null &
PIDS[9]=$!
disown $!
for k in $(seq 1 50); do
    grep -q "serving on" "$WORK/plain.log" && break
    sleep 0.1
done
kill_node 9 TERM
expect_eq "$(grep -c PLAINTEXT "$WORK/plain.log")" 1 "plaintext warnings of a node without TLS"
for i in 1 2 3; do kill -0 "${PIDS[$i]}" || fail "node $i died"; done
log "PASS tls auth"
