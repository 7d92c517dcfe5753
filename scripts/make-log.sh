#!/usr/bin/env bash
# Regenerates logs/log.txt: one real, checked execution of the store.
#
#   three servers on 127.0.0.1, three random clients (two fan out to every
#   replica themselves, one goes through node 1's public KeyValue service),
#   node 2 killed with kill -9 mid-run and restarted later, then two checks:
#     1. lincheck on the three recorded histories (linearizable?)
#     2. every key read through each node (client --via) gives one answer
#   All server, client and script lines are merged into one file, sorted by
#   their timestamp; each line names its writer ([node N], [client PID],
#   [make-log]).  Exit status 0 only when every check passed.
#
# Usage: scripts/make-log.sh [options]
#   --out FILE        where to write the log (default logs/log.txt)
#   --bin DIR         use the server/client/lincheck binaries in DIR
#                     (default: build them into build/ with CMake)
#   --base-port P     ports P, P+1, P+2 (default 50001; when any of those is
#                     busy and --base-port was not given, free ones are picked)
#   --signal SIG      how node 2 is stopped: KILL (default, a crash) or INT
#                     (Ctrl+C, as in the exam demo)
#   --duration S      how long the clients run (default 20)
#   --interval-ms MS  pause between one client's operations (default 250)
#   --keys N          keys 0..N-1 (default 12)
#   --keep            keep the working directory (each process's output, the
#                     histories, the data directories)
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/logs/log.txt
bin=""
base_port=""
kill_sig=KILL
duration=20
interval_ms=250
keys=12
keep=0

die() { echo "make-log: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=${2:?--out needs a file}; shift 2 ;;
        --bin) bin=${2:?--bin needs a directory}; shift 2 ;;
        --base-port) base_port=${2:?--base-port needs a port}; shift 2 ;;
        --signal) kill_sig=${2:?--signal needs KILL or INT}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --interval-ms) interval_ms=${2:?}; shift 2 ;;
        --keys) keys=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
case $kill_sig in KILL|INT) ;; *) die "--signal must be KILL or INT" ;; esac
for v in duration interval_ms keys; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v//_/-} must be a positive integer"
done
[ "$duration" -ge 5 ] && [ "$duration" -le 40 ] || die "--duration must be 5..40 (the run stays short)"

# ---- binaries ---------------------------------------------------------------
if [ -z "$bin" ]; then
    echo "make-log: building server, client and lincheck into $repo/build" >&2
    cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$repo/build" -j"$(nproc)" --target server client lincheck >/dev/null
    bin=$repo/build/bin
fi
bin=$(cd "$bin" && pwd)
for b in server client lincheck; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing (build it, or pass --bin DIR)"
done

# ---- ports --------------------------------------------------------------------
port_busy() { # something listens on 127.0.0.1:$1 or any address:$1
    ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$" && return 0
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
block_free() { local p; for p in "$1" $(($1 + 1)) $(($1 + 2)); do ! port_busy "$p" || return 1; done; }
if [ -n "$base_port" ]; then
    [[ $base_port =~ ^[0-9]+$ ]] && [ "$base_port" -ge 1024 ] && [ "$base_port" -le 65533 ] ||
        die "--base-port must be 1024..65533"
    block_free "$base_port" || die "one of ports $base_port..$((base_port + 2)) is busy"
else
    base_port=50001
    tries=0
    while ! block_free "$base_port"; do
        tries=$((tries + 1))
        [ $tries -le 50 ] || die "no three free ports found"
        base_port=$((20000 + (RANDOM % 1000) * 30))
    done
fi
ports=("$base_port" $((base_port + 1)) $((base_port + 2)))
members=127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}

# ---- working directory, line stamping -----------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/make-log.XXXXXX")
mkdir -p "$work/fifo"

# Timestamp in the servers' and clients' own format: 2026-01-02T03:04:05.678Z
now() {
    local t=$EPOCHREALTIME
    local us=${t#*.}
    TZ=UTC0 printf -v _now '%(%Y-%m-%dT%H:%M:%S)T.%sZ' "${t%.*}" "${us:0:3}"
}
say() { # one line written by this script, to its own log and the terminal
    local msg=$*
    msg=${msg//$'\n'/ | }
    now
    printf '%s [make-log] %s\n' "$_now" "$msg" >>"$work/make-log.log"
    printf '%s [make-log] %s\n' "$_now" "$msg" >&2
}

# Copies a process's output to FILE.  Lines that carry no timestamp (the
# client's summary, error messages) get the time they were read and the
# writer: the last "[writer]" seen on this stream, or the contents of
# PIDFILE ("client PID"), or FALLBACK.
stamp() { # FILE FALLBACK [PIDFILE]
    local file=$1 writer="" fallback=$2 pidfile=${3:-} line re='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]* \[([^]]+)\]'
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ $re ]]; then
            writer=${BASH_REMATCH[1]}
            printf '%s\n' "$line"
        else
            if [ -z "$writer" ]; then
                writer=$fallback
                [ "$fallback" = client ] && [ -s "$pidfile" ] && writer="client $(cat "$pidfile")"
            fi
            now
            printf '%s [%s] %s\n' "$_now" "$writer" "$line"
        fi
    done >>"$file"
}

