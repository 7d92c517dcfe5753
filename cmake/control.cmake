# cmake/control.cmake - control messages (lib/protocol/control.c): the
# strict binary codec of what members and administrators say about the
# configuration, part of dht_protocol, and its unit test
# (tests/test_control.c: round trips, refusals, every truncation, single-
# byte mutations and a seeded fuzz loop; a few seconds in Debug).
target_sources(dht_protocol PRIVATE ${CMAKE_SOURCE_DIR}/lib/protocol/control.c)

add_executable(test_control ${CMAKE_SOURCE_DIR}/tests/test_control.c)
target_link_libraries(test_control dht_protocol)
add_test(NAME control_codec COMMAND test_control)
set_tests_properties(control_codec PROPERTIES LABELS "unit" TIMEOUT 120)
