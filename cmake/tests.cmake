# Unit and protocol tests (no gRPC) and process tests (real binaries).
add_library(dht_sim STATIC lib/sim/sim_transport.c)
target_link_libraries(dht_sim PUBLIC dht_core)

add_executable(test_replica tests/test_replica.c)
target_link_libraries(test_replica dht_core)
add_test(NAME replica_unit COMMAND test_replica)

add_executable(test_protocol tests/test_protocol.c)
target_link_libraries(test_protocol dht_sim dht_lincheck)
add_test(NAME protocol_sim COMMAND test_protocol)

add_executable(rawcall tools/rawcall.c)
target_link_libraries(rawcall dht_net)

# Process tests: three real servers on 127.0.0.1 driven by shell scripts.
set(PROC_TESTS
  p1_repeatable_read p2_zero_unwritten p3_same_value_every_node
  p4_liveness_false_put_retry p5_kill9_mid_load public_service_each_node
  bad_input
  d1_kill_all_restart d2_crash_restart_loop d3_wipe_then_kill_other d4_catch_up
  d5_storage_errors clean_shutdown hostile_regressions
  n6_two_down n6_two_wiped config_change membership)
foreach(t ${PROC_TESTS})
  add_test(NAME proc_${t}
    COMMAND bash ${CMAKE_SOURCE_DIR}/tests/process/${t}.sh $<TARGET_FILE_DIR:server>)
  set_tests_properties(proc_${t} PROPERTIES TIMEOUT 120 LABELS process)
endforeach()
# Grows 3 -> 5 -> 3 under load, then two concurrent changes.
set_tests_properties(proc_membership PROPERTIES TIMEOUT 300)

add_executable(test_threads tests/test_threads.c)
target_link_libraries(test_threads dht_core dht_lincheck)
add_test(NAME threads_stress COMMAND test_threads)

set_tests_properties(replica_unit threads_stress PROPERTIES LABELS "unit;tsan")
set_tests_properties(protocol_sim PROPERTIES LABELS "unit")

add_executable(test_transport_grpc tests/test_transport_grpc.c)
target_link_libraries(test_transport_grpc dht_net)
# Its TLS test makes certificates with scripts/make-certs.sh.
target_compile_definitions(test_transport_grpc PRIVATE DHT_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME transport_grpc COMMAND test_transport_grpc)
set_tests_properties(transport_grpc PROPERTIES LABELS "unit" TIMEOUT 60)

# Coverage-guided fuzzing of the log replay parser (clang + libFuzzer), 10 s.
add_test(NAME wal_libfuzzer_short COMMAND bash ${CMAKE_SOURCE_DIR}/tests/fuzz_libfuzzer.sh 10)
set_tests_properties(wal_libfuzzer_short PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS "unit")

# Whole nodes (lib/node) in the simulator, deterministic from a seed.
add_library(dht_sim_cluster STATIC lib/sim/sim_cluster.c)
target_link_libraries(dht_sim_cluster PUBLIC dht_sim dht_node)
add_executable(test_node_sim tests/test_node_sim.c)
target_link_libraries(test_node_sim dht_sim_cluster dht_lincheck)
add_test(NAME node_sim COMMAND test_node_sim)
set_tests_properties(node_sim PROPERTIES LABELS "unit" TIMEOUT 600)

# The module map's include rules, and proof that a broken copy fails them.
add_test(NAME layering COMMAND bash ${CMAKE_SOURCE_DIR}/tests/layering.sh --self-test)
set_tests_properties(layering PROPERTIES LABELS "unit")

# Bounded resources: 5,000 idle connections and unread streams against one
# node while an honest client calls it (needs python3-grpcio; else skipped).
add_test(NAME abuse_limits
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/abuse/abuse_limits.sh $<TARGET_FILE_DIR:server>)
set_tests_properties(abuse_limits PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77 LABELS "process")

# Membership changes with whole nodes in the simulator.
add_executable(test_reconfig_sim tests/test_reconfig_sim.c)
target_link_libraries(test_reconfig_sim dht_sim_cluster dht_lincheck)
add_test(NAME reconfig_sim COMMAND test_reconfig_sim)
set_tests_properties(reconfig_sim PROPERTIES LABELS "unit" TIMEOUT 600)
