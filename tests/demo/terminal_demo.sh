#!/usr/bin/env bash
# The exam's terminal demo, typed into real terminals (tmux panes running an
# interactive bash, as a user would):
#
#   1. in three terminals the user types `server`: each asks "Port: "; we
#      answer "abc" first (it must ask again), then the port;
#   2. in two more terminals the user types `client` (no command: random
#      mode at a readable pace): both print put/get lines;
#   3. Ctrl+C in one server's terminal: it stops cleanly (exit status 0),
#      the clients print "warning: server ... is not answering; carrying on
#      with the live ones" and keep printing successful operations;
#   4. Ctrl+C in one client's terminal: it prints its summary and exits 0;
#      the servers carry on (health SERVING, `client put`/`client get`
#      work, the other client goes on);
#   5. `server` again in the stopped server's terminal: the client prints
#      "notice: server ... answers again"; then Ctrl+C stops everything.
#
# Pass 1 runs on three free ports: each terminal first types
# `export MEMBERS=...` (a CI machine may already use 50001-50003).  Pass 2
# types nothing but `server` and `client` (members default to
# 127.0.0.1:50001-50003) when those ports are free, and is skipped otherwise.
#
# Usage: tests/demo/terminal_demo.sh BIN_DIR
# Exit: 0 pass, 1 fail, 77 skipped (no tmux and it cannot be installed).
set -uo pipefail
export LC_ALL=C

bin=${1:-}
[ -n "$bin" ] || { echo "usage: $0 BIN_DIR" >&2; exit 2; }
bin=$(cd "$bin" && pwd) || exit 2
for b in server client; do
    [ -x "$bin/$b" ] || { echo "terminal_demo: $bin/$b is missing" >&2; exit 2; }
done

