#!/usr/bin/env bash
# A short, bounded coverage-guided fuzz run (libFuzzer with clang and
# AddressSanitizer) of the write-ahead log's replay parser.  Built here with
# clang because the project may be compiled by gcc; skipped (exit 77) when
# clang or its fuzzer runtime is missing.  Usage: fuzz_libfuzzer.sh [SECONDS]
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
command -v clang >/dev/null || { echo "SKIP: clang not installed"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dht-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -DDHT_LIBFUZZER -I"$src/lib" \
        "$src/tests/fuzz_wal.c" "$src/lib/storage/wal_replay.c" -o "$work/fuzz" 2>"$work/cc.err"; then
    echo "SKIP: clang cannot build a libFuzzer target here: $(tail -n 1 "$work/cc.err")"
    exit 77
fi
mkdir -p "$work/corpus"
"$work/fuzz" -max_total_time="$secs" -rss_limit_mb=1024 -print_final_stats=1 "$work/corpus" \
    >"$work/run.log" 2>&1
rc=$?
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$work/run.log" | tail -n 3
if [ $rc -ne 0 ]; then
    tail -n 40 "$work/run.log"
    echo "FAIL: the fuzzer found a crash in the replay parser"
    exit 1
fi
echo "PASS: no crash in ${secs} s of coverage-guided fuzzing"
