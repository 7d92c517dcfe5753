# cmake/config_agree.cmake - configuration agreement: single-decree Paxos
# per configuration epoch (lib/protocol/config_agree.c), part of
# dht_protocol, and its simulation test (tests/test_config_agree.c):
# thousands of seeded runs with loss, duplication, reordering and crashes.
target_sources(dht_protocol PRIVATE ${CMAKE_SOURCE_DIR}/lib/protocol/config_agree.c)

add_executable(test_config_agree ${CMAKE_SOURCE_DIR}/tests/test_config_agree.c)
target_link_libraries(test_config_agree dht_protocol dht_base)
add_test(NAME config_agree_sim COMMAND test_config_agree)
set_tests_properties(config_agree_sim PROPERTIES LABELS "unit" TIMEOUT 300)