if ! command -v tmux >/dev/null 2>&1; then
    if [ "$(id -u 2>/dev/null)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "terminal_demo: installing tmux" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq tmux >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq tmux >/dev/null 2>&1; }
    fi
    command -v tmux >/dev/null 2>&1 || { echo "terminal_demo: SKIP: tmux is not available" >&2; exit 77; }
fi

# Private tmux servers (own socket, no configuration file): the test never
# touches a user's tmux sessions.
sock_base=kvdemo-$$
sock=$sock_base-0
npass=0
tm() { tmux -L "$sock" -f /dev/null "$@"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/terminal_demo.XXXXXX")
cleanup() {
    local s
    for ((s = 0; s <= npass; s++)); do
        tmux -L "$sock_base-$s" -f /dev/null kill-server >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

failures=0
pass_name=""
log() { printf '[%s] %s\n' "$pass_name" "$*"; }
fail() {
    log "FAIL: $*"
    failures=$((failures + 1))
    return 1
}

# ---- reading and typing into terminals -------------------------------------
pane() { tm capture-pane -p -J -S - -t "demo:$1" 2>/dev/null; }
count() { pane "$1" | grep -Ec -- "$2"; }
# Until at least N lines of window W match the extended regex RE; the
# timeout is in tenths of a second.
wait_count() { # W RE N [TIMEOUT_DS]
    local i
    for ((i = 0; i < ${4:-100}; i++)); do
        [ "$(count "$1" "$2")" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
wait_for() { wait_count "$1" "$2" 1 "${3:-100}"; } # W RE [TIMEOUT_DS]
type_line() { # W TEXT: type TEXT and Enter
    tm send-keys -t "demo:$1" -l "$2"
    tm send-keys -t "demo:$1" Enter
}
dump() { # W: show a terminal when something went wrong
    echo "----- terminal $1 -----"
    pane "$1" | grep -v '^$' | tail -n 30
    echo "-----------------------"
}
# A terminal with an interactive bash whose prompt is "$ ", with the
# binaries on PATH, nothing of ours (IP, PORT, MEMBERS) in its environment,
# in a fresh directory of this pass (the servers keep their data in
# data/nodeN under it).
open_terminal() { # W
    tm new-window -d -n "$1" -t demo -c "$cwd" \
        "exec env -u IP -u PORT -u MEMBERS PATH='$bin':\"\$PATH\" PS1='\$ ' HISTFILE=/dev/null bash --norc --noprofile -i"
    wait_for "$1" '^\$ ?$' 50 || { fail "terminal $1 shows no shell prompt"; dump "$1"; return 1; }
}
# After the program in W ended: its exit status, from the shell.
exit_status() { # W
    local n
    n=$(count "$1" '^exit status [0-9]+$')
    type_line "$1" 'echo "exit status $?"'
    wait_count "$1" '^exit status [0-9]+$' $((n + 1)) 30 || { echo "?"; return; }
    pane "$1" | grep -E '^exit status [0-9]+$' | tail -n 1 | awk '{print $3}'
}
prompt_back() { # W: the shell prompt is back (the program ended)
    # the last non-empty line of the terminal is a bare prompt
    local i
    for ((i = 0; i < ${2:-50}; i++)); do
        pane "$1" | grep -v '^$' | tail -n 1 | grep -Eq '^\$ ?$' && return 0
        sleep 0.1
    done
    return 1
}

port_busy() {
    ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$" && return 0
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
free_base() { # three consecutive free ports, away from the defaults
    local tries base p ok
    for ((tries = 0; tries < 50; tries++)); do
        base=$((20000 + (RANDOM % 1000) * 30 + ($$ % 7) * 3))
        ok=1
        for p in $base $((base + 1)) $((base + 2)); do port_busy "$p" && ok=0; done
        [ $ok = 1 ] && { echo "$base"; return 0; }
    done
    return 1
}

op_re='\[client [0-9]+\] (put\([0-9-]+, [0-9-]+\) -> (true|false)|get\([0-9-]+\) -> -?[0-9]+) \('
ok_op_re='\[client [0-9]+\] (put\([0-9-]+, [0-9-]+\) -> true|get\([0-9-]+\) -> -?[0-9]+) \('

# ---- one run of the demo ------------------------------------------------------
run_demo() { # NAME BASE_PORT MEMBERS_OR_EMPTY
    pass_name=$1
    local base=$2 members=$3 i w st
    local ports=("$base" $((base + 1)) $((base + 2)))
    local before=$failures
    if [ -n "$members" ]; then
        log "ports ${ports[*]}; each terminal first types: export MEMBERS=$members"
    else
        log "ports ${ports[*]}; nothing but 'server' and 'client' is typed (defaults)"
    fi

    npass=$((npass + 1))
    sock=$sock_base-$npass
    cwd=$work/pass$npass
    mkdir -p "$cwd"
    # Wide terminals so that no line wraps.
    tm new-session -d -s demo -n idle -x 220 -y 50 "cat" || { fail "tmux cannot start"; return; }
    tm set-option -g history-limit 20000 >/dev/null
    for w in s1 s2 s3 c1 c2; do
        open_terminal "$w" || return
        [ -z "$members" ] || type_line "$w" "export MEMBERS=$members"
    done

    # 1. servers ask for their port
    for i in 1 2 3; do
        w=s$i
        type_line "$w" server
        wait_for "$w" '^Port: ?$' 50 || { fail "server $i did not ask 'Port: '"; dump "$w"; return; }
        type_line "$w" abc
        wait_for "$w" "^'abc' is not a port number" 30 ||
            { fail "server $i did not reject the bad port 'abc'"; dump "$w"; return; }
        wait_count "$w" '^Port:( |$)' 2 30 ||
            { fail "server $i did not ask 'Port: ' again after a bad port"; dump "$w"; return; }
        type_line "$w" "${ports[i - 1]}"
    done
    for i in 1 2 3; do
        wait_for "s$i" "\[node $i\] .*serving on .*:${ports[i - 1]} as member $i of 3" 50 ||
            { fail "server $i is not serving on port ${ports[i - 1]}"; dump "s$i"; return; }
    done
    log "ok: 3 servers asked 'Port: ', asked again after 'abc', serve on ${ports[*]}"

    # 2. two clients with no command
    for i in 1 2; do type_line "c$i" client; done
    for i in 1 2; do
        wait_for "c$i" '\] put\(' 100 && wait_for "c$i" '\] get\(' 100 ||
            { fail "client $i prints no put and get lines"; dump "c$i"; return; }
    done
    log "ok: 2 clients print put/get lines ($(count c1 "$op_re") and $(count c2 "$op_re") so far)"

    # 3. Ctrl+C in server 2's terminal
    tm send-keys -t demo:s2 C-c
    wait_for s2 '\[node 2\] .*SIGINT received' 30 && prompt_back s2 ||
        { fail "server 2 did not stop on Ctrl+C"; dump s2; return; }
    st=$(exit_status s2)
    [ "$st" = 0 ] || fail "server 2 exited with status $st on Ctrl+C"
    wait_for s2 '\[node 2\] .*stopped' 10 || fail "server 2 did not log 'stopped'"
    local warn="warning: server 127.0.0.1:${ports[1]} is not answering; carrying on with the live ones"
    local warned=()
    for i in 1 2; do wait_for "c$i" "$warn" 60 && warned+=("$i"); done
    [ ${#warned[@]} -gt 0 ] || { fail "no client printed: $warn"; dump c1; dump c2; return; }
    log "ok: Ctrl+C stopped server 2 (exit status $st); client(s) ${warned[*]} printed the warning"
    local n t bad
    for i in "${warned[@]}"; do
        # operations printed after the warning: at least 3, all successful
        for ((t = 0; t < 80; t++)); do
            n=$(pane "c$i" | sed -n '/not answering; carrying on/,$p' | grep -Ec -- "$ok_op_re")
            [ "$n" -ge 3 ] && break
            sleep 0.1
        done
        [ "$n" -ge 3 ] ||
            { fail "client $i printed only $n successful operations after the warning"; dump "c$i"; return; }
        bad=$(pane "c$i" | sed -n '/not answering; carrying on/,$p' | grep -E '\] (put|get)\(' | grep -Evc -- "$ok_op_re")
        [ "$bad" -eq 0 ] || fail "client $i had $bad failed operations with one server down"
    done
    log "ok: the clients carry on with the live servers (every operation after the warning succeeds)"

    # 4. Ctrl+C in client 1's terminal
    local c2_before
    c2_before=$(count c2 "$op_re")
    tm send-keys -t demo:c1 C-c
    wait_for c1 'summary: ops=[0-9]+' 50 && prompt_back c1 ||
        { fail "client 1 did not stop with a summary on Ctrl+C"; dump c1; return; }
    st=$(exit_status c1)
    [ "$st" = 0 ] || fail "client 1 exited with status $st on Ctrl+C"
    log "ok: Ctrl+C stopped client 1 (exit status $st): $(pane c1 | grep -Eo 'summary: ops=[0-9]+ errors=[0-9]+' | tail -n 1)"
    for i in 1 3; do
        "$bin/client" --via "127.0.0.1:${ports[i - 1]}" --deadline-ms 1000 health >/dev/null 2>&1 ||
            fail "server $i is not SERVING after client 1 stopped"
        # still running (no prompt back), printed no error
        ! pane "s$i" | grep -v '^$' | tail -n 1 | grep -Eq '^\$ ?$' || fail "server $i exited"
        ! pane "s$i" | grep -Eq '\[node [0-9]\] ERROR|^server: ' || fail "server $i printed an error"
    done
    local got cenv=(env -u IP -u PORT -u MEMBERS)
    [ -z "$members" ] || cenv+=("MEMBERS=$members")
    # (the one-shot clients warn on stderr that server 2 is not answering)
    if got=$("${cenv[@]}" "$bin/client" put 424242 7 2>"$work/err") && [ "$got" = true ] &&
        got=$("${cenv[@]}" "$bin/client" get 424242 2>"$work/err") && [ "$got" = 7 ]; then
        :
    else
        fail "'client put 424242 7; client get 424242' with servers 1 and 3 up: '$got' $(cat "$work/err")"
    fi
    for ((t = 0; t < 40; t++)); do
        [ "$(count c2 "$op_re")" -ge $((c2_before + 2)) ] && break
        sleep 0.1
    done
    [ "$(count c2 "$op_re")" -ge $((c2_before + 2)) ] || fail "client 2 stopped printing operations"
    log "ok: servers 1 and 3 carry on (health SERVING, client put/get work, client 2 goes on)"

    # 5. server 2 again, in its terminal
    type_line s2 server
    if wait_count s2 '^Port:( |$)' 3 50; then
        type_line s2 "${ports[1]}"
        wait_count s2 "\[node 2\] .*serving on" 2 50 || fail "restarted server 2 is not serving"
        wait_for c2 "notice: server 127.0.0.1:${ports[1]} answers again" 60 ||
            fail "client 2 did not print that server 2 answers again"
        log "ok: server 2 restarted; client 2 printed 'notice: server 127.0.0.1:${ports[1]} answers again'"
    else
        fail "restarted server 2 did not ask 'Port: '"
    fi

    # end of the demo: Ctrl+C in every terminal still running something
    for w in c2 s1 s2 s3; do tm send-keys -t "demo:$w" C-c; done
    wait_for c2 'summary: ops=' 50 || fail "client 2 printed no summary on Ctrl+C"
    for w in c2 s1 s2 s3; do
        if prompt_back "$w"; then
            st=$(exit_status "$w")
            [ "$st" = 0 ] || fail "$w exited with status $st on Ctrl+C"
        else
            fail "$w did not stop on Ctrl+C"
        fi
    done
    if [ "$failures" -ne "$before" ]; then
        for w in s1 s2 s3 c1 c2; do dump "$w"; done
    else
        log "PASS"
    fi
    tm kill-server >/dev/null 2>&1
}

start=$SECONDS
base=$(free_base) || { echo "terminal_demo: no three free ports" >&2; exit 1; }
run_demo "MEMBERS on free ports" "$base" "127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"

if port_busy 50001 || port_busy 50002 || port_busy 50003; then
    pass_name="defaults"
    log "skipped: ports 50001-50003 are in use on this machine"
else
    run_demo "defaults" 50001 ""
fi

echo "terminal_demo: $([ $failures -eq 0 ] && echo PASS || echo "FAIL ($failures)") in $((SECONDS - start)) s"
[ $failures -eq 0 ]
