#!/usr/bin/env bash
# Container entrypoint of one replica: runs `server` configured only by the
# environment, the way the Docker deployment (and tests/harness/harness.sh,
# which starts every node through this script) configures it.
#
# Required:
#   IP        this host's address on the cluster network (the server listens
#             on it and finds itself in MEMBERS by IP:PORT)
#   PORT      port of the server, the same on every host (1-65535)
#   MEMBERS   HOST:PORT,... of every replica, this one included; with JOIN=1,
#             at least one current member (this node need not be listed).
#             Once a node has started, its data directory records the
#             configuration it knows and MEMBERS is only a seed
# Optional:
#   JOIN        1: wait to be added to a running cluster (--join; empty
#               DATA_DIR), then `client --servers MEMBERS members add IP:PORT`
#   REPLICAS    members that store each key (--replicas), 1..number of
#               MEMBERS; default min(3, that number).  The same on every node
#   ID          1-based index of this node in MEMBERS (--id), for when MEMBERS
#               names hosts rather than the addresses the nodes listen on
#   DATA_DIR    directory of the write-ahead log (--data-dir; created if missing)
#   FSYNC       always|batch|never (--fsync)
#   LOG_LEVEL   error|warn|info|debug (--log-level)
#   TLS_CERT, TLS_KEY, TLS_CA
#               this member's certificate, its key and the cluster CA (PEM
#               files; --tls-cert/--tls-key/--tls-ca): all three or none
#   CLIENT_CERT_AUTH  1: KeyValue callers need a certificate too (needs TLS)
#   SERVER_BIN  the server binary (default: `server` on PATH)
# Arguments given to this script are passed on to the server after the
# options above (e.g. --deadline-ms 1000).
#
# The script `exec`s the server, so the server gets the container's PID and
# every signal (SIGTERM from `docker stop`, SIGKILL, SIGSTOP...) directly.
# Exit status 64 (EX_USAGE) on a configuration error, with the reason on
# stderr; otherwise whatever the server returns.
set -euo pipefail

die() {
    echo "entrypoint: $*" >&2
    exit 64
}

