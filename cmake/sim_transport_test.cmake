# The simulator's transport for membership changes: control messages,
# check_config at delivery, add_peer (tests/test_sim_transport.c).
add_executable(test_sim_transport tests/test_sim_transport.c)
target_link_libraries(test_sim_transport dht_sim)
add_test(NAME sim_transport COMMAND test_sim_transport)
set_tests_properties(sim_transport PROPERTIES LABELS "unit" TIMEOUT 60)