# Starts CMD with stdout and stderr through stamp() into $work/NAME.log.
# Sets $started (the command's pid) and $stamper (the stamper's pid).
fifo_n=0
start() { # NAME FALLBACK CMD...
    local name=$1 fallback=$2
    shift 2
    fifo_n=$((fifo_n + 1))
    local f=$work/fifo/$fifo_n
    mkfifo "$f"
    stamp "$work/$name.log" "$fallback" "$work/$name.pid" <"$f" &
    stamper=$!
    "$@" >"$f" 2>&1 </dev/null &
    started=$!
    echo "$started" >"$work/$name.pid"
}

server_pid=()
server_stamper=()
stampers=()
data_flags=()
data_note=""
if "$bin/server" --help 2>&1 | grep -q -- '--data-dir'; then
    data_note=" (write-ahead log in a data directory per node)"
fi
start_server() { # I (1..3)
    local i=$1
    local flags=(--ip 127.0.0.1 --port "${ports[i - 1]}" --members "$members")
    if [ -n "$data_note" ]; then
        mkdir -p "$work/data$i"
        flags+=(--data-dir "$work/data$i")
    fi
    start "node$i" "node $i" "$bin/server" "${flags[@]}"
    server_pid[i]=$started
    stampers+=("$stamper")
}
wait_healthy() { # I
    local i=$1 t
    for t in $(seq 1 50); do
        "$bin/client" --via "127.0.0.1:${ports[i - 1]}" --deadline-ms 200 health >/dev/null 2>&1 && return 0
        kill -0 "${server_pid[i]}" 2>/dev/null || break
        sleep 0.1
    done
    say "FAIL: node $i did not come up; its output:"
    cat "$work/node$i.log" >&2
    return 1
}

# Waits for PID at most SECS seconds; kills it (and returns 124) after that.
wait_bounded() { # PID SECS
    local pid=$1 i rc=0
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 124
    fi
    wait "$pid" || rc=$?
    return $rc
}

client_pid=()
cleanup() {
    local p
    for p in "${client_pid[@]}" "${server_pid[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$keep" = 1 ]; then
        echo "make-log: working files kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the run --------------------------------------------------------------------
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev+local changes"
say "regenerating this log: scripts/make-log.sh (commit $rev)"
say "3 servers on 127.0.0.1, members $members$data_note"
for i in 1 2 3; do start_server "$i"; done
for i in 1 2 3; do wait_healthy "$i"; done
say "all 3 servers answer grpc.health.v1.Health/Check with SERVING"

t0=$SECONDS
common=(random --keys "$keys" --interval-ms "$interval_ms" --duration "$duration" --deadline-ms 2000)
for c in 1 2 3; do
    if [ $c -lt 3 ]; then
        start "client$c" client "$bin/client" --servers "$members" "${common[@]}" \
            --seed "$c" --history "$work/history$c.jsonl"
        say "client $started: random load, fans out to every replica itself (seed $c)"
    else
        start "client$c" client "$bin/client" --via "127.0.0.1:${ports[0]}" "${common[@]}" \
            --seed "$c" --history "$work/history$c.jsonl"
        say "client $started: random load through node 1's public KeyValue service (seed $c)"
    fi
    client_pid[c]=$started
    stampers+=("$stamper")
done
say "clients: keys 0..$((keys - 1)), one operation every $interval_ms ms each, for $duration s"

kill_at=$((duration * 3 / 10))
restart_at=$((duration * 65 / 100))
sleep "$kill_at"
victim=${server_pid[2]}
if [ "$kill_sig" = KILL ]; then
    say "kill -9 node 2 (pid $victim): it crashes without a word"
else
    say "kill -INT node 2 (pid $victim), as Ctrl+C in its terminal"
fi
kill "-$kill_sig" "$victim"
wait_bounded "$victim" 10 || true
sleep $((restart_at - kill_at))
say "restarting node 2 on port ${ports[1]}"
start_server 2
wait_healthy 2
say "node 2 (pid ${server_pid[2]}) answers again"

fail=0
for c in 1 2 3; do
    rc=0
    wait_bounded "${client_pid[c]}" 15 || rc=$?
    if [ $rc -eq 124 ]; then
        say "FAIL: client $c (pid ${client_pid[c]}) was still running 15 s after its end: killed"
        fail=1
    elif [ $rc -ne 0 ]; then
        say "FAIL: client $c (pid ${client_pid[c]}) exited with status $rc"
        fail=1
    fi
done
client_pid=()
say "clients done after $((SECONDS - t0)) s"

# ---- checks --------------------------------------------------------------------
lin_rc=0
lin_out=$("$bin/lincheck" --quiet "$work"/history{1,2,3}.jsonl 2>&1) || lin_rc=$?
lin_line=$(printf '%s\n' "$lin_out" | head -n 1)
if [ $lin_rc -eq 0 ]; then
    say "check 1: lincheck of the 3 clients' histories: $lin_line"
