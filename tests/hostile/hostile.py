"""A gRPC client that is not ours, attacking the nodes (tests/hostile/run.sh).

Runs with Debian's /usr/bin/python3 and python3-grpcio.  Every request is
raw bytes written by the small protobuf encoder below (identity
serializers), so nothing is generated from proto/dht.proto and a message
can be as broken as we like.

  hostile.py keys
      the hostile-range keys run.sh seeds with honest puts before the attack
  hostile.py snapshot ADDRS OUT [--agree SECONDS]
      pages through /dht.Replica/Scan of every replica and writes the
      entries outside the honest key range to OUT (JSON); with --agree,
      first waits until every replica holds the same such entries
  hostile.py compare BEFORE AFTER
      the two snapshots must be identical
  hostile.py alive ADDRS
      every node answers its health check with SERVING
  hostile.py attack ADDRS [--pids P,P,P] [--seed N] [--scale F] [--phases A,B]
                    [--tls-dir DIR --client-cert-auth] [--config HEX]
      the hostile phases (Attack.run lists them); prints one DEFECT line per
      wrong answer, crash, hang or memory blow-up, with the request that
      caused it, NOTE lines for tolerated oddities, and exits 1 on any
      defect.  --pids lets it tell a crash from a refusal; --scale
      multiplies the timed phases; --phases runs only those named.

ADDRS is HOST:PORT,HOST:PORT,...  snapshot and alive take --tls-ca,
--tls-cert, --tls-key.  Exit status: 0 good, 1 defects, 2 usage, 3 the
script itself failed (a traceback, not a finding about the nodes).

The configuration fingerprint: a node refuses every replica request whose
`config` field is not its own configuration's fingerprint
(FAILED_PRECONDITION) before it validates the request's fields, so a
hostile request without it would never reach the validation this suite
tests.  Every replica request here therefore carries the fingerprint the
node reports in dht.Admin/Stats (or --config HEX), written in front of the
hand-made bytes (config_field: a field in front never changes how the rest
parses, so a malformed message stays malformed); the "configuration" phase
sends well-formed requests with a wrong or no fingerprint, which must be
refused and change nothing.

What the attack may send, and why: the honest client (run.sh) owns keys
0..999 and the scan comparison owns every other key.  In plaintext mode a
well-formed, in-range Write or Lock from us is indistinguishable from a
member's and would legitimately change state, so the attack sends only
requests that are malformed, out of range, or harmless when accepted
(Read, Get, Scan, Health of any key).  The only requests on honest keys are
well-formed but out of range (a version counter past 2^62, a 49-day lease),
which the replicas must refuse; if one got through, the honest client's
puts or the linearizability check would show it.  In TLS mode the attack
also sends well-formed, in-range Writes and Locks, without the peer
certificate: then nothing at all may change.

The control phase (dht.Admin/Control, membership changes) follows the same
rule: a member may legitimately install a newer configuration of its
cluster, promise or accept in the open agreement slot, or start a change
that succeeds, so none of these is ever sent whole; everything else is
(garbage, refusals, and requests that change nothing), and afterwards
every node must report the configuration it had before.
"""

import argparse
import collections
import json
import os
import random
import re
import socket
import ssl
import sys
import threading
import time

import grpc

# ---- the protobuf wire format, by hand ---------------------------------------

U64 = (1 << 64) - 1
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
BOOL = "bool"  # a varint field that protobuf-c also takes in any other wire type

HONEST_LO, HONEST_HI = 0, 999  # the honest client's --keys 1000
HOSTILE = 10**9                 # first key of the range the attack aims at
COUNTER_MAX = 1 << 62           # the replicas' ceiling (lib/protocol/replica.h)
LEASE_MAX_MS = 60000


def varint(n):
    """A varint of n; negative int64 values as protobuf writes them (10 bytes)."""
    n &= U64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(num, wt):
    return varint(num << 3 | wt)


def fv(num, v):
    return tag(num, VARINT) + varint(v)


def fb(num, payload):
    return tag(num, LEN) + varint(len(payload)) + payload


def message(*fields):
    """Varint fields (num, value); None values are left out, as proto3 would."""
    return b"".join(fv(n, v) for n, v in fields if v is not None)


def put(key, value):
    return message((1, key), (2, value))


def get(key):
    return message((1, key))


def lock(key, owner, lease):
    return message((1, key), (2, owner), (3, lease))


def unlock(key, owner):
    return message((1, key), (2, owner))


def write(key, value, counter, writer, release=None):
    return message((1, key), (2, value), (3, counter), (4, writer), (5, release))


def read(key):
    return message((1, key))


def scan(after_key=None, from_start=None, limit=None, stripe=None):
    return message((1, after_key), (2, from_start), (3, limit), (4, stripe))


ITEM_LOCK, ITEM_UNLOCK, ITEM_WRITE, ITEM_READ = 1, 2, 3, 4


def item(type_, key=None, value=None, counter=None, writer=None, owner=None, lease=None,
         ok=None):
    return message((1, type_), (2, key), (3, value), (4, counter), (5, writer), (6, owner),
                   (7, lease), (8, ok))


def batch(items, id_=None):
    return b"".join(fb(1, it) for it in items) + (fv(2, id_) if id_ is not None else b"")


def stats_request():
    return b""


def health(service=b""):
    return fb(1, service) if service else b""


# Field number -> wire type of each request message (proto/dht.proto);
# another string names a nested message.
SCHEMAS = {
    "put": {1: VARINT, 2: VARINT},
    "get": {1: VARINT},
    "lock": {1: VARINT, 2: VARINT, 3: VARINT},
    "unlock": {1: VARINT, 2: VARINT},
    "write": {1: VARINT, 2: VARINT, 3: VARINT, 4: VARINT, 5: VARINT},
    "read": {1: VARINT},
    "scan": {1: VARINT, 2: BOOL, 3: VARINT, 4: VARINT},
    "batch": {1: "item", 2: VARINT},
    "item": {**{n: VARINT for n in range(1, 8)}, 8: BOOL},
    "health": {1: LEN},
    "stats": {},
    "control": {1: LEN},  # ControlRequest { bytes body = 1; }
}
# The config field (the sender's configuration fingerprint) of each replica
# request message, and the fields added with it (Scan's member filter and
# incarnation): declared, so that broken() judges them like the others.
CONFIG_FIELD = {"lock": 4, "unlock": 3, "write": 6, "read": 2, "scan": 7, "batch": 3}
for _schema, _num in CONFIG_FIELD.items():
    SCHEMAS[_schema][_num] = VARINT
# The view number each replica request carries next to its fingerprint
# (membership changes): declared for the same reason.
VIEW_FIELD = {"lock": 5, "unlock": 4, "write": 7, "read": 3, "scan": 8, "batch": 4}
for _schema, _num in VIEW_FIELD.items():
    SCHEMAS[_schema][_num] = VARINT
SCHEMAS["scan"].update({5: VARINT, 6: VARINT})


def read_varint(buf, i):
    v = shift = 0
    for _ in range(10):
        if i >= len(buf):
            return None, i
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i
    return None, i  # longer than any varint


def broken(buf, schema):
    """True when every protobuf parser must refuse buf, and protobuf-c (the
    server's) in particular: it ends inside a field, a length runs past the
    end, a varint is longer than 10 bytes, a wire type is 6 or 7 or a group
    (unsupported by protobuf-c), or a declared field has the wrong wire type
    (protobuf-c refuses that, except for bool fields, which it reads from
    any wire type; Google's protobuf would skip such a field instead);
    nested batch items are checked as well.
    Random bytes are often a valid message (unknown fields are skipped), and
    a valid Write or Put would change state; so garbage is sent only once
    this says it is broken."""
    fields = SCHEMAS[schema]
    i, n = 0, len(buf)
    while i < n:
        t, i = read_varint(buf, i)
        if t is None:
            return True
        num, wt = t >> 3, t & 7
        want = fields.get(num)
        if wt in (SGROUP, EGROUP, 6, 7):
            return True
        if want is not None and want != BOOL and (LEN if isinstance(want, str) else want) != wt:
            return True
        if wt == VARINT:
            v, i = read_varint(buf, i)
            if v is None:
                return True
        elif wt == I64:
            i += 8
        elif wt == I32:
            i += 4
        else:
            ln, i = read_varint(buf, i)
            if ln is None or ln > n - i:
                return True
            if want in SCHEMAS and broken(buf[i:i + ln], want):
                return True
            i += ln
        if i > n:
            return True
    return False


# Appended to bytes that might parse: a field whose length runs past the end.
BROKEN_TAIL = tag(15, LEN) + varint(127)


def make_broken(buf, schema):
    return buf if broken(buf, schema) else buf + BROKEN_TAIL


def decode(buf):
    """Fields of a reply as {num: [value, ...]} (varints and LEN payloads)."""
    out = collections.defaultdict(list)
    i, n = 0, len(buf)
    while i < n:
        t, i = read_varint(buf, i)
        if t is None:
            raise ValueError("truncated tag")
        num, wt = t >> 3, t & 7
        if wt == VARINT:
            v, i = read_varint(buf, i)
            if v is None:
                raise ValueError("truncated varint")
        elif wt == LEN:
            ln, i = read_varint(buf, i)
            if ln is None or ln > n - i:
                raise ValueError("truncated field")
            v, i = buf[i:i + ln], i + ln
        elif wt == I64:
            v, i = buf[i:i + 8], i + 8
        elif wt == I32:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        if i > n:
            raise ValueError("truncated field")
        out[num].append(v)
    return out


def s64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def one(fields, num, default=0):
    return fields[num][-1] if fields.get(num) else default


# ---- methods -----------------------------------------------------------------

M_PUT, M_GET = "/dht.KeyValue/Put", "/dht.KeyValue/Get"
M_LOCK, M_UNLOCK, M_WRITE = "/dht.Replica/Lock", "/dht.Replica/Unlock", "/dht.Replica/Write"
M_READ, M_SCAN, M_BATCH = "/dht.Replica/Read", "/dht.Replica/Scan", "/dht.Replica/Batch"
M_STREAM, M_HEALTH = "/dht.Replica/Stream", "/grpc.health.v1.Health/Check"
M_STATS = "/dht.Admin/Stats"
# The members' control channel: under TLS, for the peer role only.
M_CONTROL = "/dht.Admin/Control"
UNARY = {M_PUT: "put", M_GET: "get", M_LOCK: "lock", M_UNLOCK: "unlock", M_WRITE: "write",
         M_READ: "read", M_SCAN: "scan", M_BATCH: "batch", M_HEALTH: "health",
         M_STATS: "stats"}
REPLICA_METHODS = [M_LOCK, M_UNLOCK, M_WRITE, M_READ, M_SCAN, M_BATCH]
UNKNOWN_METHODS = ["/dht.KeyValue/Delete", "/dht.KeyValue/put", "/dht.Replica/Nope",
                   "/dht.Replica/Stream2", "/dht.Replica/Lock/x", "/grpc.health.v1.Health/Watch",
                   "/grpc.health.v1.Health/check", "/dht.Other/Put", "/dht.KeyValue/",
                   "/x", "/" + "A" * 2000 + "/Put", "/" + "B" * 20000 + "/Put"]

# Which fingerprint a request carries: the node's (learned from its Stats),
# none, or a given number.
NODE, NO_CONFIG = "node", None


def config_field(method, fp):
    """The config field of method's request message carrying fp, encoded;
    b"" for methods without one, or when fp is None."""
    schema = "batch" if method == M_STREAM else UNARY.get(method)
    num = CONFIG_FIELD.get(schema)
    return b"" if num is None or fp is None else fv(num, fp)


def node_config(channel, timeout=5.0):
    """(fingerprint, None) from the node's dht.Admin/Stats, or (None, why)."""
    try:
        rep = decode(channel.unary_unary(M_STATS)(stats_request(), timeout=timeout))
    except grpc.RpcError as e:
        return None, f"{e.code().name} {e.details()}"
    except ValueError as e:
        return None, f"the Stats reply does not parse: {e}"
    fp = one(rep, 4)
    return (fp, None) if fp else (None, "its Stats report no fingerprint")


def check_stats_reply(addrs):
    """A StatsReply naming these members (any spelling of the same set) and
    a plausible configuration."""
    def norm(a):
        host, port = a.rsplit(":", 1)
        return ("127.0.0.1" if host == "localhost" else host) + ":" + port
    want = sorted(norm(a) for a in addrs)

    def check(rep):
        f = decode(rep)
        members = sorted(m.decode() for m in f.get(2, []))
        if members != want:
            return f"members {members}, expected {want}"
        if not 1 <= one(f, 3) <= len(want):
            return f"replicas {one(f, 3)} for {len(want)} members"
        if not one(f, 4):
            return "no fingerprint"
        if norm(one(f, 1, b"").decode()) not in want:
            return f"self {one(f, 1, b'')!r} is not a member"
        return None
    return check


# The keys run.sh seeds with honest puts before the attack: state the
# attack aims at and that must not change.
SEEDED = [HOSTILE + i for i in range(8)] + [-1, -2, -(10**12), (1 << 63) - 1, -(1 << 63)]
HONEST_TARGET = 5  # an honest key: the well-formed out-of-range requests aim here too

CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1),
                   ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.enable_retries", 0)]


def make_channel(addr, creds=None):
    if creds is None:
        return grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(addr, creds, options=CHANNEL_OPTIONS)


def hexs(b, limit=160):
    h = b[:limit].hex()
    return h if len(b) <= limit else f"{h}... ({len(b)} bytes)"


# ---- control messages, by hand ------------------------------------------------
# The body of a dht.Admin/Control call (lib/protocol/control.c, version 1):
# u8 version, u8 type, then by type; integers little-endian, a str is a u32
# length and that many bytes, a bool one byte 0 or 1.  The decoder below
# mirrors control.c's strict one: the control phase sends garbage only when
# it refuses it (or when it is a VIEW or CHANGED, which no node acts on), so
# that a stray well-formed INSTALL or CHANGE never changes the cluster.

CTL_VERSION = 1
CTL_AGREE, CTL_QUERY, CTL_VIEW, CTL_INSTALL, CTL_CHANGE, CTL_CHANGED = range(1, 7)
CTL_NAMES = {CTL_AGREE: "AGREE", CTL_QUERY: "QUERY", CTL_VIEW: "VIEW", CTL_INSTALL: "INSTALL",
             CTL_CHANGE: "CHANGE", CTL_CHANGED: "CHANGED"}
(AG_PREPARE, AG_PROMISE, AG_ACCEPT, AG_ACCEPTED, AG_NACK, AG_DECIDED, AG_STALE,
 AG_BEHIND) = range(1, 9)
AG_NAMES = {1: "PREPARE", 2: "PROMISE", 3: "ACCEPT", 4: "ACCEPTED", 5: "NACK", 6: "DECIDED",
            7: "STALE", 8: "BEHIND"}
CHANGE_ADD, CHANGE_REMOVE = 1, 2
CTL_TEXT_MAX = 64 + 128 * 256           # DHT_CONTROL_TEXT_MAX
CTL_ADDR_MAX = 255                      # DHT_CONTROL_ADDR_MAX
CTL_CHANGED_TEXT_MAX = 4096             # DHT_CONTROL_CHANGED_TEXT_MAX
CTL_AGREE_VALUE_MAX = 64 * 1024         # DHT_AGREE_VALUE_MAX
CTL_ENCODED_MAX = 256 * 1024            # DHT_CONTROL_ENCODED_MAX
CONTROL_BODY_MAX = 1 << 20              # DHT_CONTROL_MAX: the gRPC layer's limit
CTL_STR_MAX = {"agree value": CTL_AGREE_VALUE_MAX, "cur": CTL_TEXT_MAX, "next": CTL_TEXT_MAX,
               "addr": CTL_ADDR_MAX, "text": CTL_CHANGED_TEXT_MAX}


