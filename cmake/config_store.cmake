# cmake/config_store.cmake - the node's durable configuration record
# (lib/storage/config_store.c: epoch, members, a change in progress, the
# Paxos acceptor state) and its unit test.  No threads of its own, so the
# test is not in the tsan set.
target_sources(dht_storage PRIVATE ${CMAKE_SOURCE_DIR}/lib/storage/config_store.c)

add_executable(test_config_store ${CMAKE_SOURCE_DIR}/tests/test_config_store.c)
target_link_libraries(test_config_store dht_storage)
add_test(NAME config_store_unit COMMAND test_config_store)
set_tests_properties(config_store_unit PROPERTIES LABELS "unit")
