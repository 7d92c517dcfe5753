# cmake/demo.cmake - the hand-in's user-facing parts (see docs/handin.md).
#
#   ctest -R terminal_demo      the exam's terminal demo driven through tmux
#                               (skipped, exit 77, when tmux is unavailable)
#   cmake --build B --target make-log
#                               regenerates logs/log.txt from this build's
#                               binaries (scripts/make-log.sh)

add_test(NAME terminal_demo
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/demo/terminal_demo.sh $<TARGET_FILE_DIR:server>)
set_tests_properties(terminal_demo PROPERTIES
  SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS "process")

add_custom_target(make-log
  COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/make-log.sh --bin $<TARGET_FILE_DIR:server>
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  COMMENT "Regenerating logs/log.txt (three servers, three clients, one crash, ~30 s)"
  USES_TERMINAL
  VERBATIM)
add_dependencies(make-log server client)

# The script also runs lincheck, whose target may be defined after this
# fragment: the dependency is added once the whole project is read (and
# only if the target exists, so this fragment never breaks a configure).
function(dht_make_log_tool_deps)
  if(TARGET lincheck)
    add_dependencies(make-log lincheck)
  else()
    message(STATUS "make-log: no lincheck target; the script needs bin/lincheck")
  endif()
endfunction()
if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.19)
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL dht_make_log_tool_deps)
else()
  dht_make_log_tool_deps()
endif()
