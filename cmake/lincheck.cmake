# cmake/lincheck.cmake - linearizability checker: library, CLI and tests.
#
# Included by the top-level CMakeLists.txt (after enable_testing()).
# Paths are taken relative to this file, which is the same as
# ${CMAKE_SOURCE_DIR} when included from the top level, and keeps working
# if the project is ever built as a subdirectory.  Binaries go wherever the
# top level puts them (CMAKE_RUNTIME_OUTPUT_DIRECTORY); compile flags come
# from the top level too.

get_filename_component(DHT_LINCHECK_ROOT "${CMAKE_CURRENT_LIST_DIR}/.."
                       ABSOLUTE)

# Checker + history parser; no dependencies beyond libc.
add_library(dht_lincheck STATIC ${DHT_LINCHECK_ROOT}/tools/lincheck/lincheck.c)
target_include_directories(dht_lincheck PUBLIC ${DHT_LINCHECK_ROOT}/tools/lincheck)

# CLI: lincheck [--budget N] [--quiet] FILE...
add_executable(lincheck ${DHT_LINCHECK_ROOT}/tools/lincheck/main.c)
target_link_libraries(lincheck PRIVATE dht_lincheck)

# Unit tests.
add_executable(test_lincheck ${DHT_LINCHECK_ROOT}/tests/test_lincheck.c)
target_link_libraries(test_lincheck PRIVATE dht_lincheck)

add_test(NAME lincheck_unit COMMAND test_lincheck)
add_test(NAME lincheck_cli
         COMMAND sh ${DHT_LINCHECK_ROOT}/tests/lincheck_cli_test.sh
                 $<TARGET_FILE:lincheck> ${DHT_LINCHECK_ROOT}/tests/fixtures)
# Generous limits: sanitizer and valgrind builds are much slower.
set_tests_properties(lincheck_unit lincheck_cli PROPERTIES TIMEOUT 900)
