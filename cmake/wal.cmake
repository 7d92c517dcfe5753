# cmake/wal.cmake - durability layer (write-ahead log + snapshot).
# include()d by the top-level CMakeLists.txt, which sets warnings, the C
# standard and output directories.  Paths are relative to this file, so the
# fragment works from any including project (here ${DHT_WAL_ROOT} is the
# same directory as ${CMAKE_SOURCE_DIR} when included from /work/main).
#
# Targets:
#   dht_wal              static library (libc + pthreads only)
#   test_wal             unit tests           -> ctest: wal_unit
#   fuzz_wal             parser fuzz driver   -> ctest: wal_fuzz_short
#   fuzz_wal_libfuzzer   clang only, not built by default, not in ctest:
#                        cmake --build . --target fuzz_wal_libfuzzer
#                        bin/fuzz_wal_libfuzzer -max_total_time=60 CORPUS_DIR

get_filename_component(DHT_WAL_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

find_package(Threads REQUIRED)

add_library(dht_wal STATIC
    ${DHT_WAL_ROOT}/lib/storage/wal.c
    ${DHT_WAL_ROOT}/lib/storage/wal_replay.c)
target_include_directories(dht_wal PUBLIC ${DHT_WAL_ROOT}/lib)
target_link_libraries(dht_wal PUBLIC Threads::Threads)

add_executable(test_wal ${DHT_WAL_ROOT}/tests/test_wal.c)
target_link_libraries(test_wal PRIVATE dht_wal)
add_test(NAME wal_unit COMMAND test_wal)

add_executable(fuzz_wal ${DHT_WAL_ROOT}/tests/fuzz_wal.c)
target_link_libraries(fuzz_wal PRIVATE dht_wal)
add_test(NAME wal_fuzz_short COMMAND fuzz_wal 20000)

if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    # The parser is compiled into the target (not linked from dht_wal) so that
    # it gets the fuzzer's coverage instrumentation.
    add_executable(fuzz_wal_libfuzzer EXCLUDE_FROM_ALL
        ${DHT_WAL_ROOT}/tests/fuzz_wal.c
        ${DHT_WAL_ROOT}/lib/storage/wal_replay.c)
    target_include_directories(fuzz_wal_libfuzzer PRIVATE ${DHT_WAL_ROOT}/lib)
    target_compile_definitions(fuzz_wal_libfuzzer PRIVATE DHT_LIBFUZZER)
    target_compile_options(fuzz_wal_libfuzzer PRIVATE -fsanitize=fuzzer,address)
    target_link_options(fuzz_wal_libfuzzer PRIVATE -fsanitize=fuzzer,address)
endif()
