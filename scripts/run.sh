#!/usr/bin/env bash
# The main job: install, build, start three servers on 127.0.0.1 and run the
# randomized client against them; Ctrl+C (or the end of the run) stops all.
# Usage: scripts/run.sh [client random options...]
#   default: --concurrency 4 --duration 20 --keys 100
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
BIN=build/bin
MEMBERS=127.0.0.1:50001,127.0.0.1:50002,127.0.0.1:50003
mkdir -p logs/run
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
for i in 1 2 3; do
    "$BIN/server" --port "5000$i" --ip 127.0.0.1 --members "$MEMBERS" >"logs/run/node$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 1 50); do
        "$BIN/client" --via "127.0.0.1:5000$i" --deadline-ms 200 health >/dev/null 2>&1 && break
        sleep 0.1
    done
done
echo "three servers up ($MEMBERS); node logs in logs/run/"
[ $# -gt 0 ] || set -- --concurrency 4 --duration 20 --keys 100
"$BIN/client" --servers "$MEMBERS" random "$@"