SERVER_BIN=${SERVER_BIN:-server}
if [[ $SERVER_BIN == */* ]]; then
    [[ -x $SERVER_BIN ]] || die "SERVER_BIN=$SERVER_BIN is not an executable file"
else
    command -v "$SERVER_BIN" >/dev/null 2>&1 ||
        die "no '$SERVER_BIN' on PATH ($PATH); set SERVER_BIN to the server binary"
fi

[[ -n ${IP:-} ]] || die "IP is not set: the address of this host on the cluster network, e.g. IP=10.0.0.2"
[[ -n ${PORT:-} ]] || die "PORT is not set: the server port, the same on every host, e.g. PORT=50051"
[[ -n ${MEMBERS:-} ]] ||
    die "MEMBERS is not set: HOST:PORT of every replica, e.g. MEMBERS=10.0.0.2:50051,10.0.0.3:50051,10.0.0.4:50051"

[[ $PORT =~ ^[0-9]+$ ]] && ((10#$PORT >= 1 && 10#$PORT <= 65535)) ||
    die "PORT='$PORT' is not a port number (1-65535)"
[[ $IP =~ ^[^[:space:],]+$ ]] || die "IP='$IP' is not an address"

IFS=, read -r -a members <<<"$MEMBERS"
((${#members[@]} >= 1)) || die "MEMBERS='$MEMBERS' lists no replica"
self=0
for m in "${members[@]}"; do
    [[ $m =~ ^.+:[0-9]+$ ]] || die "MEMBERS entry '$m' is not HOST:PORT (MEMBERS='$MEMBERS')"
    [[ $m == "$IP:$PORT" || $m == "[$IP]:$PORT" ]] && self=1
done
[[ -z ${JOIN:-} || $JOIN == 0 || $JOIN == 1 ]] || die "JOIN='$JOIN' must be 1 or 0"
join=0
[[ ${JOIN:-0} == 1 ]] && join=1
if [[ -n ${ID:-} ]]; then
    [[ $ID =~ ^[0-9]+$ ]] && ((10#$ID >= 1 && 10#$ID <= ${#members[@]})) ||
        die "ID='$ID' must be a member index 1..${#members[@]}"
elif ((self == 0 && join == 0)) && [[ ! -f ${DATA_DIR:-/nonexistent}/config ]]; then
    # (a node added later restarts on its recorded configuration: it is
    # fine that MEMBERS, the seeds, does not name it)
    die "this host ($IP:$PORT) is not in MEMBERS='$MEMBERS'; fix IP/PORT/MEMBERS, set ID, or set JOIN=1 to add it to a running cluster"
fi

if [[ -n ${REPLICAS:-} ]]; then
    rmax=${#members[@]}
    ((join)) && rmax=128 # a joining node takes R from the cluster
    [[ $REPLICAS =~ ^[0-9]+$ ]] && ((10#$REPLICAS >= 1 && 10#$REPLICAS <= rmax)) ||
        die "REPLICAS='$REPLICAS' must be a number of replicas per key, 1..$rmax (the members in MEMBERS)"
fi

args=(--ip "$IP" --port "$PORT" --members "$MEMBERS")
[[ -n ${ID:-} ]] && args+=(--id "$ID")
if ((join)); then
    help0=$("$SERVER_BIN" --help 2>&1 || true)
    [[ $help0 == *--join* ]] || die "JOIN=1 is set but $SERVER_BIN has no --join option"
    args+=(--join)
fi

# Optional features: refuse clearly rather than let the server print usage.
help=$("$SERVER_BIN" --help 2>&1 || true)
if [[ -n ${DATA_DIR:-} ]]; then
    [[ $help == *--data-dir* ]] || die "DATA_DIR is set but $SERVER_BIN has no --data-dir option"
    mkdir -p -- "$DATA_DIR" || die "cannot create DATA_DIR=$DATA_DIR"
    args+=(--data-dir "$DATA_DIR")
fi
if [[ -n ${REPLICAS:-} ]]; then
    [[ $help == *--replicas* ]] || die "REPLICAS is set but $SERVER_BIN has no --replicas option"
    args+=(--replicas "$((10#$REPLICAS))")
fi
if [[ -n ${FSYNC:-} ]]; then
    [[ $FSYNC == always || $FSYNC == batch || $FSYNC == never ]] ||
        die "FSYNC='$FSYNC' must be always, batch or never"
    [[ $help == *--fsync* ]] || die "FSYNC is set but $SERVER_BIN has no --fsync option"
    args+=(--fsync "$FSYNC")
fi
if [[ -n ${LOG_LEVEL:-} ]]; then
    [[ $LOG_LEVEL =~ ^(error|warn|info|debug)$ ]] ||
        die "LOG_LEVEL='$LOG_LEVEL' must be error, warn, info or debug"
    args+=(--log-level "$LOG_LEVEL")
fi
# Half a TLS configuration would otherwise be a usage error of the server;
# saying which variable is missing, and whether a mounted file is readable
# by this (unprivileged) user, points at the compose file, not at the flags.
tls_set=() tls_unset=()
for v in TLS_CERT TLS_KEY TLS_CA; do
    if [[ -n ${!v:-} ]]; then tls_set+=("$v"); else tls_unset+=("$v"); fi
done
if ((${#tls_set[@]})); then
    ((${#tls_unset[@]} == 0)) ||
        die "TLS needs all three of TLS_CERT, TLS_KEY and TLS_CA, or none: ${tls_set[*]} set, ${tls_unset[*]} not"
    [[ $help == *--tls-cert* ]] || die "TLS_CERT/TLS_KEY/TLS_CA are set but $SERVER_BIN has no --tls-cert option"
    for v in TLS_CERT TLS_KEY TLS_CA; do
        [[ -f ${!v} ]] || die "$v=${!v} is not a file (is the certificates directory mounted?)"
        [[ -r ${!v} ]] || die "$v=${!v} is not readable by uid $(id -u) (make-certs.sh writes keys mode 600: chown them to this uid)"
    done
    args+=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" --tls-ca "$TLS_CA")
fi
if [[ -n ${CLIENT_CERT_AUTH:-} ]]; then
    [[ $CLIENT_CERT_AUTH == 0 || $CLIENT_CERT_AUTH == 1 ]] || die "CLIENT_CERT_AUTH='$CLIENT_CERT_AUTH' must be 1 or 0"
    if [[ $CLIENT_CERT_AUTH == 1 ]]; then
        ((${#tls_set[@]})) || die "CLIENT_CERT_AUTH=1 needs TLS_CERT, TLS_KEY and TLS_CA"
        args+=(--client-cert-auth)
    fi
fi

# The server reads IP/PORT/MEMBERS/REPLICAS and TLS_* itself too; the flags just make
# the command line in `ps` and in the logs self-explanatory.
exec "$SERVER_BIN" "${args[@]}" "$@"