def ctl_build(type_, parts=(), version=CTL_VERSION):
    """A control body: (bytes, layout).  parts are (kind, name, value) with
    kind u8, bool, u64 or str; layout lists (kind, name, offset, value), for
    the mutations."""
    out, layout = bytearray([version & 0xFF, type_ & 0xFF]), []
    for kind, name, v in parts:
        layout.append((kind, name, len(out), v))
        if kind in ("u8", "bool"):
            out.append(v & 0xFF)
        elif kind == "u64":
            out += (v & U64).to_bytes(8, "little")
        else:
            out += len(v).to_bytes(4, "little") + v
    return bytes(out), layout


def agree_parts(type_, epoch, ballot=(1, 1), accepted=(0, 0), value=b""):
    return [("u8", "agree type", type_), ("u64", "epoch", epoch),
            ("u64", "ballot round", ballot[0]), ("u64", "ballot id", ballot[1]),
            ("u64", "accepted round", accepted[0]), ("u64", "accepted id", accepted[1]),
            ("str", "agree value", value)]


def view_parts(epoch, cur=b"", next_=b"", cluster=0, tdone=0, removed=0):
    return [("u64", "view epoch", epoch), ("str", "cur", cur), ("str", "next", next_),
            ("u64", "cluster id", cluster), ("bool", "transfer_done", tdone),
            ("bool", "removed", removed)]


def change_parts(op, addr):
    return [("u8", "op", op), ("str", "addr", addr)]


def ctl_agree(type_, epoch, ballot=(1, 1), accepted=(0, 0), value=b""):
    return ctl_build(CTL_AGREE, agree_parts(type_, epoch, ballot, accepted, value))[0]


def ctl_install(epoch, cur=b"", next_=b"", cluster=0, tdone=0, removed=0):
    return ctl_build(CTL_INSTALL, view_parts(epoch, cur, next_, cluster, tdone, removed))[0]


def ctl_change(op, addr):
    return ctl_build(CTL_CHANGE, change_parts(op, addr))[0]


CTL_QUERY_BODY = bytes([CTL_VERSION, CTL_QUERY])


class CtlError(ValueError):
    pass


def ctl_decode(b):
    """A control body as a dict, or CtlError: what control.c's decoder
    accepts, field for field."""
    if len(b) > CTL_ENCODED_MAX:
        raise CtlError(f"{len(b)} bytes, over {CTL_ENCODED_MAX}")
    if len(b) < 2:
        raise CtlError("too short")
    if b[0] != CTL_VERSION:
        raise CtlError(f"version {b[0]}")
    t = b[1]
    if t not in CTL_NAMES:
        raise CtlError(f"unknown type {t}")
    pos = [2]

    def take(n, what):
        if n > len(b) - pos[0]:
            raise CtlError(f"{what} truncated")
        v = b[pos[0]:pos[0] + n]
        pos[0] += n
        return v

    def u64(what):
        return int.from_bytes(take(8, what), "little")

    def boolean(what):
        v = take(1, what)[0]
        if v > 1:
            raise CtlError(f"{what} not 0 or 1")
        return v == 1

    def text(what, lo=0):
        n = int.from_bytes(take(4, what), "little")
        if n > CTL_STR_MAX[what]:
            raise CtlError(f"{what} length over its limit")
        s = take(n, what)
        if len(s) < lo:
            raise CtlError(f"{what} length {len(s)} under {lo}")
        bad = next((i for i, c in enumerate(s) if c < 0x20 or c == 0x7F), None)
        if bad is not None:
            raise CtlError(f"{what} has control byte 0x{s[bad]:02x}")
        return s

    def view():
        v = {"epoch": u64("view epoch"), "cur": text("cur"), "next": text("next"),
             "cluster": u64("cluster id"), "transfer_done": boolean("transfer_done"),
             "removed": boolean("removed")}
        return v

    m = {"type": t}
    if t == CTL_AGREE:
        m["agree"] = take(1, "agree type")[0]
        m["epoch"] = u64("epoch")
        m["ballot"] = (u64("ballot"), u64("ballot"))
        m["accepted"] = (u64("accepted"), u64("accepted"))
        n = int.from_bytes(take(4, "agree value"), "little")
        if n > CTL_AGREE_VALUE_MAX:
            raise CtlError("agree value length over its limit")
        m["value"] = take(n, "agree value")  # opaque: not checked as text
    elif t in (CTL_VIEW, CTL_INSTALL):
        m["view"] = view()
    elif t == CTL_CHANGE:
        m["op"] = take(1, "op")[0]
        m["addr"] = text("addr", 1)
    elif t == CTL_CHANGED:
        m["ok"] = boolean("ok")
        m["text"] = text("text")
        m["view"] = view()
    if pos[0] != len(b):
        raise CtlError(f"{len(b) - pos[0]} bytes left over")
    if t == CTL_AGREE and not AG_PREPARE <= m["agree"] <= AG_BEHIND:
        raise CtlError(f"bad agree type {m['agree']}")
    if t == CTL_CHANGE and m["op"] not in (CHANGE_ADD, CHANGE_REMOVE):
        raise CtlError(f"bad change op {m['op']}")
    v = m.get("view")
    if v is not None:
        if v["epoch"] == 0 and (v["cur"] or v["next"]):
            raise CtlError("view of epoch 0 with a configuration")
        if v["epoch"] != 0 and not v["cur"]:
            raise CtlError("view without a configuration")
        if v["epoch"] == U64 and v["next"]:
            raise CtlError("view with a next at the last epoch")
    return m


def ctl_reply(rep):
    """The decoded control message in a ControlReply (CtlError otherwise)."""
    return ctl_decode(one(decode(rep), 1, b""))


def control_request(body):
    """A ControlRequest carrying body (proto3 leaves an empty body out)."""
    return fb(1, body) if body else b""


CONFIG_LINE = re.compile(r"replicas=(\d+) partitions=(\d+) members=(\S+)")


def config_line(replicas, partitions, members):
    return f"replicas={replicas} partitions={partitions} members={','.join(members)}".encode()


# ---- HTTP/2 by hand, below gRPC ----------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_RST, H2_SETTINGS, H2_PING, H2_WINDOW, H2_CONT = 0, 1, 3, 4, 6, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def h2_frame(type_, flags, stream, payload=b""):
    return (len(payload).to_bytes(3, "big") + bytes([type_, flags]) +
            (stream & 0x7FFFFFFF).to_bytes(4, "big") + payload)


