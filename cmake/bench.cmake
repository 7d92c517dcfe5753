# cmake/bench.cmake - the side-by-side benchmark against etcd (docs/bench.md).
#
#   dht_etcd_pb   the etcd KV messages (proto/etcd_kv.proto), generated with
#                 protoc-c at build time like dht.proto
#   client        gains client/etcd.c: `client --etcd HOST:PORT,... random`
#                 drives an etcd cluster with the same load generator
#   DHT_BENCH=1 ctest -L bench
#                 bench_smoke: bench/bench.sh --quick on this build's
#                 binaries (about 2 minutes); labelled "bench;slow".  It
#                 skips (77) unless DHT_BENCH=1 is set and etcd is installed
#                 (bench.sh without --ctest installs it), so a plain `ctest`
#                 does not spend minutes on it.

add_custom_command(
  OUTPUT ${GEN_DIR}/etcd_kv.pb-c.c ${GEN_DIR}/etcd_kv.pb-c.h
  COMMAND ${PROTOC_C} --c_out=${GEN_DIR} -I${CMAKE_SOURCE_DIR}/proto
          ${CMAKE_SOURCE_DIR}/proto/etcd_kv.proto
  DEPENDS ${CMAKE_SOURCE_DIR}/proto/etcd_kv.proto
  COMMENT "protoc-c etcd_kv.proto")

add_library(dht_etcd_pb STATIC ${GEN_DIR}/etcd_kv.pb-c.c)
target_include_directories(dht_etcd_pb PUBLIC ${GEN_DIR})
set_source_files_properties(${GEN_DIR}/etcd_kv.pb-c.c PROPERTIES
  COMPILE_OPTIONS "-Wno-unused-parameter")
target_link_libraries(dht_etcd_pb PUBLIC PkgConfig::PROTOBUFC)

target_sources(client PRIVATE ${CMAKE_SOURCE_DIR}/client/etcd.c)
target_link_libraries(client dht_etcd_pb)

add_test(NAME bench_smoke
  COMMAND bash ${CMAKE_SOURCE_DIR}/bench/bench.sh --quick --ctest
          --bin $<TARGET_FILE_DIR:client> --out ${CMAKE_BINARY_DIR}/bench-smoke.jsonl)
set_tests_properties(bench_smoke PROPERTIES
  SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "bench;slow")
