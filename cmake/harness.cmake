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
# fault_harness_six_nodes partitions the key space: six nodes, three
# replicas per key (each node stores about half of the keys), the short
# walk cut to kill, wipe, pause, split and bridge (a minute of faults and
# heals, about 75 s in all): each key's checks involve its own three replicas,
# a wiped node recovers only its partitions, a split or a bridge may leave
# some keys without a quorum on one side (calls on them must answer in time),
# and after healing every key is read through every node.
#
# fault_harness_membership changes the members online under load: three
# members and two spares (JOIN=1, empty data directories), for 60 s a seeded
# mix of adds, removes, replaces (kill -9 a member for good, add a spare,
# remove the dead one) and races (two commands at once), most of them with
# a kill, pause, isolation or split before or during the command, and faults
# alone in between (one node down or cut off at a time).  After each
# command the harness re-reads `client members` and goes on from the real
# configuration; a removed node must refuse requests, is stopped and comes
# back empty as a spare.  Checked: every history linearizable, every final
# member reads every key alike, every member at the same epoch, the final
# configuration the one tracked (about 90 s in all).
#
#   ctest -R fault_harness_short --output-on-failure    # both short walks
#   ctest -L harness --output-on-failure                # all four
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

add_test(NAME fault_harness_six_nodes
    COMMAND bash ${CMAKE_SOURCE_DIR}/tests/harness/harness.sh
            --bin $<TARGET_FILE_DIR:server> --schedule short --nodes 6 --replicas 3
            --faults kill,wipe,pause,split,bridge)
set_tests_properties(fault_harness_six_nodes PROPERTIES
    LABELS "harness;slow"
    TIMEOUT 300
    SKIP_RETURN_CODE 77
    RUN_SERIAL TRUE)

add_test(NAME fault_harness_membership
    COMMAND bash ${CMAKE_SOURCE_DIR}/tests/harness/harness.sh
            --bin $<TARGET_FILE_DIR:server> --membership --duration 60)
set_tests_properties(fault_harness_membership PROPERTIES
    LABELS "harness;slow"
    TIMEOUT 300
    SKIP_RETURN_CODE 77
    RUN_SERIAL TRUE)
