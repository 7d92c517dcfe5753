# TLS and member authentication (README "Security"): the sources, kept in
# this fragment with their test, and the process test that checks who may
# call what on three TLS nodes.
target_sources(dht_base PRIVATE ${CMAKE_SOURCE_DIR}/lib/base/pem.c)
target_sources(dht_net PRIVATE ${CMAKE_SOURCE_DIR}/lib/net/grpc_tls.c)

add_test(NAME proc_tls_auth
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/process/tls_auth.sh $<TARGET_FILE_DIR:server>)
set_tests_properties(proc_tls_auth PROPERTIES TIMEOUT 240 LABELS process)
