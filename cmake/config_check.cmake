# Placement's guard on the wire (proto/dht.proto, LockRequest's config):
# the check of every replica request's configuration fingerprint and the
# dht.Admin/Stats service (lib/net/grpc_config.c), and the client's use of
# Stats (`client stats`, learning R, `locate`: client/admin.c).  Tested by
# test_transport_grpc (tests.cmake) and the hostile suite (hostile.cmake).
target_sources(dht_net PRIVATE ${CMAKE_SOURCE_DIR}/lib/net/grpc_config.c)
target_sources(client PRIVATE ${CMAKE_SOURCE_DIR}/client/admin.c)
