# cmake/harness.cmake - the Jepsen-style fault harness as a ctest.
# include()d by the top-level CMakeLists.txt (every cmake/*.cmake fragment).
#
# fault_harness_short runs tests/harness/harness.sh with the short schedule
# (every nemesis once, about two minutes): real server processes started
# through docker/entrypoint.sh, each in its own network namespace, faults
# injected with kill -9, SIGSTOP and nft rules, every history checked with
# lincheck.  It needs root, ip and nft (installed by the script itself when
# CI is set); without them it exits 77 and ctest reports it as skipped,
# never as passed.  RUN_SERIAL: its latency checks want both cores.
#
# fault_harness_short_tls runs the same walk with --tls: every node, peer
# link and client over mutual TLS with certificates from
# scripts/make-certs.sh (also needs openssl), so the faults hit TLS
# connections (handshakes after a restart, a heal, a resumed SIGSTOP) and
# the role check on dht.Replica is exercised by the fan-out clients.
#
#   ctest -R fault_harness_short --output-on-failure    # both
#   ctest -LE slow                   # everything but the harness
# Soak runs: see tests/harness/README.md.

add_test(NAME fault_harness_short
    COMMAND bash ${CMAKE_SOURCE_DIR}/tests/harness/harness.sh
            --bin $<TARGET_FILE_DIR:server> --schedule short)
set_tests_properties(fault_harness_short PROPERTIES
    LABELS "harness;slow"
    TIMEOUT 300
    SKIP_RETURN_CODE 77
    RUN_SERIAL TRUE)

add_test(NAME fault_harness_short_tls
    COMMAND bash ${CMAKE_SOURCE_DIR}/tests/harness/harness.sh
            --bin $<TARGET_FILE_DIR:server> --schedule short --tls)
set_tests_properties(fault_harness_short_tls PROPERTIES
    LABELS "harness;slow"
    TIMEOUT 300
    SKIP_RETURN_CODE 77
    RUN_SERIAL TRUE)
