# One replica of the key-value store, configured by the environment:
#   IP       this container's address or hostname on the cluster network
#   PORT     the server port, the same on every node (default 50051)
#   MEMBERS  HOST:PORT of every replica, this one included
#   REPLICAS members that store each key (default min(3, members))
#   DATA_DIR the write-ahead log (default /var/lib/kv, a volume)
#   optional: ID, FSYNC, LOG_LEVEL (see docker/entrypoint.sh)
# docker-compose.yml starts three of them and a client.
#
#   docker build -t kvstore .
#   docker compose up --build

# ---- build stage: compilers and -dev packages, thrown away afterwards --------
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the two binaries the image ships; no tests, no debug info.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target server client \
 && strip /build/bin/server /build/bin/client

# ---- runtime stage: the shared libraries the binaries link, nothing else -----
# `ldd server client` resolves only to files of libgrpc29, libprotobuf-c1 and
# their dependencies (libabsl20220623, libc-ares2, libre2-9, libssl3, zlib1g,
# libstdc++6, libgcc-s1, libc6), which apt pulls in with those two.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns the data directory; nothing runs as root.
RUN groupadd --system --gid 10001 kv \
 && useradd --system --uid 10001 --gid kv --home-dir /var/lib/kv --no-create-home \
      --shell /usr/sbin/nologin kv \
 && install -d -o kv -g kv -m 0750 /var/lib/kv

COPY --from=build /build/bin/server /build/bin/client /usr/local/bin/
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
RUN chmod 0755 /usr/local/bin/entrypoint.sh

ENV PORT=50051 DATA_DIR=/var/lib/kv
EXPOSE 50051
# The node's write-ahead log: a restarted or re-created container replays it.
VOLUME ["/var/lib/kv"]
WORKDIR /var/lib/kv
USER kv

# Healthy = the server itself answers the standard gRPC health service
# (grpc.health.v1.Health/Check) with SERVING.  Shell form, so IP and PORT
# are the container's own.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD client --via "${IP}:${PORT}" --deadline-ms 1000 health || exit 1

# The entrypoint checks IP, PORT, MEMBERS and REPLICAS and execs the server, which then
# runs as PID 1 and stops cleanly on `docker stop` (SIGTERM) or SIGINT.
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