def hpack_int(n, prefix_bits=7):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([n])
    out, n = bytearray([limit]), n - limit
    while n >= 128:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def hpack_headers(path, authority, extra=()):
    """A header block of literals without indexing (no Huffman, no table)."""
    out = bytearray()
    for name, value in ((b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                        (b":authority", authority), (b"content-type", b"application/grpc"),
                        (b"te", b"trailers"), *extra):
        out += b"\x00" + hpack_int(len(name)) + name + hpack_int(len(value)) + value
    return bytes(out)


CONT_FLOOD = "an endless header block (8 MiB of CONTINUATION)"


def grpc_has_hpack_buffering_bug():
    """gRPC before 1.53.2 buffers a header block of any length before it
    applies the metadata limit (CVE-2023-33953); no server option bounds
    it.  Debian 12 ships 1.51.1, so on such a build the flood is reported
    as that known defect, and on a fixed gRPC it is ours and fails."""
    v = os.environ.get("DHT_GRPC_UPSTREAM", "")
    try:
        parts = tuple(int(x) for x in v.split(".")[:3])
    except ValueError:
        return False
    return len(parts) == 3 and parts < (1, 53, 2)


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return None


def grpc_frame(msg, compressed=0, length=None):
    """A gRPC length-prefixed message; length may lie."""
    return bytes([compressed]) + (len(msg) if length is None else length).to_bytes(4, "big") + msg


# ---- scans, snapshots, liveness ----------------------------------------------


def scan_all(channel, timeout=10.0):
    """Every entry a replica holds, by well-formed Scan pages: {key: (value,
    counter, writer)}.  None while the replica is recovering.  The pages
    carry the node's fingerprint when it reports one."""
    call = channel.unary_unary(M_SCAN)
    fp, _ = node_config(channel)
    prefix = config_field(M_SCAN, fp)
    entries = {}
    after, from_start, stripe = None, True, None
    for _ in range(100000):
        rep = decode(call(prefix + scan(after, from_start or None, 4096, stripe),
                          timeout=timeout))
        if one(rep, 3):
            return None
        for e in rep.get(1, []):
            f = decode(e)
            entries[s64(one(f, 1))] = (s64(one(f, 2)), one(f, 3), one(f, 4))
        if not one(rep, 2):
            return entries
        stripe, after, from_start = one(rep, 4), s64(one(rep, 5)), bool(one(rep, 6))
    raise RuntimeError("scan did not end after 100,000 pages")


def outside(entries):
    return {k: v for k, v in entries.items() if not HONEST_LO <= k <= HONEST_HI}


def cmd_snapshot(args):
    addrs = args.addrs.split(",")
    creds = tls_creds(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    chans = {a: make_channel(a, creds) for a in addrs}
    end = time.monotonic() + args.agree
    while True:
        snap, why = {}, None
        for a in addrs:
            try:
                e = scan_all(chans[a])
            except grpc.RpcError as err:
                e, why = None, f"{a}: scan failed: {err.code().name} {err.details()}"
            if e is None:
                why = why or f"{a}: recovering"
                break
            snap[a] = {str(k): list(v) for k, v in sorted(outside(e).items())}
        if why is None and (args.agree == 0 or all(snap[a] == snap[addrs[0]] for a in addrs)):
            break
        if time.monotonic() > end:
            print(f"snapshot: replicas never agreed on the hostile range: {why or ''}")
            for a in addrs:
                print(f"  {a}: {json.dumps(snap.get(a))[:2000]}")
            return 1
        time.sleep(0.2)
    with open(args.out, "w") as f:
        json.dump(snap, f, indent=0, sort_keys=True)
    print(f"snapshot: {len(snap[addrs[0]])} entries outside keys {HONEST_LO}..{HONEST_HI} "
          f"on each of {len(addrs)} replicas")
    return 0


def cmd_compare(args):
    with open(args.before) as f:
        before = json.load(f)
    with open(args.after) as f:
        after = json.load(f)
    bad = 0
    for a in sorted(set(before) | set(after)):
        b, c = before.get(a, {}), after.get(a, {})
        for k in sorted(set(b) | set(c), key=int):
            if b.get(k) != c.get(k):
                bad += 1
                print(f"DEFECT state change on {a}: key {k}: before {b.get(k)} "
                      f"(value, counter, writer), after {c.get(k)}")
    print(f"compare: {bad} entries outside keys {HONEST_LO}..{HONEST_HI} changed")
    return 1 if bad else 0


def health_ok(channel, timeout=3.0):
    """None if the node answers SERVING, else why not."""
    try:
        rep = channel.unary_unary(M_HEALTH)(b"", timeout=timeout)
    except grpc.RpcError as e:
        return f"{e.code().name} {e.details()}"
    return None if rep == b"\x08\x01" else f"health reply {rep.hex()} is not SERVING"


def cmd_alive(args):
    creds = tls_creds(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    bad = 0
    for a in args.addrs.split(","):
        why = health_ok(make_channel(a, creds))
        if why:
            bad += 1
            print(f"DEFECT {a} does not serve after the attack: {why}")
    return 1 if bad else 0


def tls_creds(ca, cert=None, key=None):
    def rd(p):
        with open(p, "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(root_certificates=rd(ca),
                                        private_key=rd(key) if key else None,
                                        certificate_chain=rd(cert) if cert else None)


# ---- the attack --------------------------------------------------------------


class Case:
    """One request and what the node must answer: a status in expect, and,
    when that is OK, a reply that check (if any) finds right.  note: said
    once when the answer's status is in note_on (tolerated, but worth
    knowing).  refusal: for an expected status other than OK, a check of
    its details (the reason the node gives), as check is of a reply."""
    __slots__ = ("method", "req", "expect", "desc", "check", "note", "timeout", "compression",
                 "metadata", "note_on", "config", "refusal")

    def __init__(self, method, req, expect, desc, check=None, note=None, timeout=15.0,
                 compression=None, metadata=None, note_on=("OK",), config=NODE, refusal=None):
        self.method, self.req, self.expect, self.desc, self.check = (
            method, req, frozenset(expect), desc, check)
        self.note, self.timeout, self.compression, self.metadata = (
            note, timeout, compression, metadata)
        self.note_on = note_on
        self.config = config  # NODE, NO_CONFIG or a fingerprint
        self.refusal = refusal


INVALID = {"INVALID_ARGUMENT"}
# Messages larger than the server takes (lib/net/grpc_limits.c): gRPC's own
# limit answers RESOURCE_EXHAUSTED before our code sees them.
TOO_BIG = {"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"}


def check_health_reply(rep):
    return None if rep in (b"\x08\x01", b"\x08\x02") else f"not a HealthCheckResponse: {rep.hex()}"


def check_all_refused(n_items, id_=None):
    """A BatchReply of n_items items, each ok=false (refused); on a stream,
    echoing the request's id_ (a unary Batch reply carries id 0)."""
    def check(rep):
        f = decode(rep)
        items = [decode(x) for x in f.get(1, [])]
        if len(items) != n_items:
            return f"{len(items)} reply items for {n_items} requests"
        for i, it in enumerate(items):
            if one(it, 8):
                return f"item {i} ({one(it, 1)} key {s64(one(it, 2))}) answered ok=true"
        if id_ is not None and one(f, 2) != id_:
            return f"reply id {one(f, 2)} for request id {id_}"
        return None
    return check


class Attack:
    def __init__(self, addrs, pids, seed, scale, creds=None):
        self.addrs = addrs
        self.pids = dict(zip(addrs, pids)) if pids else {}
        self.rng = random.Random(seed)
        self.seed = seed
        self.scale = scale
        self.creds = creds
        self.chans = {a: make_channel(a, creds) for a in addrs}
        self.stubs = {}
        self.defects = []
        self.notes = set()
        self.dead = set()
        self.calls = 0
        self.codes = collections.Counter()
        self.recent = {a: collections.deque(maxlen=40) for a in addrs}
        self.mu = threading.Lock()
        self.only = None
        self.oor_items = []
        self.tls_dir = None
        self.client_cert_auth = False
        self.after_death = 0
        self.fp = {}  # addr -> the fingerprint it reported (learn_configs)
        self.fixed_fp = None  # --config

    # -- bookkeeping

    def defect(self, text, always=False):
        # Past 40 lines only counted: one broken behaviour repeats.
        with self.mu:
            self.defects.append(text)
            if len(self.defects) <= 40 or always:
                print("DEFECT " + text, flush=True)

    def process_gone(self, addr):
        pid = self.pids.get(addr)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
                return f.read().split(") ", 1)[1].startswith("Z")
        except (ProcessLookupError, OSError):
            return True

    def node_died(self, addr, phase, why):
        """Reported once per node, with the requests it last received; its
        later failures are only counted."""
        with self.mu:
            if addr in self.dead:
                return
            self.dead.add(addr)
        last = "\n    ".join(f"[{p}] {m} {d}: {h}" for p, m, d, h in list(self.recent[addr]))
        self.defect(f"node {addr} died or stopped answering during phase '{phase}' ({why}); "
                    f"its last requests, newest last:\n    {last}", always=True)

    def note(self, text):
        with self.mu:
            if text not in self.notes:
                self.notes.add(text)
                print("NOTE " + text, flush=True)

    def learn_configs(self):
        """Each node's fingerprint, from its Stats (or --config)."""
        for a in self.addrs:
            fp, why = (self.fixed_fp, None) if self.fixed_fp else node_config(self.chans[a])
            self.fp[a] = fp
            print(f"node {a}: configuration fingerprint "
                  f"{f'{fp:016x}' if fp else f'unknown ({why}): replica requests carry none'}",
                  flush=True)

    def wire(self, addr, method, req, config=NODE):
        """req as sent to addr: the config field in front of it."""
        return config_field(method, self.fp.get(addr) if config == NODE else config) + req

    def stub(self, addr, method):
        k = (addr, method)
        if k not in self.stubs:
            self.stubs[k] = self.chans[addr].unary_unary(method)
        return self.stubs[k]

    def live_addrs(self):
        return [a for a in self.addrs if a not in self.dead]

    def judge(self, phase, addr, case, code, details, rep):
        """Compares one answer with what the case expects."""
        with self.mu:
            self.calls += 1
            self.codes[code] += 1
        what = (f"[{phase}] node {addr} {case.method} {case.desc}: request {hexs(case.req)}")
        if code not in case.expect and code == "UNAVAILABLE":
            if addr in self.dead:
                with self.mu:
                    self.after_death += 1
                return False
            if self.process_gone(addr):
                self.node_died(addr, phase, "its process is gone")
                with self.mu:
                    self.after_death += 1
                return False
        if code not in case.expect:
            kind = {"DEADLINE_EXCEEDED": "hang (no answer in time)",
                    "UNAVAILABLE": "node unreachable"}.get(code, "wrong status")
            self.defect(f"{kind}: {what}: expected {'/'.join(sorted(case.expect))}, "
                        f"got {code} '{details}'")
            return False
        if case.note and code in case.note_on:
            self.note(case.note)
        if code == "OK" and case.check is not None:
            try:
                why = case.check(rep)
            except ValueError as e:
                why = f"reply does not parse ({e}): {hexs(rep)}"
            if why:
                self.defect(f"wrong reply: {what}: {why}")
                return False
        if code != "OK" and case.refusal is not None:
            why = case.refusal(details or "")
            if why:
                self.defect(f"wrong refusal: {what}: {code} '{details}': {why}")
                return False
        return True

    def alive_check(self, phase):
        """After each phase: every node's process runs and answers health."""
        for a in self.live_addrs():
            why = ("its process is gone" if self.process_gone(a) else
                   health_ok(self.chans[a], timeout=5.0))
            if why:
                self.node_died(a, phase, why)

    # -- sending

    def run_unary(self, phase, cases, seconds=None, max_count=None, window=24, addrs=None):
        """Sends cases round-robin over the nodes, window calls in flight,
        until the cases, the time or the count run out."""
        t0 = time.monotonic()
        end = t0 + seconds * self.scale if seconds else None
        inflight = collections.deque()
        n = 0
        targets = addrs or self.live_addrs()
        if not targets:
            return 0
        for case in cases:
            if (max_count is not None and n >= max_count) or (end and time.monotonic() >= end):
                break
            a = targets[n % len(targets)]
            n += 1
            self.recent[a].append((phase, case.method, case.desc, hexs(case.req, 48)))
            fut = self.stub(a, case.method).future(self.wire(a, case.method, case.req, case.config),
                                                   timeout=case.timeout,
                                                   metadata=case.metadata,
                                                   compression=case.compression)
            inflight.append((a, case, fut))
            while len(inflight) >= window:
                self.finish(phase, *inflight.popleft())
        while inflight:
            self.finish(phase, *inflight.popleft())
        return n

    def finish(self, phase, addr, case, fut):
        try:
            rep, code, details = fut.result(), "OK", ""
        except grpc.RpcError as e:
            rep, code, details = None, e.code().name, e.details()
        self.judge(phase, addr, case, code, details, rep)

    def phase(self, name, fn, *args):
        if self.only and name not in self.only:
            return
        t0 = time.monotonic()
        c0, d0 = self.calls, len(self.defects)
        before = collections.Counter(self.codes)
        fn(*args)
        self.alive_check(name)
        codes = self.codes - before
        print(f"phase {name}: {self.calls - c0} calls in {time.monotonic() - t0:.1f} s, "
              f"{len(self.defects) - d0} defects; statuses {dict(sorted(codes.items()))}",
              flush=True)

    # -- case generators

    def base_messages(self):
        """A well-formed message of each method on hostile keys: what the
        truncations and mutations start from (never sent whole)."""
        h = HOSTILE + 500
        return {
            M_PUT: put(h, 123456789123),
            M_GET: get(-(10**15)),
            M_LOCK: lock(h + 1, 0xDEADBEEFCAFE, 500),
            M_UNLOCK: unlock(h + 1, 0xDEADBEEFCAFE),
            M_WRITE: write(h + 2, -5, 1 << 40, 0xABCDEF123456, 0xABCDEF123456),
            M_READ: read(h + 3),
            M_SCAN: scan(h, None, 100, 3),
            M_BATCH: batch([item(ITEM_WRITE, h + 4, 99, 7, 9, 9),
                            item(ITEM_LOCK, h + 5, owner=11, lease=300),
                            item(ITEM_READ, h + 6), item(ITEM_UNLOCK, h + 5, owner=11)], 77),
            M_HEALTH: health(b"dht.KeyValue"),
            M_STATS: stats_request(),
        }

    def malformed(self, method):
        """Endless malformed requests of one method, every kind in turn:
        truncations, wrong wire types, huge and negative lengths, overlong
        varints, groups, mutations of a valid message and random bytes."""
        schema = UNARY[method]
        base = self.base_messages()[method]
        expect, check, note = INVALID, None, None
        if method == M_HEALTH:
            # The node answers every health request without parsing it
            # (lib/net/grpc_health.c): SERVING is tolerated.
            expect, check = INVALID | {"OK"}, check_health_reply
            note = "Health/Check answers SERVING to a malformed request (it never parses it)"
        fixed = []  # (bytes, description, expected statuses, note)
        for cut in range(1, len(base)):
            if broken(base[:cut], schema):
                fixed.append((base[:cut], f"truncated to {cut} of {len(base)} bytes", expect, note))
        fields = SCHEMAS[schema]
        for num in sorted(fields):
            declared = {BOOL: VARINT}.get(fields[num], fields[num])
            declared = LEN if declared in SCHEMAS else declared
            for wt, payload in ((I64, b"\x01" * 8), (I32, b"\x01" * 4), (LEN, varint(3) + b"abc"),
                                (VARINT, varint(HOSTILE)), (SGROUP, tag(num, EGROUP)),
                                (EGROUP, b""), (6, b""), (7, b"")):
                if wt == declared:
                    continue
                exp, nt = expect, note
                if fields[num] == BOOL and wt not in (SGROUP, EGROUP, 6, 7):
                    # protobuf-c reads a bool from any wire type; harmless
                    # here (Scan's from_start), so tolerated and noted
                    exp = INVALID | {"OK"}
                    nt = (f"{method} accepts its bool field {num} in wire type {wt} "
                          f"(protobuf-c's leniency; Google's protobuf would skip the field)")
                fixed.append((base + tag(num, wt) + payload, f"field {num} in wire type {wt}", exp, nt))
                fixed.append((tag(num, wt) + payload + base, f"field {num} in wire type {wt} first",
                              exp, nt))
        for num in (1, 2, 15, 536870911):
            for ln in (1 << 31, (1 << 32) - 1, (1 << 32) + 5, 1 << 63, U64, 200):
                # U64 is the varint of -1: a "negative" length
                fixed.append((base + tag(num, LEN) + varint(ln) + b"xyz",
                              f"field {num} of length {ln if ln != U64 else -1}", expect, note))
            fixed.append((base + tag(num, LEN) + b"\xff" * 10 + b"\x01",
                          f"field {num} with an 11-byte length", expect, note))
        fixed.append((base + tag(1, VARINT) + b"\x80" * 10 + b"\x00", "an 11-byte varint", expect,
                      note))
        fixed.append((b"\x80", "a lone continuation byte", expect, note))
        fixed.append((b"\x00", "tag of field 0 and no value", expect, note))
        if schema == "batch":
            for bad_item, what in ((b"\x08", "truncated item"),
                                   (tag(1, LEN) + b"\x01x", "item type as bytes"),
                                   (item(ITEM_READ, HOSTILE) + tag(3, LEN) + varint(U64),
                                    "item with a field of length -1"),
                                   (item(ITEM_READ, HOSTILE) + tag(9, SGROUP), "item with a group"),
                                   (item(ITEM_READ, HOSTILE) + b"\x80", "item ending in a broken tag")):
                fixed.append((batch([item(ITEM_READ, HOSTILE + 7), bad_item], 5), what, expect, note))
        for b, d, exp, _ in fixed:
            if "OK" not in exp and not broken(b, schema):
                raise AssertionError(f"not surely malformed: {d} {b.hex()}")
        rng = self.rng
        k = 0
        while True:
            b, d, exp, nt = fixed[k % len(fixed)]
            k += 1
            yield Case(method, b, exp, d, check, nt)
            # then a random one, made surely malformed
            if rng.random() < 0.4:
                n = rng.choice((1, 2, 3, 8, 17, 64, 300, 2000))
                raw = bytes(rng.getrandbits(8) for _ in range(n))
                desc = f"{n} random bytes"
            else:
                raw = bytearray(base)
                for _ in range(rng.randint(1, 4)):
                    op = rng.random()
                    p = rng.randrange(len(raw) + 1)
                    if op < 0.4 and raw:
                        raw[min(p, len(raw) - 1)] = rng.getrandbits(8)
                    elif op < 0.7:
                        raw[p:p] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 6)))
                    elif raw:
                        del raw[p:p + rng.randint(1, 4)]
                raw = bytes(raw)
                desc = "mutated valid message"
            mb = make_broken(raw, schema)
            yield Case(method, mb, expect, desc + (" + broken tail" if mb != raw else ""), check,
                       note)

    def out_of_range(self):
        """Well-formed requests with a field outside what replicas accept:
        refused with INVALID_ARGUMENT, and as batch items each ok=false.
        Aimed at seeded hostile keys and at one honest key."""
        singles = []
        for k in (SEEDED[0], SEEDED[9], HONEST_TARGET):
            singles += [
                (M_LOCK, lock(k, 1, 0), ITEM_LOCK, dict(owner=1, lease=0), "lease 0"),
                (M_LOCK, lock(k, 1, (1 << 32) - 1), ITEM_LOCK, dict(owner=1, lease=(1 << 32) - 1),
                 "lease 2^32-1 ms"),
                (M_LOCK, lock(k, 7, LEASE_MAX_MS + 1), ITEM_LOCK, dict(owner=7, lease=LEASE_MAX_MS + 1),
                 "lease 60001 ms"),
                (M_LOCK, lock(k, 0, 500), ITEM_LOCK, dict(owner=0, lease=500), "owner 0"),
                (M_UNLOCK, unlock(k, 0), ITEM_UNLOCK, dict(owner=0), "unlock owner 0"),
                (M_WRITE, write(k, -777, 0, 7), ITEM_WRITE, dict(value=-777, counter=0, writer=7),
                 "counter 0"),
                (M_WRITE, write(k, -777, U64, 7), ITEM_WRITE, dict(value=-777, counter=U64, writer=7),
                 "counter 2^64-1"),
                (M_WRITE, write(k, -777, COUNTER_MAX + 1, 7), ITEM_WRITE,
                 dict(value=-777, counter=COUNTER_MAX + 1, writer=7), "counter 2^62+1"),
                (M_WRITE, write(k, -777, 1 << 63, U64, U64), ITEM_WRITE,
                 dict(value=-777, counter=1 << 63, writer=U64, owner=U64), "counter 2^63 writer 2^64-1"),
                (M_WRITE, write(k, -777, 5, 0), ITEM_WRITE, dict(value=-777, counter=5, writer=0),
                 "writer 0"),
                (M_WRITE, write(k, -777, U64, 0, 1), ITEM_WRITE,
                 dict(value=-777, counter=U64, writer=0, owner=1), "counter 2^64-1 writer 0"),
            ]
        cases = []
        for m, req, _, _, d in singles:
            cases.append(Case(m, req, INVALID, d + f" (key {s64(decode(req)[1][0])})"))
        for limit, stripe, d in ((0xFFFFFFFF, None, "scan limit 2^32-1"),
                                 (4097, None, "scan limit 4097"),
                                 (10, 0xFFFFFFFF, "scan stripe 2^32-1"),
                                 (10, 65, "scan stripe 65")):
            cases.append(Case(M_SCAN, scan(None, True, limit, stripe), INVALID, d))
            cases.append(Case(M_SCAN, scan(HOSTILE, None, limit, stripe), INVALID, d + " after a key"))
        # The same as batch items: one batch each, and all of them in one.
        items = []
        for _, req, t, kw, d in singles:
            k = s64(decode(req)[1][0])
            it = item(t, k, **kw)
            items.append(it)
            cases.append(Case(M_BATCH, batch([it], 41), {"OK"}, "batch item: " + d,
                              check_all_refused(1)))
        cases.append(Case(M_BATCH, batch(items, U64), {"OK"},
                          f"batch of {len(items)} out-of-range items",
                          check_all_refused(len(items))))
        cases.append(Case(M_BATCH, batch(items * 100), {"OK"},
                          f"batch of {len(items) * 100} out-of-range items",
                          check_all_refused(len(items) * 100)))
        # Item types that are not replica requests refuse the whole batch.
        for t in (0, 5, 6, 7, 99, 0xFFFFFFFF, U64):
            cases.append(Case(M_BATCH, batch([item(ITEM_READ, HOSTILE), item(t, SEEDED[1], 1, 9, 9, 9, 9)]),
                              INVALID, f"batch item type {t}"))
        self.oor_items = items
        return cases

    def oversized(self):
        """Messages of 300 KiB to 8 MiB: a big unknown field, then a broken
        tail, so that even a server without a size limit refuses them."""
        cases = []
        sizes = (300 << 10, 3 << 20, 8 << 20)
        for m in UNARY:
            for size in sizes:
                b = self.base_messages()[m] + tag(14, LEN) + varint(size) + b"\x41" * size
                expect = TOO_BIG if m != M_HEALTH else TOO_BIG | {"OK"}
                cases.append(Case(m, b + BROKEN_TAIL, expect,
                                  f"{size >> 10} KiB unknown field then a broken tail",
                                  check_health_reply if m == M_HEALTH else None))
        for n, it, d in ((100000, item(ITEM_READ, HOSTILE + 9), "reads of a hostile key"),
                         (100000, b"", "empty items (type 0)"),
                         (100000, item(ITEM_WRITE, SEEDED[2], -1, U64, 7), "writes of counter 2^64-1"),
                         (4097, item(ITEM_READ, HOSTILE + 9), "reads, one past the item limit"),
                         (65536, item(ITEM_LOCK, SEEDED[3], owner=3, lease=0), "locks of lease 0")):
            cases.append(Case(M_BATCH, batch([it] * n, 1), TOO_BIG, f"batch of {n} items: {d}"))
        for m in UNKNOWN_METHODS[:2]:
            cases.append(Case(m, b"\x41" * (3 << 20), TOO_BIG | {"UNIMPLEMENTED"},
                              "3 MiB to an unknown method"))
        return cases

    def unknown_methods(self):
        cases = []
        for m in UNKNOWN_METHODS:
            for req in (b"", put(HOSTILE, 1), b"\xff\xff"):
                expect = {"UNIMPLEMENTED"}
                if len(m) > 1000:  # a path that long may be refused before routing
                    expect |= {"RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "INVALID_ARGUMENT"}
                cases.append(Case(m, req, expect, f"unknown method ({len(m)} chars)"))
        return cases

    # -- phases

    def p_malformed(self):
        per = 3.0
        for m in UNARY:
            n = self.run_unary("malformed " + m, self.malformed(m), seconds=per, max_count=4000)
            print(f"  {m}: {n} malformed requests", flush=True)

    def p_out_of_range(self):
        self.run_unary("out-of-range", self.out_of_range(), window=8)

    def p_oversized(self):
        self.run_unary("oversized", self.oversized(), window=3)

    def p_unknown(self):
        # On a channel of their own: a path longer than the server's
        # metadata limit may reset the connection, which would fail the
        # other calls on it.
        saved = self.swap_channels(self.creds)
        try:
            self.run_unary("unknown methods", self.unknown_methods(), window=4)
        finally:
            self.restore_channels(saved)

    def p_concurrent(self):
        """Bursts of 1,500 calls in flight at once: malformed ones over
        every method, well-formed out-of-range ones, then harmless reads."""
        gens = [self.malformed(m) for m in UNARY if m != M_HEALTH]
        cases = []
        for i in range(1500):
            cases.append(next(gens[i % len(gens)]))
        self.run_unary("concurrent malformed", cases, window=1500)
        oor = [c for c in self.out_of_range() if c.expect == INVALID]
        self.run_unary("concurrent out-of-range", (oor[i % len(oor)] for i in range(1500)),
                       window=1500)
        # Harmless but costly: each Get runs the protocol, each Scan copies
        # a page; all 1,500 must be answered in time.
        reads = [Case(M_GET, get(SEEDED[i % len(SEEDED)]), {"OK"}, "get of a seeded key",
                      timeout=30.0) for i in range(1000)]
        reads += [Case(M_SCAN, scan(None, True, 4096), {"OK"}, "scan of a full page",
                       timeout=30.0) for _ in range(250)]
        reads += [Case(M_READ, read(HOSTILE + i), {"OK"}, "read", timeout=30.0) for i in range(250)]
        random.Random(self.seed).shuffle(reads)
        self.run_unary("concurrent reads", reads, window=1500)

    def stream_call(self, addr, requests, timeout=15.0, read=True, config=NODE):
        """One Stream call: (status, details, replies).  config: what every
        message carries, or a list of one per message."""
        configs = config if isinstance(config, list) else [config] * len(requests)
        msgs = [self.wire(addr, M_STREAM, r, c) for r, c in zip(requests, configs)]
        call = self.chans[addr].stream_stream(M_STREAM)(iter(msgs), timeout=timeout)
        replies = []
        try:
            if read:
                for r in call:
                    replies.append(r)
            return call.code().name, call.details() or "", replies
        except grpc.RpcError as e:
            return e.code().name, e.details() or "", replies

    def p_streams(self):
        phase = "streams"
        items = self.oor_items
        good = batch(items, 1)
        cases = []  # (desc, [requests], expected statuses, check(replies) or None)

        def refused_replies(ids, n_items):
            """One reply per batch, each echoing its id (in any order)."""
            def check(replies):
                if len(replies) != len(ids):
                    return f"{len(replies)} replies for {len(ids)} batches"
                got = sorted(one(decode(r), 2) for r in replies)
                if got != sorted(ids):
                    return f"reply ids {got} for request ids {sorted(ids)}"
                for r in replies:
                    why = check_all_refused(n_items)(r)
                    if why:
                        return why
                return None
            return check

        cases.append(("no messages at all", [], {"OK"}, refused_replies([], 0)))
        ids = [1, 2, 3, U64, 0]
        cases.append(("out-of-range batches", [batch(items, i) for i in ids], {"OK"},
                      refused_replies(ids, len(items))))
        for g, d in ((b"\xff" * 5, "garbage"), (good[:7], "a truncated batch"),
                     (batch([item(ITEM_READ, HOSTILE), item(99, HOSTILE)], 3), "item type 99"),
                     (batch([item(0, HOSTILE)], 3), "item type 0"),
                     (good + tag(1, LEN) + varint(U64), "a batch with an item of length -1"),
                     (batch([item(ITEM_READ, HOSTILE + 9)] * 100000, 4), "a batch of 100,000 items"),
                     (batch([item(ITEM_READ, HOSTILE + 9)] * 4097, 4), "a batch of 4097 items"),
                     (b"\x41" * (3 << 20) + BROKEN_TAIL, "3 MiB of junk")):
            exp = INVALID | ({"RESOURCE_EXHAUSTED"} if len(g) > 200000 else set())
            cases.append((d, [g], exp, None))
            # after good batches: their replies may or may not come before
            # the stream fails, but none may say ok=true
            cases.append((f"out-of-range batches then {d}", [good, good, g, good], exp,
                          lambda rs: next((w for w in (check_all_refused(len(items))(r) for r in rs)
                                           if w), None)))
        for desc, reqs, exp, check in cases:
            for a in self.live_addrs():
                t = time.monotonic()
                code, details, replies = self.stream_call(a, reqs)
                self.recent[a].append((phase, M_STREAM, desc, ""))
                case = Case(M_STREAM, b"".join(reqs)[:4096], exp, f"stream of {desc}")
                if self.judge(phase, a, case, code, details, None) and check is not None:
                    why = check(replies)
                    if why:
                        self.defect(f"wrong reply: [{phase}] node {a} stream of {desc}: {why}")
                if time.monotonic() - t > 10:
                    self.defect(f"slow: [{phase}] node {a} stream of {desc} took "
                                f"{time.monotonic() - t:.1f} s")

    def p_many_streams(self):
        """200 streams open at once on each node, each sending out-of-range
        batches and reading the refusals."""
        phase = "many streams"
        items = self.oor_items
        results = []
        mu = threading.Lock()

        def one_stream(a, i):
            code, details, replies = self.stream_call(a, [batch(items, i), batch(items, i + 1)],
                                                      timeout=30.0)
            with mu:
                results.append((a, i, code, details, replies))

        threads = []
        for a in self.live_addrs():
            for i in range(200):
                th = threading.Thread(target=one_stream, args=(a, i * 2 + 1), daemon=True)
                th.start()
                threads.append(th)
        for th in threads:
            th.join(30)
        if any(th.is_alive() for th in threads):
            self.defect(f"hang: [{phase}] {sum(th.is_alive() for th in threads)} streams "
                        f"still open after 30 s")
        for a, i, code, details, replies in results:
            case = Case(M_STREAM, batch(items, i), {"OK"}, f"stream {i} of 200 concurrent")
            if self.judge(phase, a, case, code, details, None):
                ids = sorted(one(decode(r), 2) for r in replies)
                why = (f"reply ids {ids} for request ids {[i, i + 1]}" if ids != [i, i + 1] else
                       next((w for w in (check_all_refused(len(items))(r) for r in replies) if w),
                            None))
                if why:
                    self.defect(f"wrong reply: [{phase}] node {a} stream {i}: {why}")

    def p_unread_streams(self, seconds=3.0):
        """Streams that send refused batches as fast as the node takes them
        and never read a reply, 8 per node, while other calls go on."""
        phase = "unread streams"
        items = self.oor_items
        stop = time.monotonic() + seconds * self.scale
        sent = collections.Counter()
        chans, calls = [], []

        def requests(a):
            msg = self.wire(a, M_STREAM, batch(items * 20, 9))
            while time.monotonic() < stop:
                sent[a] += 1
                yield msg

        for a in self.live_addrs():
            ch = make_channel(a, self.creds)
            chans.append(ch)
            for _ in range(8):
                calls.append(ch.stream_stream(M_STREAM)(requests(a), timeout=60))
        # meanwhile, refused unary calls must still be answered
        oor = [c for c in self.out_of_range() if c.expect == INVALID]
        while time.monotonic() < stop:
            self.run_unary(phase, oor[:20], window=8)
        for c in calls:
            c.cancel()
        for ch in chans:
            ch.close()
        print(f"  {dict(sent)} batches of {len(items) * 20} refused items sent, no reply read",
              flush=True)

    def p_stream_churn(self, seconds=4.0):
        """Streams that end in every way while the node still has work for
        them (the server pauses reading a stream whose replies pile up):
        cancelled after flooding, cancelled after one reply, half-closed
        and drained, or sent garbage behind a backlog.  12 at a time."""
        phase = "stream churn"
        items = self.oor_items
        msg = batch(items * 10, 1)
        stop = time.monotonic() + seconds * self.scale
        counts = collections.Counter()
        chans = {a: make_channel(a, self.creds) for a in self.live_addrs()}

        def worker(k):
            rng = random.Random(self.seed * 1000 + k)
            addrs = list(chans)
            while time.monotonic() < stop:
                a = addrs[rng.randrange(len(addrs))]
                kind = rng.choice(("flood-cancel", "one-reply-cancel", "drain", "garbage-after"))
                n = rng.choice((1, 5, 70, 300))
                ids = list(range(1, n + 1))
                if kind == "garbage-after":
                    reqs = [batch(items * 10, i) for i in ids] + [b"\xff\xff"]
                elif kind == "drain":
                    reqs = [batch(items * 10, i) for i in ids]
                else:
                    reqs = [msg] * n
                reqs = iter([self.wire(a, M_STREAM, r) for r in reqs])
                call = chans[a].stream_stream(M_STREAM)(reqs, timeout=20)
                self.recent[a].append((phase, M_STREAM, f"{kind} of {n} batches", ""))
                code, replies = "OK", []
                try:
                    if kind == "flood-cancel":
                        time.sleep(rng.choice((0, 0.001, 0.01, 0.05)))
                        call.cancel()
                        code = "CANCELLED"
                    elif kind == "one-reply-cancel":
                        next(call)
                        call.cancel()
                        code = "CANCELLED"
                    else:
                        replies = list(call)
                except grpc.RpcError as e:
                    code = e.code().name
                except StopIteration:
                    code = call.code().name
                counts[kind] += 1
                if kind == "drain":
                    ok = code == "OK" and sorted(one(decode(r), 2) for r in replies) == ids
                    if not ok:
                        self.defect(f"[{phase}] node {a}: a stream of {n} out-of-range batches, "
                                    f"half-closed and read: {code}, {len(replies)} replies")
                    elif any(check_all_refused(len(items) * 10)(r) for r in replies):
                        self.defect(f"wrong reply: [{phase}] node {a}: an item answered ok=true")
                elif kind == "garbage-after" and code not in ("INVALID_ARGUMENT",):
                    self.defect(f"wrong status: [{phase}] node {a}: {n} batches then garbage: "
                                f"{code}, expected INVALID_ARGUMENT")
                with self.mu:
                    self.calls += 1
                    self.codes[code] += 1

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(12)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(seconds * self.scale + 30)
        if any(th.is_alive() for th in threads):
            self.defect(f"hang: [{phase}] a stream did not end 30 s after the phase")
        for c in chans.values():
            c.close()
        print(f"  {dict(counts)}", flush=True)

    def raw_connect(self, addr):
        host, port = addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
        if self.tls_dir:  # TLS without a client certificate: the handshake allows it
            ctx = ssl.create_default_context(cafile=os.path.join(self.tls_dir, "ca.crt"))
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=host)
        sock.settimeout(0.2)
        return sock

    def p_raw_http2(self, seconds=1.5):
        """Below gRPC, on sockets of our own: bytes that are not HTTP/2,
        frames of garbage, rapid reset (streams opened and cancelled at
        once, thousands), PING and SETTINGS floods, an endless header
        block, and gRPC messages whose length prefix lies (4 GiB, or longer
        than what follows) or claims compression that was not negotiated.
        Judged by liveness (the phase's health check, the honest clients)
        and, for the endless header block, by the nodes' resident memory:
        the answers are in HPACK we do not decode.  What the memory check
        catches looks like CVE-2023-33953 (gRPC before 1.53.2 buffers an
        unfinished header block without bound; Debian ships 1.51.1)."""
        phase = "raw http/2"
        rng = random.Random(self.seed + 77)
        auth = self.addrs[0].encode()
        settings = h2_frame(H2_SETTINGS, 0, 0)

        def call_frames(sid, path, body, end=True):
            return (h2_frame(H2_HEADERS, END_HEADERS, sid, hpack_headers(path, auth)) +
                    h2_frame(H2_DATA, END_STREAM if end else 0, sid, body))

        oor = write(SEEDED[0], 1, U64, 1)  # refused if it were ever parsed
        scenarios = {
            "random bytes instead of HTTP/2": lambda: bytes(rng.getrandbits(8) for _ in range(4096)),
            "a preface, then random frames": lambda: H2_PREFACE + settings + b"".join(
                h2_frame(rng.randrange(256), rng.randrange(256), rng.randrange(1 << 31),
                         bytes(rng.getrandbits(8) for _ in range(rng.randrange(64))))
                for _ in range(200)),
            "rapid reset: 5,000 calls opened and cancelled": lambda: H2_PREFACE + settings + b"".join(
                h2_frame(H2_HEADERS, END_HEADERS, sid, hpack_headers(b"/dht.Replica/Write", auth)) +
                h2_frame(H2_RST, 0, sid, (8).to_bytes(4, "big"))
                for sid in range(1, 10000, 2)),
            "20,000 PINGs": lambda: H2_PREFACE + settings + h2_frame(H2_PING, 0, 0, bytes(8)) * 20000,
            "5,000 SETTINGS": lambda: H2_PREFACE + settings + h2_frame(
                H2_SETTINGS, 0, 0, (4).to_bytes(2, "big") + (1 << 30).to_bytes(4, "big")) * 5000,
            CONT_FLOOD: lambda: H2_PREFACE + settings +
                h2_frame(H2_HEADERS, 0, 1, hpack_headers(b"/dht.KeyValue/Get", auth)) +
                h2_frame(H2_CONT, 0, 1, b"\x00\x01a\x01b" * 3000) * 560,
            "gRPC length prefix of 4 GiB": lambda: H2_PREFACE + settings + call_frames(
                1, b"/dht.Replica/Write", grpc_frame(oor, length=0xFFFFFFFF)),
            "gRPC length prefix longer than the message": lambda: H2_PREFACE + settings + call_frames(
                1, b"/dht.Replica/Write", grpc_frame(oor, length=len(oor) + 100)),
            "gRPC compressed flag without an encoding": lambda: H2_PREFACE + settings + call_frames(
                1, b"/dht.Replica/Write", grpc_frame(oor, compressed=1)),
            "gRPC compressed flag 255": lambda: H2_PREFACE + settings + call_frames(
                1, b"/dht.KeyValue/Get", grpc_frame(get(HOSTILE), compressed=255)),
            "a half-sent call, left open": lambda: H2_PREFACE + settings + call_frames(
                1, b"/dht.Replica/Lock", grpc_frame(lock(SEEDED[0], 0, 5))[:3], end=False),
            "DATA on a stream never opened": lambda: H2_PREFACE + settings + h2_frame(
                H2_DATA, END_STREAM, 7, grpc_frame(oor)),
            "WINDOW_UPDATE overflow": lambda: H2_PREFACE + settings + h2_frame(
                H2_WINDOW, 0, 0, (0x7FFFFFFF).to_bytes(4, "big")) * 3,
        }
        for name, make in scenarios.items():
            payload = make()
            hung_up = 0
            rss0 = {a: rss_kb(self.pids.get(a)) for a in self.live_addrs()}
            for a in self.live_addrs():
                self.recent[a].append((phase, "(raw socket)", name, hexs(payload, 48)))
                t = time.monotonic()
                closed = False
                try:
                    sock = self.raw_connect(a)
                except OSError as e:
                    self.defect(f"[{phase}] node {a}: cannot connect for '{name}': {e}")
                    continue
                try:
                    stop = threading.Event()

                    def drain():  # read what the node says, so that it never blocks on us
                        nonlocal closed
                        while not stop.is_set():
                            try:
                                b = sock.recv(65536)
                            except (socket.timeout, ssl.SSLError, OSError):
                                if stop.is_set():
                                    return
                                continue
                            if not b:
                                closed = True
                                return

                    th = threading.Thread(target=drain, daemon=True)
                    th.start()
                    try:
                        for off in range(0, len(payload), 1 << 16):
                            sock.sendall(payload[off:off + (1 << 16)])
                            if time.monotonic() - t > seconds * self.scale:
                                break
                    except OSError:
                        closed = True  # the node hung up on us: fine
                    th.join(0.3)
                    stop.set()
                    th.join(1)
                    hung_up += closed
                finally:
                    try:
                        sock.close()
                    except OSError:
                        pass
                with self.mu:
                    self.calls += 1
                    self.codes["raw"] += 1
            grown = ""
            if name == CONT_FLOOD:
                # One connection's unfinished header block must not cost a
                # node much more than its 8 MiB; 48 MiB is a generous bound.
                time.sleep(1)
                for a in self.live_addrs():
                    r0, r1 = rss0[a], rss_kb(self.pids.get(a))
                    if r0 is None or r1 is None:
                        continue
                    grown += f" {a} +{(r1 - r0) >> 10} MiB"
                    if r1 - r0 > 48 << 10 and grpc_has_hpack_buffering_bug():
                        self.note(
                            f"known gRPC defect (CVE-2023-33953, fixed in gRPC 1.53.2; this "
                            f"machine's libgrpc is {os.environ.get('DHT_GRPC_UPSTREAM')}): [{phase}] "
                            f"node {a} grew from {r0 >> 10} to {r1 >> 10} MiB on an unfinished "
                            f"header block of {len(payload) >> 20} MiB")
                    elif r1 - r0 > 48 << 10:
                        self.defect(
                            f"memory: [{phase}] node {a} grew from {r0 >> 10} to {r1 >> 10} MiB "
                            f"(resident) on one connection that sent {len(payload) >> 20} MiB: "
                            f"HTTP/2 preface, SETTINGS, HEADERS of a /dht.KeyValue/Get call without "
                            f"END_HEADERS, then CONTINUATION frames without END_HEADERS, each 15,000 "
                            f"bytes of the HPACK literal 'a: b' (00 01 61 01 62) repeated; no "
                            f"certificate or valid call needed")
            print(f"  {name}: {len(payload)} bytes to each node, {hung_up} of "
                  f"{len(self.live_addrs())} hung up{grown}", flush=True)

    def p_scan_cursors(self):
        """Well-formed Scans with cursors at the edges (harmless: a scan
        changes nothing): each answered OK with a sane page."""
        def page_check(limit, stripe):
            def check(rep):
                f = decode(rep)
                n = len(f.get(1, []))
                if n > max(limit, 0):
                    return f"{n} entries for limit {limit}"
                if one(f, 4) > 64:
                    return f"next stripe {one(f, 4)} past the last (64)"
                if stripe is not None and stripe >= 64 and (n or one(f, 2)):
                    return f"stripe {stripe}: {n} entries, more={one(f, 2)}"
                return None
            return check
        cases = []
        for after in (None, 0, -1, HOSTILE, (1 << 63) - 1, -(1 << 63)):
            for from_start in (None, True):
                for limit in (0, 1, 4096):
                    for stripe in (None, 1, 63, 64):
                        cases.append(Case(M_SCAN, scan(after, from_start, limit, stripe), {"OK"},
                                          f"scan after {after} from_start {from_start} limit {limit} "
                                          f"stripe {stripe}", page_check(limit, stripe)))
        self.run_unary("scan cursors", cases, window=8)

    def p_deadlines(self):
        """Calls whose deadline passes while the node works on them (a
        node finishes a public call 5 ms before the caller's deadline),
        and calls cancelled at once: answered or expired, never a crash."""
        late = {"OK", "DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED"}
        cases = []
        for ms in (1, 2, 3, 4, 5, 6, 8, 12, 20):
            for k in (HOSTILE + 20, SEEDED[1], -5):
                # Replica requests within 20 ms of their deadline are not
                # sent (SEND_MARGIN_NS), so such a get fails even when idle.
                nt = (f"a Get with a {ms} ms deadline fails UNAVAILABLE ('replicas failed to "
                      f"answer') even on an idle cluster" if ms >= 12 else None)
                cases.append(Case(M_GET, get(k), late, f"get with a {ms} ms deadline",
                                  timeout=ms / 1000, note=nt, note_on=("UNAVAILABLE",)))
                cases.append(Case(M_READ, read(k), late, f"read with a {ms} ms deadline",
                                  timeout=ms / 1000))
            cases.append(Case(M_PUT, put(HOSTILE, 1) + BROKEN_TAIL, late | INVALID,
                              f"malformed put with a {ms} ms deadline", timeout=ms / 1000))
            cases.append(Case(M_WRITE, write(SEEDED[2], -3, U64, 1), late | INVALID,
                              f"counter 2^64-1 write with a {ms} ms deadline", timeout=ms / 1000))
        for _ in range(3):
            self.run_unary("deadlines", cases, window=64)
        # cancelled right after being sent
        futs = []
        for i in range(600):
            a = self.live_addrs()[i % len(self.live_addrs())]
            m, req = ((M_GET, get(HOSTILE + 30 + i % 7)) if i % 3 else
                      (M_BATCH, batch(self.oor_items * 10, 0)))
            futs.append(self.stub(a, m).future(self.wire(a, m, req), timeout=10))
            if i % 2 == 0:
                futs[-1].cancel()
        for f in futs:
            try:
                f.result()
            except grpc.FutureCancelledError:
                pass
            except grpc.RpcError:
                pass

    def p_compressed(self):
        """gzip-compressed requests: a bomb of 32 MiB that packs to a few
        dozen KiB, and small malformed or out-of-range ones."""
        gz = grpc.Compression.Gzip
        bomb = put(HOSTILE, 1) + tag(14, LEN) + varint(32 << 20) + bytes(32 << 20) + BROKEN_TAIL
        cases = [Case(M_PUT, bomb, TOO_BIG, "32 MiB of zeros, gzip", compression=gz),
                 Case(M_BATCH, batch([item(ITEM_READ, HOSTILE)] * 100000, 1), TOO_BIG,
                      "batch of 100,000 reads, gzip", compression=gz),
                 Case(M_WRITE, write(SEEDED[3], 5, 1 << 63, 9), INVALID, "counter 2^63, gzip",
                      compression=gz),
                 Case(M_LOCK, lock(SEEDED[3], 9, 0), INVALID, "lease 0, gzip", compression=gz),
                 Case(M_PUT, put(HOSTILE, 1)[:-1], INVALID, "truncated put, gzip", compression=gz)]
        self.run_unary("compressed", cases, window=2)

    def p_protocol(self):
        """gRPC-level misuse: a unary method called with no message or with
        two (a client stream), and the Stream method called as unary."""
        phase = "protocol misuse"
        refuse = {"INVALID_ARGUMENT", "CANCELLED", "INTERNAL", "UNIMPLEMENTED", "RESOURCE_EXHAUSTED"}
        for a in self.live_addrs():
            for m, msgs, d in ((M_WRITE, [], "no message"),
                               (M_WRITE, [write(SEEDED[4], 1, U64, 1)] * 2, "two out-of-range writes"),
                               (M_PUT, [put(HOSTILE, 1) + BROKEN_TAIL] * 3, "three malformed puts"),
                               (M_BATCH, [], "no message"),
                               (M_LOCK, [lock(SEEDED[4], 1, 0), b"\xff"], "two messages"),
                               (M_GET, [get(HOSTILE + 40)] * 2, "two gets")):
                call = self.chans[a].stream_stream(m)(iter([self.wire(a, m, x) for x in msgs]),
                                                      timeout=10)
                try:
                    replies = list(call)
                    code, details = call.code().name, call.details() or ""
                except grpc.RpcError as e:
                    code, details, replies = e.code().name, e.details() or "", []
                self.recent[a].append((phase, m, d, ""))
                exp = refuse
                if m == M_GET and code == "OK":
                    exp = refuse | {"OK"}  # the first get answered; harmless
                    if len(replies) != 1:
                        self.defect(f"wrong reply: [{phase}] node {a} {m} {d}: "
                                    f"{len(replies)} replies")
                self.judge(phase, a, Case(m, b"".join(msgs), exp, "as a stream of " + d),
                           code, details, None)
        items = self.oor_items
        cases = [Case(M_STREAM, batch(items, 12345), {"OK"}, "unary call of a batch stream",
                      check_all_refused(len(items), 12345)),
                 Case(M_STREAM, b"\xff\xff", INVALID, "unary call of a batch stream, garbage")]
        self.run_unary(phase, cases * 3, window=3)

    def p_metadata(self):
        """Health requests with odd service names and calls with oversized
        metadata, on channels of their own (an oversized header may reset
        the connection)."""
        cases = [Case(M_HEALTH, health(b"no.such.Service"), {"NOT_FOUND", "OK"},
                      "unknown service name", check_health_reply,
                      note="Health/Check answers SERVING for any service name, "
                           "where grpc.health.v1 says NOT_FOUND for an unknown one"),
                 Case(M_HEALTH, health(b"\xff\xfe" * 100), {"NOT_FOUND", "OK", "INVALID_ARGUMENT"},
                      "service name that is not UTF-8", check_health_reply),
                 Case(M_HEALTH, health(b"x" * 100000), {"NOT_FOUND", "OK", "INVALID_ARGUMENT"},
                      "100 KB service name", check_health_reply)]
        big = {"RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "CANCELLED", "INVALID_ARGUMENT"}
        for n, size in ((1, 20000), (1, 200000), (2000, 10), (50, 400)):
            md = tuple((f"x-hostile-{i}", "v" * size) for i in range(n))
            for m, req in ((M_GET, get(HOSTILE + 50)), (M_WRITE, write(SEEDED[5], 2, 0, 1))):
                exp = big | ({"OK"} if m == M_GET else INVALID)
                if n * size < 12000:
                    exp = {"OK"} if m == M_GET else INVALID
                cases.append(Case(m, req, exp, f"{n} metadata entries of {size} bytes",
                                  metadata=md))
        saved = self.swap_channels(self.creds)
        try:
            self.run_unary("metadata", cases, window=1)
        finally:
            self.restore_channels(saved)

    def swap_channels(self, creds, insecure=False):
        """Points the unary helpers at new channels (closing the current
        ones); returns what to restore."""
        saved = (self.chans, self.stubs)
        self.stubs = {}
        self.chans = {a: (grpc.insecure_channel(a, options=CHANNEL_OPTIONS) if insecure
                          else make_channel(a, creds)) for a in self.addrs}
        return saved

    def restore_channels(self, saved):
        for c in self.chans.values():
            c.close()
        self.chans, self.stubs = saved

    def p_tls_identities(self):
        """TLS mode: callers that are not members.  Each sends, for a few
        seconds, well-formed in-range requests that would change the seeded
        keys, a fresh key and one honest key if they were served (Writes
        with a high version, 60-second Locks, Puts, batches and streams of
        them), plus reads, scans, malformed and unknown calls.  Without a
        certificate dht.Replica must answer UNAUTHENTICATED (KeyValue too,
        as the nodes run with --client-cert-auth); with the role-less one
        PERMISSION_DENIED; with another CA's certificate or in plaintext the
        handshake fails (UNAVAILABLE).  Nothing may change: run.sh compares
        every key outside the honest range, and the honest history covers
        key 5."""
        d = self.tls_dir
        ca = os.path.join(d, "ca.crt")
        pem = lambda n: (os.path.join(d, n + ".crt"), os.path.join(d, n + ".key"))
        fresh = HOSTILE + 77
        high = 1 << 61
        writes = [write(k, 4242 + i, high, 0xBAD0000 + i, 0) for i, k in enumerate(SEEDED)]
        writes += [write(HONEST_TARGET, -777, high, 0xBAD), write(fresh, 31337, 1, 0xBAD)]
        locks = [lock(k, 0xBAD, LEASE_MAX_MS) for k in SEEDED + [HONEST_TARGET, fresh]]
        items = ([item(ITEM_WRITE, k, 4242, high, 0xBAD, 0xBAD) for k in SEEDED + [fresh]] +
                 [item(ITEM_LOCK, k, owner=0xBAD, lease=LEASE_MAX_MS) for k in SEEDED] +
                 [item(ITEM_WRITE, HONEST_TARGET, -777, high, 0xBAD)])
        replica_reqs = ([(M_WRITE, w, "well-formed write") for w in writes] +
                        [(M_LOCK, x, "well-formed 60 s lock") for x in locks] +
                        [(M_UNLOCK, unlock(k, 0xBAD), "well-formed unlock") for k in SEEDED[:3]] +
                        [(M_BATCH, batch(items), "well-formed batch of writes and locks"),
                         (M_STREAM, batch(items, 7), "a batch of writes and locks, as a unary stream"),
                         (M_READ, read(SEEDED[0]), "read"), (M_SCAN, scan(None, True, 4096), "scan"),
                         (M_WRITE, write(SEEDED[0], 1, U64, 1), "out-of-range write"),
                         (M_WRITE, b"\xff\xff", "garbage write"),
                         (M_BATCH, b"\x0a\xff", "garbage batch"),
                         (M_CONTROL, fb(1, b"hi"), "control message")])
        kv_changing = [(M_PUT, put(fresh + 1, 5), "well-formed put of a fresh key"),
                       (M_PUT, put(SEEDED[6], 5), "well-formed put of a seeded key")]
        kv_harmless = [(M_GET, get(SEEDED[0]), "get"), (M_PUT, b"\xff\xff", "garbage put"),
                       (M_STATS, stats_request(), "stats"),
                       (M_STATS, b"\xff\xff", "garbage stats")]
        other = [(M_HEALTH, b"", "health"), ("/dht.Replica/Nope", b"", "unknown method")]
        unavailable = {"UNAVAILABLE"}
        kv_refused = "UNAUTHENTICATED" if self.client_cert_auth else None
        identities = [
            ("no client certificate", tls_creds(ca), False, "UNAUTHENTICATED", kv_refused),
            ("the role-less client certificate", tls_creds(ca, *pem("client")), False,
             "PERMISSION_DENIED", None),
            ("another CA's peer certificate", tls_creds(ca, *pem("other-peer")), False,
             "UNAVAILABLE", "UNAVAILABLE"),
            ("plaintext", None, True, "UNAVAILABLE", "UNAVAILABLE"),
        ]
        for who, creds, insecure, replica_code, kv_code in identities:
            phase = "tls: " + who
            cases = []
            for m, req, d in replica_reqs:
                cases.append(Case(m, req, {replica_code}, f"{d} with {who}"))
            for m, req, d in kv_changing:
                if kv_code:  # a served put would be a legitimate change otherwise
                    cases.append(Case(m, req, {kv_code}, f"{d} with {who}"))
            for m, req, d in kv_harmless:
                # dht.Admin is open like KeyValue
                exp = {kv_code} if kv_code else ({"OK"} if req in (get(SEEDED[0]), b"") else INVALID)
                cases.append(Case(m, req, exp, f"{d} with {who}"))
            for m, req, d in other:
                exp = unavailable if replica_code == "UNAVAILABLE" else (
                    {"OK"} if m == M_HEALTH else {"UNIMPLEMENTED"})
                cases.append(Case(m, req, exp, f"{d} with {who}"))
            saved = self.swap_channels(creds, insecure)
            try:
                end = time.monotonic() + 2.0 * self.scale
                n = 0
                while time.monotonic() < end:
                    n += self.run_unary(phase, cases, window=16)
                for a in self.live_addrs():
                    code, details, replies = self.stream_call(a, [batch(items, i) for i in range(3)])
                    if self.judge(phase, a, Case(M_STREAM, batch(items, 0), {replica_code},
                                                 f"stream of writes and locks with {who}"),
                                  code, details, None) and replies:
                        self.defect(f"[{phase}] node {a}: {len(replies)} stream replies "
                                    f"before the refusal")
                print(f"  {who}: {n} calls, dht.Replica {replica_code}, "
                      f"KeyValue {kv_code or 'served'}", flush=True)
            finally:
                self.restore_channels(saved)

    def p_configuration(self):
        """Replica requests with another configuration's fingerprint, or
        none: well-formed, in range, and such that they would change the
        seeded keys, a fresh key and one honest key if they were served
        (Writes with a high version, 60-second Locks, Unlocks, batches and
        streams of them), plus Reads and Scans.  Every one must be refused
        with FAILED_PRECONDITION (run.sh then finds every key outside the
        honest range unchanged, and the honest history covers key 5), also
        when out of range (the fingerprint is checked first), while a
        malformed one is still INVALID_ARGUMENT.  A stream ends at its first
        message with another fingerprint.  Skipped when the nodes report no
        fingerprint; a node that serves a probe Read of another
        configuration is reported, and then nothing that writes is sent."""
        phase = "configuration"
        live = [a for a in self.live_addrs() if self.fp.get(a)]
        if not live:
            self.note("configuration phase skipped: no node reported a fingerprint in its Stats")
            return
        refused = {"FAILED_PRECONDITION"}
        stats_ok = Case(M_STATS, stats_request(), {"OK"}, "stats", check_stats_reply(self.addrs))
        self.run_unary(phase, [stats_ok] * len(live), addrs=live)
        enforcing = []
        for a in live:
            probe = Case(M_READ, read(SEEDED[0]), refused, "probe read with another fingerprint "
                         "(the node does not check fingerprints: nothing that writes is sent)",
                         config=self.fp[a] ^ 1)
            self.recent[a].append((phase, M_READ, probe.desc, ""))
            try:
                self.stub(a, M_READ)(self.wire(a, M_READ, probe.req, probe.config), timeout=10)
                code, details = "OK", ""
            except grpc.RpcError as e:
                code, details = e.code().name, e.details() or ""
            if self.judge(phase, a, probe, code, details, None):
                enforcing.append(a)
        if not enforcing:
            return
        fresh = HOSTILE + 78
        high = 1 << 61
        keys = SEEDED + [HONEST_TARGET, fresh]
        items = ([item(ITEM_WRITE, k, 5151, high, 0xC0F, 0xC0F) for k in keys] +
                 [item(ITEM_LOCK, k, owner=0xC0F, lease=LEASE_MAX_MS) for k in keys] +
                 [item(ITEM_UNLOCK, k, owner=0xC0F) for k in SEEDED[:3]] +
                 [item(ITEM_READ, k) for k in SEEDED[:3]])
        reqs = ([(M_WRITE, write(k, 5151 + i, high, 0xC0F0 + i, 0), "well-formed write")
                 for i, k in enumerate(keys)] +
                [(M_LOCK, lock(k, 0xC0F, LEASE_MAX_MS), "well-formed 60 s lock") for k in keys] +
                [(M_UNLOCK, unlock(k, 0xC0F), "well-formed unlock") for k in SEEDED[:3]] +
                [(M_READ, read(SEEDED[1]), "read"), (M_SCAN, scan(None, True, 4096), "scan"),
                 (M_SCAN, scan(None, None, 0), "recovery probe scan (limit 0)"),
                 (M_BATCH, batch(items), "batch of writes, locks, unlocks and reads"),
                 (M_STREAM, batch(items, 7), "a batch of writes and locks, as a unary stream"),
                 (M_WRITE, write(SEEDED[0], 1, U64, 1), "out-of-range write"),
                 (M_LOCK, lock(SEEDED[0], 1, 0), "out-of-range lock")])
        malformed = [(M_WRITE, write(SEEDED[0], 1, high, 7)[:-1], "truncated write"),
                     (M_BATCH, batch(items)[:9], "truncated batch"),
                     (M_LOCK, b"\xff\xff", "garbage lock")]
        cases = []
        for a in enforcing:
            fp = self.fp[a]
            for cfg, what in ((NO_CONFIG, "no fingerprint"), (fp ^ 1, "fingerprint off by one bit"),
                              (U64, "fingerprint 2^64-1"),
                              (self.rng.getrandbits(64) | 1, "a random fingerprint")):
                if cfg == fp:
                    continue
                for m, req, d in reqs:
                    cases.append((a, Case(m, req, refused, f"{d} with {what}", config=cfg)))
                for m, req, d in malformed:
                    cases.append((a, Case(m, req, INVALID, f"{d} with {what}", config=cfg)))
                # The config field twice: the last one counts (proto3).
                num = CONFIG_FIELD["write"]
                cases.append((a, Case(M_WRITE, fv(num, fp) + write(SEEDED[2], 9, high, 0xC0F) +
                                      fv(num, cfg or 0), refused,
                                      f"write with the node's fingerprint first, then {what}",
                                      config=NO_CONFIG)))
        for a in enforcing:
            self.run_unary(phase, [c for b, c in cases if b == a], window=16, addrs=[a])
        for a in enforcing:
            fp = self.fp[a]
            good = batch(self.oor_items, 1)
            for desc, msgs, cfgs, want_replies in (
                    ("a batch of writes and locks with no fingerprint", [batch(items, 1)],
                     [NO_CONFIG], 0),
                    ("a batch of writes and locks with another fingerprint", [batch(items, 1)],
                     [fp ^ 2], 0),
                    ("out-of-range batches, then one with another fingerprint, then more",
                     [good, good, batch(items, 3), good], [NODE, NODE, fp ^ 4, NODE], None)):
                code, details, replies = self.stream_call(a, msgs, config=cfgs)
                self.recent[a].append((phase, M_STREAM, desc, ""))
                case = Case(M_STREAM, b"".join(msgs)[:4096], refused, "stream of " + desc)
                if self.judge(phase, a, case, code, details, None):
                    if want_replies == 0 and replies:
                        self.defect(f"[{phase}] node {a}: {len(replies)} replies on a stream "
                                    f"of {desc}")
                    for r in replies:  # only the good batches may be answered, all refused
                        why = check_all_refused(len(self.oor_items))(r)
                        if why:
                            self.defect(f"wrong reply: [{phase}] node {a} stream of {desc}: {why}")

    # -- the control channel

    def call_one(self, phase, a, case):
        """One unary call, judged: (judged right, reply or None)."""
        self.recent[a].append((phase, case.method, case.desc, hexs(case.req, 48)))
        try:
            rep = self.stub(a, case.method)(self.wire(a, case.method, case.req, case.config),
                                            timeout=case.timeout)
            code, details = "OK", ""
        except grpc.RpcError as e:
            rep, code, details = None, e.code().name, e.details() or ""
        return self.judge(phase, a, case, code, details, rep), rep

    def control_state(self, phase, a):
        """What node a says of its configuration, or None (a defect said why):
        its Stats, its answer to a QUERY (which must agree with them), the
        answer to a PREPARE of the lowest ballot (round 0, id 1) for its open
        slot (what its acceptor has promised and accepted there), and the
        values of the seeded keys read through it."""
        st = {}

        def stats_check(rep):
            f = decode(rep)
            st["stats"] = {"epoch": one(f, 10), "view": one(f, 11), "fingerprint": one(f, 4),
                           "cluster": one(f, 5), "replicas": one(f, 3), "removed": one(f, 14),
                           "members": sorted(m.decode() for m in f.get(2, [])),
                           "next members": sorted(m.decode() for m in f.get(12, [])),
                           "next replicas": one(f, 13)}
            return check_stats_reply(self.addrs)(rep)

        ok, _ = self.call_one(phase, a, Case(M_STATS, stats_request(), {"OK"}, "stats",
                                             stats_check))
        if not ok:
            return None
        s = st["stats"]

        def query_check(rep):
            m = ctl_reply(rep)
            if m["type"] != CTL_VIEW:
                return f"a {CTL_NAMES[m['type']]} answers a QUERY"
            v = m["view"]
            got = (v["epoch"], v["cluster"], v["removed"], bool(v["next"]))
            want = (s["epoch"], s["cluster"], bool(s["removed"]), bool(s["next members"]))
            if got != want:
                return (f"view (epoch, cluster id, removed, joint) {got}, its Stats say {want}")
            line = CONFIG_LINE.fullmatch(v["cur"].decode(errors="replace"))
            if (line is None or int(line.group(1)) != s["replicas"] or
                    sorted(line.group(3).split(",")) != s["members"]):
                return (f"view configuration {v['cur']!r}, its Stats say R={s['replicas']} "
                        f"members {s['members']}")
            st["view"] = v
            st["partitions"] = int(line.group(2))
            return None

        ok, _ = self.call_one(phase, a, Case(M_CONTROL, control_request(CTL_QUERY_BODY), {"OK"},
                                             "QUERY (before and after the phase)", query_check))
        if not ok:
            return None
        v = st["view"]
        st["decided"] = v["epoch"] + (1 if v["next"] else 0)

        def probe_check(rep):
            m = ctl_reply(rep)
            if m["type"] != CTL_AGREE or m["agree"] not in (AG_PROMISE, AG_NACK):
                return f"{m} answers a PREPARE of the open slot"
            st["promise"] = (AG_NAMES[m["agree"]], m["ballot"], m["accepted"], m["value"])
            return None

        ok, _ = self.call_one(phase, a, Case(
            M_CONTROL, control_request(ctl_agree(AG_PREPARE, st["decided"] + 1, (0, 1))), {"OK"},
            f"PREPARE of the open slot (epoch {st['decided'] + 1}) at the lowest ballot (0, 1)",
            probe_check))
        if not ok:
            return None
        values = {}

        def get_check(k):
            def check(rep):
                values[k] = s64(one(decode(rep), 1))
                return None
            return check

        cases = [Case(M_GET, get(k), {"OK"}, f"get of seeded key {k}", get_check(k))
                 for k in SEEDED]
        self.run_unary(phase, cases, window=8, addrs=[a])
        if len(values) != len(SEEDED):
            return None
        st["gets"] = values
        return st

    def control_cases(self, a, st):
        """The control requests of the general part of the phase for node a
        (whose state before it is st), each with what it must answer:
        (kind, Case) pairs."""
        v, s, decided = st["view"], st["stats"], st["decided"]
        epoch, cur, mine = v["epoch"], v["cur"], v["cluster"]
        partitions = st["partitions"]
        replicas = s["replicas"]
        members = s["members"]
        foreign = [f"10.254.{i}.7:4{i}01" for i in range(4)]
        out = []
        C = lambda body: control_request(body)

        def same_view(rep):
            m = ctl_reply(rep)
            if m["type"] != CTL_VIEW:
                return f"a {CTL_NAMES[m['type']]} where a VIEW was due"
            if m["view"] != v:
                return f"view {m['view']}, before the phase {v}"
            return None

        def agree_is(kind, ep, ballot, value=b""):
            def check(rep):
                m = ctl_reply(rep)
                got = (m["type"], m.get("agree"), m.get("epoch"), m.get("ballot"),
                       m.get("accepted"), m.get("value"))
                want = (CTL_AGREE, kind, ep, ballot, (0, 0), value)
                if got != want:
                    return (f"answered {CTL_NAMES[m['type']]} "
                            f"{AG_NAMES.get(m.get('agree'), m.get('agree'))} epoch "
                            f"{m.get('epoch')} ballot {m.get('ballot')} accepted "
                            f"{m.get('accepted')} value {m.get('value')!r}; expected "
                            f"{AG_NAMES[kind]} epoch {ep} ballot {ballot} value {value!r}")
                return None
            return check

        def reason(*needles, forbid=("control:",)):
            """A refusal that gives a reason containing one of needles (any
            when none), and none of forbid (a decoder refusal of a message
            that decodes means our decoder and the node's disagree)."""
            def check(details):
                if not details:
                    return "no reason given"
                if needles and not any(n in details for n in needles):
                    return f"the reason does not say {' or '.join(repr(n) for n in needles)}"
                if any(f in details for f in forbid):
                    return "a reason that does not fit the request"
                return None
            return check

        decoder_refusal = reason("control:", forbid=())

        def garbage(body, desc):
            """A control body this phase sends as garbage, with what the node
            must answer; None when it decodes to something a node may act on
            (never sent)."""
            if len(body) > CONTROL_BODY_MAX:
                return Case(M_CONTROL, C(body), INVALID, desc, refusal=reason("1 MiB"))
            try:
                m = ctl_decode(body)
            except CtlError as e:
                return Case(M_CONTROL, C(body), {"FAILED_PRECONDITION"}, f"{desc} ({e})",
                            refusal=decoder_refusal)
            if m["type"] in (CTL_VIEW, CTL_CHANGED):
                return Case(M_CONTROL, C(body), {"FAILED_PRECONDITION"},
                            f"{desc} (a {CTL_NAMES[m['type']]}: no request)",
                            refusal=reason("not a request"))
            if m["type"] == CTL_AGREE and (
                    m["agree"] not in (AG_PREPARE, AG_ACCEPT) or m["epoch"] == 0 or
                    m["ballot"] == (0, 0) or (m["agree"] == AG_ACCEPT and not m["value"])):
                return Case(M_CONTROL, C(body), {"FAILED_PRECONDITION"},
                            f"{desc} (an AGREE no acceptor takes)",
                            refusal=reason("malformed agreement"))
            return None

        def add(kind, case):
            if case is not None:
                out.append((kind, case))

        # -- ControlRequests that are not one: INVALID_ARGUMENT
        body_ok = CTL_QUERY_BODY
        for req, d in ((b"\x08\x01", "body as a varint"),
                       (tag(1, I64) + bytes(8), "body as a fixed64"),
                       (tag(1, I32) + bytes(4), "body as a fixed32"),
                       (tag(1, SGROUP) + tag(1, EGROUP), "body as a group"),
                       (tag(1, 6) + body_ok, "wire type 6"),
                       (b"\x0a" + varint(0xFFFFFFFF) + body_ok, "body length 2^32-1"),
                       (b"\x0a" + varint(U64) + body_ok, "body length -1"),
                       (b"\x0a" + varint(CONTROL_BODY_MAX + 1) + body_ok,
                        "body length 1 MiB + 1, 2 bytes present"),
                       (b"\x0a\x05" + body_ok, "body length past the end"),
                       (b"\x0a" + b"\xff" * 10 + b"\x01", "body with an 11-byte length"),
                       (b"\x0a", "a lone tag"), (b"\x80", "a lone continuation byte"),
                       (b"\x00", "field 0"), (fb(1, body_ok) + b"\x12", "body, then a broken tag"),
                       (put(HOSTILE, 1), "a PutRequest"),
                       (write(SEEDED[0], 1, U64, 1), "a WriteRequest"),
                       (b"\xff" * 16, "16 bytes of 0xff")):
            assert broken(req, "control"), d
            add("not a ControlRequest", Case(M_CONTROL, req, INVALID, "garbage protobuf: " + d,
                                              refusal=reason("malformed ControlRequest")))
        # Other messages that parse as a ControlRequest: their field 1 (or
        # none) is the body, which no decoder takes.
        for req, d in ((batch([item(ITEM_READ, HOSTILE)], 1), "a BatchRequest"),
                       (fb(1, members[0].encode()) + fb(2, members[0].encode()) + fv(3, 3),
                        "a StatsReply"),
                       (health(b"dht.KeyValue"), "a HealthCheckRequest"),
                       (scan(None, True, 10), "a ScanRequest")):
            body = one(decode(req), 1, b"") if not broken(req, "control") else None
            if body is None:
                add("not a ControlRequest", Case(M_CONTROL, req, INVALID,
                                                  "garbage protobuf: " + d,
                                                  refusal=reason("malformed ControlRequest")))
            else:
                c = garbage(body, "garbage protobuf that parses: " + d)
                assert c is not None, d
                add("not a ControlRequest", Case(M_CONTROL, req, c.expect, c.desc,
                                                  refusal=c.refusal))
        # A ControlRequest with an empty body (left out, or written empty).
        for req, d in ((b"", "no body field"), (fb(1, b""), "an empty body field"),
                       (fv(2, 7) + fb(3, b"x"), "only unknown fields")):
            add("empty body", Case(M_CONTROL, req, {"FAILED_PRECONDITION"},
                                   "ControlRequest with " + d, refusal=decoder_refusal))
        # -- sizes
        for n, exp, d in ((CONTROL_BODY_MAX + 1, INVALID, "1 MiB + 1"),
                          (CONTROL_BODY_MAX + (60 << 10), INVALID, "1 MiB + 60 KiB"),
                          (CONTROL_BODY_MAX, {"FAILED_PRECONDITION"}, "1 MiB"),
                          (CTL_ENCODED_MAX + 1, {"FAILED_PRECONDITION"}, "256 KiB + 1"),
                          (CTL_ENCODED_MAX, {"FAILED_PRECONDITION"}, "256 KiB")):
            body = CTL_QUERY_BODY + b"\x41" * (n - 2)
            add("size", Case(M_CONTROL, C(body), exp, f"a QUERY padded to {d}",
                             refusal=reason("1 MiB") if exp == INVALID else decoder_refusal))
        big = CTL_QUERY_BODY + b"\x41" * ((2 << 20) - 2)
        add("size", Case(M_CONTROL, C(big), TOO_BIG, "a QUERY padded to 2 MiB"))
        add("size", garbage(ctl_agree(AG_PREPARE, 1 << 40, (1, 1), value=b"v" *
                                      (CTL_AGREE_VALUE_MAX + 1)), "AGREE value of 64 KiB + 1"))
        add("size", garbage(ctl_install(epoch, b"r" * (CTL_TEXT_MAX + 1), b"", mine),
                            "INSTALL cur of 32,833 bytes"))
        add("size", garbage(ctl_change(CHANGE_ADD, b"a" * 250 + b":" + b"1" * 5),
                            "CHANGE addr of 256 bytes"))
        add("size", garbage(ctl_build(CTL_CHANGED, [("bool", "ok", 1),
                                                    ("str", "text", b"t" * 4097)] +
                                      view_parts(epoch, cur, b"", mine))[0],
                            "CHANGED text of 4097 bytes"))

        # -- every truncation and mutation of valid bodies
        bases = [
            ("QUERY", (CTL_QUERY_BODY, [])),
            ("far-future PREPARE", ctl_build(CTL_AGREE, agree_parts(
                AG_PREPARE, 1 << 40, (7, 0xABCDEF), (0, 0), b"replicas=1"))),
            ("far-future ACCEPT", ctl_build(CTL_AGREE, agree_parts(
                AG_ACCEPT, decided + 1000, (U64, U64), (3, 4), config_line(1, partitions,
                                                                           foreign[:1])))),
            ("INSTALL of its own view", ctl_build(CTL_INSTALL, view_parts(epoch, cur, b"", mine))),
            ("INSTALL of another cluster", ctl_build(CTL_INSTALL, view_parts(
                epoch + 7, config_line(3, partitions, foreign[:3]),
                config_line(3, partitions, foreign[1:]), (mine ^ 0x5A5A) or 1, 1, 0))),
            ("CHANGE add of a member", ctl_build(CTL_CHANGE, change_parts(
                CHANGE_ADD, members[0].encode()))),
            ("CHANGED", ctl_build(CTL_CHANGED, [("bool", "ok", 1), ("str", "text", b"done")] +
                                  view_parts(epoch, cur, b"", mine))),
        ]
        for name, (body, layout) in bases:
            for cut in range(len(body)):
                add("truncated", garbage(body[:cut], f"{name} truncated to {cut} of {len(body)} "
                                                     f"bytes"))
            for ver in (0, 2, 0x81, 0xFF):
                add("version/type", garbage(bytes([ver]) + body[1:], f"{name} of version {ver}"))
            for t in (0, 7, 8, 0xFF, *CTL_NAMES):
                if t != body[1]:
                    add("version/type", garbage(body[:1] + bytes([t]) + body[2:],
                                                f"{name} with type byte {t}"))
            for extra, d in ((b"\x00", "a zero byte"), (b"\x01", "a one byte"),
                             (b"\xff" * 100, "100 bytes"), (body, "itself again")):
                add("trailing", garbage(body + extra, f"{name} followed by {d}"))
            for kind, fname, off, val in layout:
                if kind == "str":
                    n = len(val)
                    for ln in sorted({0xFFFFFFFF, 0x80000000, 0xFFFFFFFE, CTL_STR_MAX[fname],
                                      CTL_STR_MAX[fname] + 1, n + 1, n + 4, n - 1, 0} - {n}):
                        if ln < 0:
                            continue
                        b = body[:off] + ln.to_bytes(4, "little") + body[off + 4:]
                        add("length", garbage(b, f"{name} with {fname} length {ln} "
                                                 f"({n} bytes follow)"))
                    for ctl, d in ((b"\n", "a newline"), (b"\x1b[2J", "an ANSI escape"),
                                   (b"\x00", "a NUL"), (b"\x7f", "a DEL"), (b"\r", "a CR"),
                                   (b"\x07", "a BEL"), (b"\t", "a tab")):
                        if fname == "agree value":
                            continue  # opaque bytes, not text
                        for where, nv in (("first", ctl + val), ("last", val + ctl),
                                          ("middle", val[:n // 2] + ctl + val[n // 2:])):
                            b = (body[:off] + len(nv).to_bytes(4, "little") + nv +
                                 body[off + 4 + n:])
                            add("control chars", garbage(b, f"{name} with {d} {where} in "
                                                            f"{fname}"))
                elif kind == "bool":
                    for bv in (2, 0x80, 0xFF):
                        add("bool", garbage(body[:off] + bytes([bv]) + body[off + 1:],
                                            f"{name} with {fname} {bv}"))
                elif kind == "u8":
                    for ev in (0, 9, 3, 0x7F, 0xFF):
                        add("enum", garbage(body[:off] + bytes([ev]) + body[off + 1:],
                                            f"{name} with {fname} {ev}"))
        # views the rules refuse
        for vp, d in ((view_parts(0, cur, b"", mine), "epoch 0 with a configuration"),
                      (view_parts(0, b"", cur, mine), "epoch 0 with a next"),
                      (view_parts(epoch + 3, b"", b"", mine), "no configuration"),
                      (view_parts(epoch + 3, b"", cur, mine), "a next and no configuration"),
                      (view_parts(U64, cur, cur, mine), "a next at epoch 2^64-1")):
            add("view rules", garbage(ctl_build(CTL_INSTALL, vp)[0], "INSTALL of " + d))

        # -- well-formed requests that the node refuses (FAILED_PRECONDITION)
        if mine == 0:
            # an INSTALL naming any cluster would be taken: not sent
            self.note(f"control phase: node {a} reports no cluster id; no INSTALL of another "
                      f"cluster sent")
        for cid, d in ((mine ^ 1, "its cluster id with one bit flipped"), (U64, "2^64-1"),
                       (self.rng.getrandbits(64) | 1, "a random cluster id")):
            if cid in (0, mine) or mine == 0:
                continue
            for ep in (epoch + 1, epoch + 1000, U64 - 1):
                add("refused", Case(M_CONTROL, C(ctl_install(
                    ep, config_line(3, partitions, foreign[:3]), b"", cid)),
                    {"FAILED_PRECONDITION"}, f"INSTALL of epoch {ep} naming {d}",
                    refusal=reason("another cluster")))
            add("refused", Case(M_CONTROL, C(ctl_install(
                epoch + 2, cur, config_line(replicas, partitions, members[1:] + foreign[:1]),
                cid, 1)), {"FAILED_PRECONDITION"},
                f"INSTALL of a joint view on its own members naming {d}",
                refusal=reason("another cluster")))
        bad_lines = [(b"not a configuration line", "a text that is no configuration line"),
                     (config_line(replicas, partitions + 1, members), "another partition count"),
                     (config_line(len(members) + 1, partitions, members),
                      "more replicas than members"),
                     (config_line(-1, partitions, members), "replicas -1"),
                     (config_line(replicas, partitions, members[:-1] + ["nohostport"]),
                      "a member that is not HOST:PORT"),
                     (config_line(replicas, partitions, members[:-1] + [members[0]]),
                      "a member twice"),
                     (b"replicas=3 partitions=" + str(partitions).encode() + b" members=",
                      "no members")]
        for text, d in bad_lines:
            add("refused", Case(M_CONTROL, C(ctl_install(epoch + 5, text, b"", mine)),
                                {"FAILED_PRECONDITION"}, f"INSTALL of a newer epoch with {d}",
                                refusal=reason()))
            add("refused", Case(M_CONTROL, C(ctl_install(epoch + 5, cur, text, mine)),
                                {"FAILED_PRECONDITION"},
                                f"INSTALL of a newer joint view whose next has {d}",
                                refusal=reason()))
        add("refused", Case(M_CONTROL, C(ctl_install(0, b"", b"", mine)), {"FAILED_PRECONDITION"},
                            "INSTALL of epoch 0 (no configuration)",
                            refusal=reason("no configuration")))
        for body, d in ((ctl_agree(AG_PREPARE, 0, (5, 5)), "PREPARE of epoch 0"),
                        (ctl_agree(AG_PREPARE, decided + 9, (0, 0)), "PREPARE of ballot (0, 0)"),
                        (ctl_agree(AG_ACCEPT, decided + 9, (5, 5)), "ACCEPT of no value"),
                        (ctl_agree(AG_ACCEPT, decided, (5, 5)),
                         "ACCEPT of no value, decided epoch"),
                        *((ctl_agree(t, decided + 9, (5, 5), (1, 1), b"x"),
                           f"{AG_NAMES[t]} (a reply) as a request")
                          for t in (AG_PROMISE, AG_ACCEPTED, AG_NACK, AG_DECIDED, AG_STALE,
                                    AG_BEHIND))):
            add("refused", garbage(body, "AGREE " + d))
        for body, d in ((ctl_build(CTL_VIEW, view_parts(epoch, cur, b"", mine))[0], "its VIEW"),
                        (ctl_build(CTL_VIEW, view_parts(epoch + 9, config_line(
                            1, partitions, foreign[:1]), b"", mine))[0], "a newer VIEW"),
                        (ctl_build(CTL_CHANGED, [("bool", "ok", 1), ("str", "text", b"ok")] +
                                   view_parts(epoch + 9, cur, b"", mine))[0], "a CHANGED")):
            add("refused", garbage(body, d + " as a request"))
        port = members[0].rsplit(":", 1)[1]
        bad_addrs = [b"nohostport", b":" + port.encode(), b"127.0.0.1:", b"127.0.0.1:0",
                     b"127.0.0.1:65536", b"127.0.0.1:-1", b"127.0.0.1:99999999999999999999",
                     b"127.0.0.1:80x", b"127.0.0.1: 80", b"127.0.0.1:0x50", b"127.0.0.1:+",
                     b"host name:1", b"h@st:1", b"a/b:1", b"ex%41mple:1", b"::1:80",
                     b"[::1:80", b"[]:80", b"]x[:80", b"x" * 255, b"x" * 250 + b":0",
                     b"127.0.0.1:8080:", b"\xc3\xa9t\xc3\xa9:80", b"\xff\xfe:80", b"*:80",
                     b"127.0.0.1:" + port.encode() + b"/x"]
        for addr in bad_addrs:
            for op, opn in ((CHANGE_ADD, "add"), (CHANGE_REMOVE, "remove")):
                add("refused", Case(M_CONTROL, C(ctl_change(op, addr)), {"FAILED_PRECONDITION"},
                                    f"CHANGE {opn} of {addr[:40]!r} (not HOST:PORT)",
                                    refusal=reason(forbid=("control:", "already driving"))))

        # -- well-formed requests that change nothing, answered OK
        for _ in range(3):
            add("answered", Case(M_CONTROL, C(CTL_QUERY_BODY), {"OK"}, "QUERY", same_view))
        # Ballots no proposer could outbid (beyond the ceiling, or too far
        # above the promise in one step) are malformed: refused, nothing kept.
        unbeatable = ((U64, U64), (1 << 63, 7), ((1 << 62) + 1, 1), ((1 << 32) + 1, 1))
        for ep in (decided + 1, decided + 2, U64):
            for ballot in unbeatable:
                add("refused", Case(M_CONTROL, C(ctl_agree(AG_PREPARE, ep, ballot)),
                                    {"FAILED_PRECONDITION"},
                                    f"PREPARE of epoch {ep} at an unbeatable ballot {ballot}",
                                    refusal=reason("malformed agreement")))
            add("refused", Case(M_CONTROL, C(ctl_agree(
                AG_ACCEPT, ep, (U64, U64), (0, 0), config_line(1, partitions, foreign[:1]))),
                {"FAILED_PRECONDITION"}, f"ACCEPT of epoch {ep} at an unbeatable ballot",
                refusal=reason("malformed agreement")))
        for ep in (decided + 2, decided + 1000, 1 << 40, U64 - 1, U64):
            for ballot in ((1, 1), (0, 1), (1 << 31, 7)):
                add("answered", Case(M_CONTROL, C(ctl_agree(AG_PREPARE, ep, ballot)), {"OK"},
                                     f"PREPARE of far-future epoch {ep} ballot {ballot}",
                                     agree_is(AG_BEHIND, decided, ballot)))
            add("answered", Case(M_CONTROL, C(ctl_agree(
                AG_ACCEPT, ep, (9, 9), (0, 0), config_line(1, partitions, foreign[:1]))),
                {"OK"}, f"ACCEPT of far-future epoch {ep} of a foreign configuration",
                agree_is(AG_BEHIND, decided, (9, 9))))
        decided_value = v["next"] or cur
        for ballot in ((1, 1), (1 << 31, 5)):
            add("answered", Case(M_CONTROL, C(ctl_agree(AG_PREPARE, decided, ballot)), {"OK"},
                                 f"PREPARE of its decided epoch {decided}",
                                 agree_is(AG_DECIDED, decided, ballot, decided_value)))
            add("answered", Case(M_CONTROL, C(ctl_agree(
                AG_ACCEPT, decided, ballot, (0, 0), config_line(1, partitions, foreign[:1]))),
                {"OK"}, f"ACCEPT of a foreign configuration for its decided epoch {decided}",
                agree_is(AG_DECIDED, decided, ballot, decided_value)))
        if decided >= 2:
            add("answered", Case(M_CONTROL, C(ctl_agree(AG_PREPARE, decided - 1, (9, 9))), {"OK"},
                                 f"PREPARE of an old epoch {decided - 1}",
                                 agree_is(AG_STALE, decided, (9, 9), decided_value)))
        for body, d in ((ctl_install(epoch, cur, b"", mine), "its own view"),
                        (ctl_install(epoch, cur, b"", mine, 1), "its own view, 'copy now'"),
                        (ctl_install(epoch, cur, b"", mine, 0, 1), "its own view, 'removed'"),
                        (ctl_install(epoch, b"not a configuration line", b"", mine),
                         "no configuration line, at its epoch"),
                        *((ctl_install(e, config_line(1, partitions, foreign[:1]), b"", mine),
                           f"a foreign configuration at the old epoch {e}")
                          for e in range(max(1, epoch - 2), epoch))):
            add("answered", Case(M_CONTROL, C(body), {"OK"}, f"INSTALL of {d} (not newer)",
                                 same_view))
        # A view that names no cluster, or another one: never installed.
        for body, d in ((ctl_install(epoch, cur, b"", 0), "its own view, no cluster id"),
                        (ctl_install(epoch, config_line(1, partitions, foreign[:1]), b"", 0),
                         "a foreign configuration at its epoch, no cluster id"),
                        (ctl_install(epoch + 1, cur, b"", 0), "a newer view, no cluster id")):
            add("refused", Case(M_CONTROL, C(body), {"FAILED_PRECONDITION"}, f"INSTALL of {d}",
                                refusal=reason("another cluster")))
        seen, unique = set(), []
        for kind, c in out:
            if c.req not in seen:
                seen.add(c.req)
                unique.append((kind, c))
        return unique

    def random_control(self, base_bodies):
        """Endless garbage for the control channel: random ControlRequests
        (made surely malformed), random bodies and mutated valid bodies
        that the decoder refuses."""
        rng = self.rng
        while True:
            r = rng.random()
            if r < 0.3:
                raw = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 3, 9, 40, 300))))
                mb = make_broken(raw, "control")
                yield None, Case(M_CONTROL, mb, INVALID, "random ControlRequest" +
                                 (" + broken tail" if mb != raw else ""))
                continue
            raw = desc = None
            if r < 0.6:
                n = rng.choice((1, 2, 3, 10, 11, 43, 47, 100, 1000))
                raw = bytes(rng.getrandbits(8) for _ in range(n))
                if rng.random() < 0.5 and n >= 2:  # past the version and type checks
                    raw = bytes([CTL_VERSION, rng.randrange(1, 8)]) + raw[2:]
                desc = f"{n} random body bytes"
            else:
                raw = bytearray(rng.choice(base_bodies))
                for _ in range(rng.randint(1, 4)):
                    op, p = rng.random(), rng.randrange(len(raw) + 1)
                    if op < 0.4 and raw:
                        raw[min(p, len(raw) - 1)] = rng.getrandbits(8)
                    elif op < 0.7:
                        raw[p:p] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 6)))
                    elif raw:
                        del raw[p:p + rng.randint(1, 4)]
                raw = bytes(raw)
                desc = "mutated valid body"
            yield raw, desc

    def p_control(self):
        """dht.Admin/Control, the members' channel of membership changes,
        attacked as a member may (in plaintext every caller is one; under
        TLS the general phases hold the peer role): ControlRequests that are
        not one (INVALID_ARGUMENT), bodies over 1 MiB (INVALID_ARGUMENT) and
        over 2 MiB (gRPC's limit), then control bodies the node's decoder must
        refuse (FAILED_PRECONDITION with a reason, lib/protocol/control.c):
        empty, every truncation of a valid QUERY, AGREE, INSTALL, CHANGE and
        CHANGED, other versions and types, lengths of 2^32-1 and off by
        one, trailing bytes, control characters in every text, booleans and
        enums out of range, views the rules forbid; then well-formed
        requests that must be refused with a reason (an INSTALL of another
        cluster or of a configuration that is not one, AGREE replies and
        malformed AGREEs, VIEW and CHANGED as requests, CHANGEs of addresses
        that are not HOST:PORT) or that must be answered without changing
        anything (QUERY: the node's view; a PREPARE or ACCEPT of a
        far-future epoch: BEHIND, of the decided one: DECIDED with its
        configuration; an INSTALL not newer than the node's view: that
        view); random and mutated bodies, 600 of all that at once; and last,
        one at a time, CHANGEs that must answer CHANGED with ok=false and a
        reason: adding a member (in several spellings), removing one when
        that leaves fewer members than R, removing a non-member.
        Afterwards every node must report the same Stats (epoch, view,
        members, R, fingerprint, cluster id), QUERY answer and seeded values
        as before, and its acceptor the same promise for its open slot (the
        phase's only write: a PREPARE at the lowest ballot, (0, 1), before
        and after, which every real proposer's ballot exceeds).  Never sent:
        an INSTALL that is newer and names the node's cluster (or none) with
        a valid configuration, an AGREE of the open slot above (0, 1), a
        CHANGE that would succeed: a member would act on them."""
        phase = "control"
        before = {}
        for a in self.live_addrs():
            st = self.control_state(phase, a)
            if st is None:
                self.defect(f"[{phase}] node {a}: could not learn its configuration (above): "
                            f"its control channel is not attacked", always=True)
                continue
            before[a] = st
        if not before:
            return
        gets = {a: st["gets"] for a, st in before.items()}
        if any(g != next(iter(gets.values())) for g in gets.values()):
            self.defect(f"[{phase}] the nodes read different values of the seeded keys: {gets}")
        counts = collections.Counter()
        base_bodies = []
        for a, st in before.items():
            cases = self.control_cases(a, st)
            for kind, c in cases:
                counts[kind] += 1
            base_bodies += [one(decode(c.req), 1, b"") for k, c in cases
                            if k in ("answered",) and len(c.req) < 4096]
            # the large ones on their own, a few at a time
            big = [c for _, c in cases if len(c.req) > 64 << 10]
            small = [c for _, c in cases if len(c.req) <= 64 << 10]
            self.run_unary(phase, big, window=2, addrs=[a])
            self.run_unary(phase, small, window=16, addrs=[a])
        # random garbage, never a body that decodes to something a node acts on
        gen = self.random_control(base_bodies)
        any_st = next(iter(before.values()))

        def randoms():
            while True:
                raw, desc = next(gen)
                if raw is None:
                    yield desc  # a whole Case: a ControlRequest that is not one
                    continue
                try:
                    m = ctl_decode(raw)
                except CtlError as e:
                    yield Case(M_CONTROL, control_request(raw), {"FAILED_PRECONDITION"},
                               f"{desc} ({e})", refusal=lambda d: None if d.startswith(
                                   "control:") else "not the decoder's refusal")
                    continue
                if m["type"] in (CTL_VIEW, CTL_CHANGED):
                    yield Case(M_CONTROL, control_request(raw), {"FAILED_PRECONDITION"},
                               f"{desc} (a {CTL_NAMES[m['type']]})",
                               refusal=lambda d: None if "not a request" in d else
                               "not the reason for a reply sent as a request")
                # anything else decodes: not sent
        n_random = self.run_unary(phase, randoms(), seconds=1.0, max_count=6000, window=24,
                                  addrs=list(before))
        counts["random"] += n_random
        # 600 at once: the fixed cases (harmless ones) and garbage, every node
        burst = []
        per_node = {a: [c for _, c in self.control_cases(a, st)
                        if len(c.req) <= 4096] for a, st in before.items()}
        rnd = randoms()
        for i in range(600):
            a = list(before)[i % len(before)]
            burst.append((a, per_node[a][(i // len(before)) % len(per_node[a])]
                          if i % 3 else next(rnd)))
        for a in before:
            self.run_unary(phase, [c for b, c in burst if b == a], window=200, addrs=[a])
        counts["concurrent"] += len(burst)
        # CHANGEs that reach the node's driver: one at a time per node, then
        # 8 at once on each (each refused by the driver or told that another
        # change is being driven), then one more (the driver is free again)
        changes = 0
        for a, st in before.items():
            changes += self.control_changes(phase, a, st)
        counts["changes"] += changes
        # afterwards: nothing changed
        for a, st in before.items():
            if a in self.dead:
                continue
            after = self.control_state(phase, a)
            if after is None:
                self.defect(f"[{phase}] node {a}: could not learn its configuration after "
                            f"the phase (above)")
                continue
            for k, what in (("stats", "Stats"), ("view", "answer to a QUERY"),
                            ("promise", "answer to a PREPARE of its open slot at ballot (0, 1)"),
                            ("gets", "values of the seeded keys")):
                if after[k] != st[k]:
                    self.defect(f"[{phase}] node {a}: its {what} changed during the phase: "
                                f"before {st[k]}, after {after[k]}")
        s0 = any_st["stats"]
        print(f"  {len(before)} nodes at epoch {s0['epoch']} (view {s0['view']}, "
              f"{len(s0['members'])} members, R={s0['replicas']}); requests: "
              f"{dict(sorted(counts.items()))}", flush=True)

    def control_changes(self, phase, a, st):
        """The CHANGEs that reach node a's driver, which must refuse each
        with CHANGED ok=false, a reason and its unchanged view."""
        v, s = st["view"], st["stats"]
        members, replicas = s["members"], s["replicas"]

        def changed_refused(*needles):
            def check(rep):
                m = ctl_reply(rep)
                if m["type"] != CTL_CHANGED:
                    return f"a {CTL_NAMES[m['type']]} answers a CHANGE"
                if m["ok"]:
                    return f"ok=true: {m['text']!r}"
                if not any(n.encode() in m["text"] for n in needles):
                    return f"reason {m['text']!r} does not say {' or '.join(needles)}"
                if m["view"] != v:
                    return f"view {m['view']}, before the phase {v}"
                return None
            return check

        cases = []
        for mem in members:
            host, port = mem.rsplit(":", 1)
            spellings = [mem]
            if host == "127.0.0.1":
                # each normalises to the member (membership.c, util.c)
                spellings += [f"localhost:{port}", f"LocalHost:{port}", f"0.0.0.0:{port}",
                              f"127.0.0.1:0{port}", f"127.0.0.1:+{port}"]
            for sp in spellings:
                cases.append(Case(M_CONTROL, control_request(ctl_change(CHANGE_ADD, sp.encode())),
                                  {"OK"}, f"CHANGE add of the member {sp}",
                                  changed_refused("already a member")))
            if len(members) - 1 < replicas:
                cases.append(Case(M_CONTROL, control_request(ctl_change(CHANGE_REMOVE,
                                                                        mem.encode())),
                                  {"OK"}, f"CHANGE remove of {mem}: {len(members) - 1} members "
                                          f"would be left for R={replicas}",
                                  changed_refused("would leave")))
            else:
                self.note(f"control phase: no CHANGE remove sent ({len(members)} members, "
                          f"R={replicas}: a removal would succeed)")
        stranger = next(f"127.0.0.1:{p}" for p in range(1, 100) if f"127.0.0.1:{p}" not in members)
        cases.append(Case(M_CONTROL, control_request(ctl_change(CHANGE_REMOVE, stranger.encode())),
                          {"OK"}, f"CHANGE remove of the non-member {stranger}",
                          changed_refused("is not a member")))
        n = self.run_unary(phase, cases, window=1, addrs=[a])
        # at once: the driver takes one, the others are told so
        busy = lambda d: None if "already driving" in d else "not the busy driver's reason"
        burst = [Case(M_CONTROL, c.req, {"OK", "FAILED_PRECONDITION"}, c.desc + " (8 at once)",
                      c.check, refusal=busy) for c in cases[:8]]
        n += self.run_unary(phase, burst, window=8, addrs=[a])
        # and the driver is free again
        n += self.run_unary(phase, cases[:1], window=1, addrs=[a])
        return n

    def run(self):
        """Every phase, each followed by a liveness check of every node.
        Out-of-range requests come first (later phases reuse its batch
        items) and again last: refusing them must survive the abuse."""
        t0 = time.monotonic()
        print(f"attack on {','.join(self.addrs)} (seed {self.seed})", flush=True)
        self.learn_configs()
        self.phase("out-of-range", self.p_out_of_range)
        self.phase("malformed", self.p_malformed)
        self.phase("unknown methods", self.p_unknown)
        self.phase("oversized", self.p_oversized)
        self.phase("streams", self.p_streams)
        self.phase("many streams", self.p_many_streams)
        self.phase("unread streams", self.p_unread_streams)
        self.phase("stream churn", self.p_stream_churn)
        self.phase("raw http/2", self.p_raw_http2)
        self.phase("concurrent", self.p_concurrent)
        self.phase("scan cursors", self.p_scan_cursors)
        self.phase("deadlines", self.p_deadlines)
        self.phase("compressed", self.p_compressed)
        self.phase("protocol misuse", self.p_protocol)
        self.phase("metadata", self.p_metadata)
        self.phase("configuration", self.p_configuration)
        self.phase("control", self.p_control)
        if self.tls_dir:
            self.phase("tls identities", self.p_tls_identities)
        self.phase("out-of-range again", self.p_out_of_range)
        self.summary(t0)

    def summary(self, t0):
        for n in sorted(self.notes):
            print("NOTE " + n)
        if len(self.defects) > 40:
            print(f"({len(self.defects) - 40} more defects not shown)")
        if self.after_death:
            print(f"({self.after_death} calls failed UNAVAILABLE at nodes already reported dead)")
        print(f"attack: {self.calls} calls in {time.monotonic() - t0:.1f} s, "
              f"{len(self.defects)} defects; statuses {dict(sorted(self.codes.items()))}",
              flush=True)


def cmd_attack(args):
    addrs = args.addrs.split(",")
    pids = [int(p) for p in args.pids.split(",")] if args.pids else []
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    creds = None
    if args.tls_dir:
        # The general phases call as a member would (the fan-out client's
        # peer-role certificate): validation must hold for members too.
        d = args.tls_dir
        creds = tls_creds(os.path.join(d, "ca.crt"), os.path.join(d, "coordinator.crt"),
                          os.path.join(d, "coordinator.key"))
    at = Attack(addrs, pids, seed, args.scale, creds)
    at.tls_dir = args.tls_dir
    at.client_cert_auth = args.client_cert_auth
    at.fixed_fp = int(args.config, 16) if args.config else None
    if args.phases:
        at.only = set(args.phases.split(",")) | {"out-of-range"}
    at.run()
    return 1 if at.defects else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("keys")
    for name in ("snapshot", "alive", "attack"):
        s = sub.add_parser(name)
        s.add_argument("addrs")
        if name != "attack":
            s.add_argument("--tls-ca", help="TLS: the cluster CA")
            s.add_argument("--tls-cert", help="TLS: a peer-role certificate (Scan needs one)")
            s.add_argument("--tls-key")
        if name == "snapshot":
            s.add_argument("out")
            s.add_argument("--agree", type=float, default=0)
        if name == "attack":
            s.add_argument("--pids")
            s.add_argument("--seed", type=int)
            s.add_argument("--scale", type=float, default=1.0,
                           help="multiplies every phase's time budget")
            s.add_argument("--phases", help="only these phases (comma-separated names)")
            s.add_argument("--tls-dir", help="the nodes serve TLS with make-certs.sh's files here")
            s.add_argument("--client-cert-auth", action="store_true",
                           help="the nodes run with --client-cert-auth")
            s.add_argument("--config", help="the nodes' configuration fingerprint (hex); "
                                            "default: what each reports in dht.Admin/Stats")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = p.parse_args()
    if args.cmd == "keys":
        print(" ".join(str(k) for k in SEEDED))
        return 0
    return {"snapshot": cmd_snapshot, "compare": cmd_compare, "alive": cmd_alive,
            "attack": cmd_attack}[args.cmd](args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a bug of ours must not read as a defect of the nodes
        import traceback
        traceback.print_exc()
        sys.exit(3)
