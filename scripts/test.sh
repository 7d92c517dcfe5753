#!/usr/bin/env bash
# Every test: install, build (plain, then AddressSanitizer+UBSan, then
# ThreadSanitizer for the concurrent parts) and run the ctest suites.
# Usage: scripts/test.sh            (what CI runs)
#        SKIP_SANITIZERS=1 scripts/test.sh   (plain build only, faster)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
start=$(date +%s)

echo "== plain build (RelWithDebInfo)"
scripts/build.sh build
(cd build && ctest --output-on-failure)

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
    scripts/build.sh build-asan -DDHT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -LE slow)

    echo "== ThreadSanitizer build (concurrent parts)"
    cmake -S . -B build-tsan -DDHT_TSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build build-tsan -j"$(nproc)" --target test_threads test_replica
    (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L tsan)
fi
echo "all test suites passed in $(( $(date +%s) - start )) s"
