"""Resource abuse against one node, for tests/abuse/abuse_limits.sh.

  abuser.py idle HOST:PORT N SECONDS
      opens N TCP connections that never say a word, holds them SECONDS;
  abuser.py streams HOST:PORT K SECONDS
      opens K Replica/Stream calls on one HTTP/2 connection that send
      well-formed batches of reads (keys no honest client uses) as fast as
      the node's flow control allows and never read a reply, for SECONDS.
      The batches carry the node's configuration fingerprint (from its
      dht.Admin/Stats), as a member's do: without it the node would end
      each stream at its first batch and the abuse would test nothing.

Each prints one summary line and exits 0; anything unexpected raises.
Runs with Debian's /usr/bin/python3, python3-h2 and python3-grpcio (the
hostile suite, whose protobuf encoder it shares, imports it); the bytes are
written by hand, so no generated code is needed."""
import os
import socket
import sys
import threading
import time


# The hostile suite's hand-written protobuf and gRPC framing, one copy.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
from hostile import (M_STREAM, batch, config_field, grpc_frame, item, make_channel,  # noqa: E402
                     node_config)

READ = 4  # dht_msg_type of a Read, as a batch item


def read_batch(batch_id, first_key, n, fp=None):
    """A BatchRequest of n READ items on keys from first_key, carrying the
    fingerprint fp."""
    return config_field(M_STREAM, fp) + batch([item(READ, key=first_key + i) for i in range(n)],
                                              batch_id)


def idle(addr, n, seconds):
    host, port = addr.rsplit(":", 1)
    socks = []
    refused = 0
    for _ in range(n):
        try:
            socks.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            refused += 1
    print(f"idle: {len(socks)} connections open, {refused} refused", flush=True)
    time.sleep(seconds)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1  # the server dropped it (handshake timeout)
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print(f"idle: {closed} of {len(socks)} closed by the server after {seconds} s", flush=True)


def streams(addr, k, seconds):
    """Raw HTTP/2 (python3-h2), so that "never reads" is literal: no
    WINDOW_UPDATE is ever sent for what the node answers, and a batch goes
    out whenever the node's flow control lets it.  A node that keeps
    reading while its answers pile up unsent grows without bound; one that
    stops reading once its backlog is full stalls the sender instead."""
    import h2.config
    import h2.connection
    import h2.events

    channel = make_channel(addr)
    fp, why = node_config(channel)
    channel.close()
    if fp is None:
        print(f"streams: the node reports no configuration fingerprint ({why}): the batches "
              f"carry none", flush=True)
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/dht.Replica/Stream"),
               (":authority", addr), ("content-type", "application/grpc"), ("te", "trailers")]
    ids = []
    for _ in range(k):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers)
        ids.append(sid)
    sock.sendall(conn.data_to_send())
    sock.settimeout(0.01)
    sent = {sid: 0 for sid in ids}
    received = 0
    start = time.monotonic()
    stop = start + seconds
    half = None
    while time.monotonic() < stop:
        if half is None and time.monotonic() >= start + seconds / 2:
            half = sum(sent.values())
        for i, sid in enumerate(ids):
            msg = read_batch(sent[sid] + 1, 2_000_000_000 + i * 1000, 256, fp)
            frame = grpc_frame(msg)
            if conn.local_flow_control_window(sid) >= len(frame):
                conn.send_data(sid, frame)
                sent[sid] += 1
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                received += len(ev.data)  # never acknowledged: the window stays shut
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    sock.close()
    total = sum(sent.values())
    print(f"streams: {k} streams sent {total} batches in {seconds} s ({half} in the first "
          f"half, {total - half} in the second), {received} reply bytes arrived and none "
          f"were acknowledged", flush=True)
    print(f"second_half={total - half} first_half={half}", flush=True)


if __name__ == "__main__":
    mode, addr, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    {"idle": idle, "streams": streams}[mode](addr, n, secs)
