# The hostile-client suite (tests/hostile/run.sh): three real nodes attacked
# by Debian's python3-grpcio with malformed, out-of-range, oversized and
# concurrent calls while honest clients run; the nodes must answer each
# correctly, stay up, keep every key outside the honest range unchanged and
# keep the honest history linearizable.  About a minute on two cores;
# the timeout leaves room for installing python3-grpcio when it is missing
# (skipped, 77, only when it can be neither imported nor installed).
add_test(NAME hostile_suite
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/hostile/run.sh $<TARGET_FILE_DIR:server> plain)
set_tests_properties(hostile_suite PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS process)

# The same on three TLS nodes (--client-cert-auth, scripts/make-certs.sh),
# with callers that are not members: no certificate, the role-less one,
# another CA's, plaintext.
add_test(NAME hostile_suite_tls
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/hostile/run.sh $<TARGET_FILE_DIR:server> tls)
set_tests_properties(hostile_suite_tls PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS process)
