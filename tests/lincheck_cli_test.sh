#!/bin/sh
# CLI test for the lincheck tool.
# usage: lincheck_cli_test.sh PATH_TO_LINCHECK FIXTURES_DIR
# Checks exit codes (0 linearizable, 1 violation, 2 usage/parse error,
# 3 inconclusive) and the key parts of the output.  Prints one line per
# check and "N passed, M failed"; exits nonzero on any failure.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 PATH_TO_LINCHECK FIXTURES_DIR" >&2
    exit 2
fi
bin=$1
dir=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lincheck_cli.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect NAME WANT_RC PATTERN_FILE(out|err) PATTERN -- ARGS...
# PATTERN is a fixed string that must appear in stdout (out) or stderr (err);
# an empty PATTERN skips the text check.
expect() {
    name=$1 want=$2 stream=$3 pattern=$4
    shift 5
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    ok=1
    if [ "$rc" -ne "$want" ]; then
        ok=0
    elif [ -n "$pattern" ] && ! grep -qF -- "$pattern" "$tmp/$stream"; then
        ok=0
    fi
    if [ $ok -eq 1 ]; then
        pass=$((pass + 1))
        echo "ok   $name"
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $rc (want $want), want \"$pattern\" in std$stream"
        sed 's/^/  out: /' "$tmp/out"
        sed 's/^/  err: /' "$tmp/err"
    fi
}

expect "good history"      0 out "linearizable: 13 ops, 4 keys" -- "$dir/good.jsonl"
expect "bad history"       1 out "NOT linearizable: key 2"       -- "$dir/bad.jsonl"
expect "bad shows history" 1 out "history of key 2"              -- "$dir/bad.jsonl"
expect "malformed"         2 err "malformed.jsonl:3:"            -- "$dir/malformed.jsonl"
expect "malformed reason"  2 err "missing field \"call\""        -- "$dir/malformed.jsonl"
expect "merged files"      1 out "NOT linearizable: key 2"       -- "$dir/good.jsonl" "$dir/bad.jsonl"
expect "stdin"             0 out "linearizable:"                 -- - <"$dir/good.jsonl"
expect "budget 1"          3 out "INCONCLUSIVE"                  -- --budget 1 "$dir/good.jsonl"
expect "budget=N"          0 out "linearizable:"                 -- --budget=1000 "$dir/good.jsonl"
expect "help"              0 out "usage: lincheck"               -- --help
expect "no files"          2 err "usage: lincheck"               --
expect "unknown option"    2 err "unknown option"                -- --frobnicate "$dir/good.jsonl"
expect "bad budget"        2 err "--budget"                      -- --budget 0 "$dir/good.jsonl"
expect "budget missing"    2 err "--budget"                      -- "$dir/good.jsonl" --budget
expect "missing file"      2 err "no_such_file.jsonl"            -- "$dir/no_such_file.jsonl"

# --quiet prints exactly the verdict line.
expect "quiet"             1 out "NOT linearizable: key 2"       -- --quiet "$dir/bad.jsonl"
lines=$(wc -l <"$tmp/out")
if [ "$lines" -eq 1 ]; then
    pass=$((pass + 1))
    echo "ok   quiet is one line"
else
    fail=$((fail + 1))
    echo "FAIL quiet is one line: got $lines lines"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