else
    say "check 1 FAILED (lincheck exit $lin_rc): $lin_line"
    printf '%s\n' "$lin_out" | tail -n +2 | while IFS= read -r l; do say "  $l"; done
    fail=1
fi

agree=0
disagree=0
unreadable=0
for k in $(seq 0 $((keys - 1))); do
    vals=()
    for i in 1 2 3; do
        # --log-level debug: a failed call says why (gRPC status and details)
        if ! v=$("$bin/client" --via "127.0.0.1:${ports[i - 1]}" --deadline-ms 2000 --log-level debug \
            get "$k" 2>"$work/get.err"); then
            v="error: $(grep -E 'failed|client:' "$work/get.err" | sed -E 's/^[0-9TZ:.-]+ \[[^]]*\] //' | paste -sd '|' -)"
        fi
        vals[i]=$v
    done
    if [ "${vals[1]}" = "${vals[2]}" ] && [ "${vals[2]}" = "${vals[3]}" ] && [[ ${vals[1]} =~ ^-?[0-9]+$ ]]; then
        agree=$((agree + 1))
        say "check 2: get($k) = ${vals[1]} through node 1, node 2 and node 3"
    else
        if [[ ${vals[1]} =~ ^-?[0-9]+$ && ${vals[2]} =~ ^-?[0-9]+$ && ${vals[3]} =~ ^-?[0-9]+$ ]]; then
            disagree=$((disagree + 1))
        else
            unreadable=$((unreadable + 1))
        fi
        say "check 2 FAILED: get($k): node 1 says '${vals[1]}', node 2 '${vals[2]}', node 3 '${vals[3]}'"
    fi
done

# Informational, not a check: what each replica holds itself (client
# replica-read, which bypasses the protocol).  A quorum system does not need
# every replica to hold every write: a node that was down misses the writes
# of that time until it catches up (a read's write-back, or the servers' own
# catch-up when they have it).
replica_read() { # PORT KEY -> sets r_ver ("counter.writer") or returns 1
    local out
    out=$("$bin/client" --via "127.0.0.1:$1" --deadline-ms 2000 replica-read "$2" 2>/dev/null) || return 1
    set -- $out
    [ $# -eq 3 ] || return 1
    r_ver=$2.$3
}
if "$bin/client" --help 2>&1 | grep -q replica-read; then
    newest=(0 0 0 0)
    for k in $(seq 0 $((keys - 1))); do
        best="" best_c=0 best_w=0
        declare -A ver=()
        for i in 1 2 3; do
            if replica_read "${ports[i - 1]}" "$k"; then
                ver[$i]=$r_ver
                # (counter, writer) compared lexicographically as unsigned 64-bit
                # numbers: flipping the sign bit makes bash's signed compare do it.
                c=$((${r_ver%.*} ^ (1 << 63))) w=$((${r_ver#*.} ^ (1 << 63)))
                if [ -z "$best" ] || [ "$c" -gt "$best_c" ] || { [ "$c" -eq "$best_c" ] && [ "$w" -gt "$best_w" ]; }; then
                    best=$r_ver best_c=$c best_w=$w
                fi
            fi
        done
        for i in 1 2 3; do
            [ -n "$best" ] && [ "${ver[$i]:-}" = "$best" ] && newest[i]=$((newest[i] + 1))
        done
        unset ver
    done
    say "replica state (informational): node 1 holds the newest version of ${newest[1]} of $keys keys, node 2 of ${newest[2]}, node 3 of ${newest[3]}"
fi

say "stopping the servers with SIGINT"
for i in 1 2 3; do kill -INT "${server_pid[i]}" 2>/dev/null || true; done
for i in 1 2 3; do
    rc=0
    wait_bounded "${server_pid[i]}" 10 || rc=$?
    if [ $rc -ne 0 ]; then
        say "FAIL: node $i exited with status $rc on SIGINT (124: did not stop within 10 s)"
        fail=1
    fi
done
server_pid=()
# Every writer is gone: the stampers see end of file and finish.
for p in "${stampers[@]}"; do wait "$p" 2>/dev/null || true; done

if [ $lin_rc -eq 0 ]; then
    say "$lin_line"
fi
if [ $disagree -eq 0 ] && [ $unreadable -eq 0 ]; then
    say "all 3 nodes agree on $agree keys"
else
    [ $disagree -eq 0 ] || say "nodes DISAGREE on $disagree of $keys keys"
    [ $unreadable -eq 0 ] || say "$unreadable of $keys keys could not be read through every node (see check 2)"
    fail=1
fi
if [ $fail -eq 0 ]; then say "PASS"; else say "FAIL"; fi

# ---- merge ---------------------------------------------------------------------
# A stable sort on the timestamp keeps each writer's lines in the order it
# wrote them when two share a millisecond.
mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
cat "$work/make-log.log" "$work"/node*.log "$work"/client*.log | sort -s -k1,1 >"$tmp"
mv "$tmp" "$out"
lines=$(wc -l <"$out")
echo "make-log: wrote $out ($lines lines)" >&2
exit $fail
