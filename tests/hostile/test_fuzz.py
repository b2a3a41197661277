"""A hypothesis-driven fuzzer against a live broker process (issue 11, "Tests and figures").

What it sends
-------------
- **Header fields.** For every API the envelope knows (``labkit.protocol.frames.APIS``
  plus whatever the broker lists in ``api_versions``) a valid request is mutated:
  a field (or an element deep inside one) gets a wrong type, a huge or negative
  integer, a long or odd string (lone surrogates, NUL), JSON nested 100,000 deep;
  keys are dropped or added; payload frames are missing or extra.
- **Raw frames.** Messages of 1..9+ frames with a right or wrong magic, odd request
  ids, API names and header bytes, odd payload counts and sizes.
- **Record batches.** Valid batches from ``labkit.protocol.records`` with flipped
  bytes, broken columns or header fields under a recomputed CRC (so only the
  broker's validation can catch them), truncated header blobs, cut or padded frames.

What must hold after every example
----------------------------------
- the broker process is alive and a well-behaved labkit producer and consumer
  (``well_behaved`` in conftest.py) still get their record through;
- every request whose id can be read gets an answer (unless Kafka's semantics say
  none: ``acks=0``, a fetch parked for its ``max_wait_ms``), and no answer carries
  error code -1 (UNKNOWN) anywhere, at the top or in a per-partition row: a
  malformed request gets a specific code (INVALID_REQUEST, CORRUPT_MESSAGE, ...);
  a malformed envelope, or an integer field holding a value no int64 can (Kafka's
  widest integer), is never answered as a success;
- a batch the broker acknowledges decodes completely, and a consumer reading the
  fuzzed topic from the start reaches its end without getting stuck.

Run time: each test runs ``EXAMPLES`` examples (derandomized, no example database,
so CI sees the same inputs every time); ``LABKIT_FUZZ_EXAMPLES=2000 pytest
--timeout 0 tests/hostile/test_fuzz.py`` runs longer by hand (still derandomized:
another count gives other inputs).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import struct
import time
import zlib

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import KafkaConsumer, TopicPartition
from labkit.protocol.frames import APIS, MAGIC, MAX_REQUEST_ID, parse_request
from labkit.protocol.records import (
    CRC_START,
    HAS_HEADERS,
    HAS_KEYS,
    HEADER,
    HEADER_SIZE,
    LENGTH_PREFIX,
    decode_batch,
    encode_batch,
)
from labkit.testing import RawClient

EXAMPLES = int(os.environ.get("LABKIT_FUZZ_EXAMPLES") or 0)
REPLY_S = 5.0  # a reply that must come: generous (2 shared CPUs), not a speed test
SENTINEL = b"\xfe" * MAX_REQUEST_ID  # the id of the api_versions sent after each message
READ_BACK_S = 10.0  # a consumer reaching the end of the fuzzed topic
TOPIC = "fuzz"  # exists (2 partitions) before the header fuzzer starts
BATCH_TOPIC = "fuzzed-batches"
NOW_MS = 1_700_000_000_000
UNKNOWN = -1
INVALID_REQUEST = 42
# Words of the broker's catch-all answers: a reply saying them is an UNKNOWN in disguise.
REQUEST_IDS = itertools.count()
CATCH_ALL = re.compile(r"unexpected broker error|built a bad reply|internal error", re.I)


def fuzz_settings(default_examples: int):
    return settings(
        max_examples=EXAMPLES or default_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


def good_batch(*values: bytes) -> bytes:
    return encode_batch([NOW_MS] * len(values), None, list(values))


# -- what a well-formed request of each API looks like -------------------------

TEMPLATES: dict[str, dict] = {
    "api_versions": {},
    "metadata": {"topics": [TOPIC], "allow_auto_create": False},
    "produce": {"acks": 1, "targets": [[TOPIC, 0]]},
    "fetch": {
        "max_wait_ms": 0,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "partitions": [[TOPIC, 0, 0, 1 << 20], [TOPIC, 1, 0, 1 << 20]],
    },
    "list_offsets": {"partitions": [[TOPIC, 0, -2], [TOPIC, 1, NOW_MS]]},
    "create_topics": {
        "topics": [
            {
                "name": "fuzz-new",
                "num_partitions": 1,
                "replication_factor": 1,
                "configs": {"retention.ms": "60000"},
            }
        ],
        "validate_only": True,
    },
    "delete_topics": {"topics": ["fuzz-gone"]},
    "create_partitions": {"topics": {TOPIC: 3}, "validate_only": True},
    "describe_configs": {"topics": [TOPIC]},
    "alter_configs": {"topics": {TOPIC: {"retention.ms": "600000"}}, "validate_only": True},
    "delete_records": {"partitions": [[TOPIC, 0, 0]]},
    "init_producer_id": {"transactional_id": None, "transaction_timeout_ms": 60_000},
    "offsets_for_leader_epoch": {"replica_id": 1, "partitions": [[TOPIC, 0, -1, 0]]},
    "join_group": {
        "group_id": "fuzz-group",
        "client_id": "fuzzer",
        "client_host": "127.0.0.1",
        "topics": [TOPIC],
        "assignors": ["range"],
        "session_timeout_ms": 10_000,
        "max_poll_interval_ms": 300_000,
        "member_id": "",
    },
    "heartbeat": {
        "group_id": "fuzz-group",
        "member_id": "m",
        "generation": 1,
        "owned": [[TOPIC, 0]],
        "topics": [TOPIC],
    },
    "leave_group": {"group_id": "fuzz-group", "member_id": "m"},
    "offset_commit": {
        "group_id": "fuzz-tool",
        "member_id": "",
        "generation": -1,
        "offsets": [[TOPIC, 0, 1, "meta"]],
    },
    "offset_fetch": {"group_id": "fuzz-tool", "partitions": [[TOPIC, 0]]},
    "list_groups": {},
    "find_coordinator": {"key": "fuzz-group"},
    "describe_groups": {"group_ids": ["fuzz-group", "fuzz-tool"]},
    "delete_groups": {"group_ids": ["fuzz-gone"]},
    "offset_delete": {"group_id": "fuzz-tool", "partitions": [[TOPIC, 1], ["nope", 0]]},
    # Kafka clients' classic groups (docs/wire.md); metadata: a "consumer" subscription
    "classic_join": {
        "group_id": "fuzz-classic",
        "member_id": "",
        "group_instance_id": None,
        "client_host": "/127.0.0.1",
        "session_timeout_ms": 10_000,
        "rebalance_timeout_ms": 20_000,
        "protocol_type": "consumer",
        "protocols": [["range", "AAAAAAABAAdmdXp6aW5n/////w=="]],
        "require_member_id": True,
    },
    "classic_sync": {
        "group_id": "fuzz-classic",
        "member_id": "m",
        "generation": 1,
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocol_name": "range",
        "assignments": [["m", "AAAAAAABAAdmdXp6aW5nAAAAAQAAAAD/////"]],
    },
    "classic_heartbeat": {"group_id": "fuzz-classic", "member_id": "m", "generation": 1},
    "classic_leave": {"group_id": "fuzz-classic", "members": ["m"]},
    "describe_client_quotas": {
        "components": [{"entity_type": "client-id", "match_type": 0, "match": "fuzzer"}],
        "strict": False,
    },
    "alter_client_quotas": {
        "entries": [{"entity": {"client-id": "fuzzer"}, "ops": {"producer_byte_rate": 10_000_000}}],
        "validate_only": True,
    },
    "describe_client_throttles": {},
}

# Where a per-target error code sits in an API's rows (besides dicts' "error" keys).
ROW_ERRORS = {
    "produce": ("results", 1),
    "fetch": ("partitions", 2),
    "list_offsets": ("partitions", 2),
    "offset_fetch": ("partitions", 4),
}


# -- hostile values ----------------------------------------------------------------

DEEP = "\x00deep:"  # a marker string that encode() turns into nested JSON
ODD_INTS = [
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**100,
    10**4000,
    -(10**4000),
]
ODD_STRINGS = [
    "",
    "\ud800",
    "\udfff",
    "a\ud800b",
    "\x00",
    "nul\x00inside",
    ".",
    "..",
    "../../etc/passwd",
    "x" * 300,
    "y" * 100_000,
    "\u202e\u00fc\U0001f600",
    " ",
    "__consumer_offsets",
    "-1",
    "{}",
]

INT64 = range(-(2**63), 2**63)
ints = st.one_of(st.sampled_from(ODD_INTS), st.integers(-3, 3), st.integers(-(2**70), 2**70))
strings = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=12),
    st.text(st.characters(codec=None, categories=["Cs", "Cc"]), max_size=4),
)
deep = st.builds(
    lambda kind, depth: f"{DEEP}{kind}{depth}",
    st.sampled_from("[{"),
    st.sampled_from([3, 200, 1000, 100_000]),
)
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), strings)
values = st.one_of(
    ints,
    strings,
    deep,
    scalars,
    st.recursive(
        scalars,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(strings, kids, max_size=3)
        ),
        max_leaves=8,
    ),
)


def encode(header) -> bytes:
    """JSON as a hostile client would write it: lone surrogates as \\ud800 escapes
    (valid JSON text), NaN, 4,000-digit integers, and DEEP markers expanded."""
    text = json.dumps(header, ensure_ascii=True)

    def nested(match):
        kind, depth = match.group(1), int(match.group(2))
        return "[" * depth + "]" * depth if kind == "[" else '{"a":' * depth + "1" + "}" * depth

    return re.sub(r'"\\u0000deep:([\[{])(\d+)"', nested, text).encode("ascii")


def _paths(obj, prefix=()):
    """Every place inside a header where a value sits: tuples of keys/indices."""
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _containers(obj, prefix=()):
    if isinstance(obj, dict | list):
        yield prefix
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in items:
            yield from _containers(value, (*prefix, key))


def _at(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def _is_int(value) -> bool:
    return type(value) is int


@st.composite
def mutated_requests(draw):
    """(api, header, payloads, beyond_int64): a template with 1-3 mutations; the flag
    says an integer field now holds a value no int64 can (the broker must refuse it)."""
    api = draw(st.sampled_from(sorted(TEMPLATES)))
    header = copy.deepcopy(TEMPLATES[api])
    int_fields = {path for path in _paths(header) if _is_int(_at(header, path))}
    for op in draw(
        st.lists(
            st.sampled_from(["replace", "replace", "odd-int", "drop", "add"]),
            min_size=1,
            max_size=3,
        )
    ):
        paths = list(_paths(header))
        live_ints = sorted(p for p in int_fields if p in paths and _is_int(_at(header, p)))
        if op == "odd-int" and live_ints:  # integer fields are where the damage was
            path = draw(st.sampled_from(live_ints))
            _at(header, path[:-1])[path[-1]] = draw(st.sampled_from([*ODD_INTS, -1, -(2**63)]))
        elif op in ("replace", "drop") and paths:
            path = draw(st.sampled_from(paths))
            parent = _at(header, path[:-1])
            if op == "replace":
                parent[path[-1]] = draw(values)
            else:
                del parent[path[-1]]
        else:
            container = _at(header, draw(st.sampled_from(list(_containers(header)))))
            if isinstance(container, dict):
                container[draw(strings)] = draw(values)
            else:
                container.append(draw(values))
    paths = set(_paths(header))
    beyond_int64 = any(
        path in paths and _is_int(_at(header, path)) and _at(header, path) not in INT64
        for path in int_fields
    )
    good = good_batch(b"fuzz")
    payloads = draw(st.sampled_from([[good], [], [good, good], [b""], [b"\x00" * 50]]))
    return api, header, payloads, beyond_int64


# -- talking raw to the broker ----------------------------------------------------------


def send_raw(broker, frames: list[bytes], deferred: bool = False) -> dict | None:
    """Send one message on a fresh DEALER socket; the reply's header, or None.

    An ``api_versions`` follows it on the same connection: the broker handles one
    connection's messages in order, so once that is answered any prompt reply has
    come (no fixed waits). ``deferred``: the reply may come after it (acks=-1 waits for
    an fsync, topic changes and commits for the flusher's round), so wait up to REPLY_S for it."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(f"tcp://{broker.zmq_bootstrap}")
    sentinel_seen = False
    try:
        sock.send_multipart(frames)
        sock.send_multipart([MAGIC, SENTINEL, b"api_versions", b"{}"])
        deadline = time.monotonic() + REPLY_S
        while time.monotonic() < deadline:
            if not sock.poll(int((deadline - time.monotonic()) * 1000) + 1):
                break
            reply = sock.recv_multipart()
            assert len(reply) >= 3, reply[:3]
            assert reply[0] == MAGIC, reply[:3]
            if reply[1] == SENTINEL and (len(frames) < 2 or frames[1] != SENTINEL):
                sentinel_seen = True
                if not deferred:
                    return None
                continue
            assert reply[1] == frames[1], f"a reply to an id never sent: {reply[:3]}"
            return json.loads(reply[2])
    finally:
        sock.close()
    assert sentinel_seen, f"the broker did not answer api_versions within {REPLY_S:.0f} s"
    return None


def answered_after_fsync(api: str, header) -> bool:
    """Replies that may wait for the flusher's round (docs/broker.md): acks=-1 produces,
    and anything that changes topics or committed offsets, or names a topic being created."""
    return not may_go_unanswered(api, header)


def may_go_unanswered(api: str, header) -> bool:
    """Kafka's semantics allow no (prompt) reply: acks=0, a fetch that may park, a
    JoinGroup (it waits for the join phase) or a SyncGroup (a follower's waits for the
    leader's)."""
    if not isinstance(header, dict):
        return False
    if api in ("classic_join", "classic_sync"):
        return True
    if api == "produce":
        acks = header.get("acks", 1)
        return type(acks) is int and acks == 0
    if api == "fetch":
        wait = header.get("max_wait_ms", 500)
        return type(wait) is int and wait > 0
    return False


def unknown_errors(api: str, reply: dict) -> list[str]:
    """Where the reply says UNKNOWN (-1) or words only the catch-all uses."""
    found = []

    def walk(obj, where):
        if isinstance(obj, dict):
            if obj.get("error") == UNKNOWN:
                found.append(f"{where or 'header'}: {obj.get('message')!r}")
            for key, value in obj.items():
                walk(value, f"{where}.{key}")
        elif isinstance(obj, list):
            for index, value in enumerate(obj):
                walk(value, f"{where}[{index}]")
        elif isinstance(obj, str) and CATCH_ALL.search(obj):
            found.append(f"{where}: {obj[:200]!r}")

    walk(reply, "")
    field, index = ROW_ERRORS.get(api, (None, None))
    rows = reply.get(field) if field else None
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, list) and len(row) > index and row[index] == UNKNOWN:
                found.append(f"{field} row {row[: index + 1]!r}")
    return found


def any_error(api: str, reply: dict) -> bool:
    """Whether the reply refuses anything: its own code or a per-target one."""
    codes = []

    def walk(obj):
        if isinstance(obj, dict):
            codes.append(obj.get("error", 0))
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(reply)
    field, index = ROW_ERRORS.get(api, (None, None))
    for row in (reply.get(field) or []) if field else []:
        if isinstance(row, list) and len(row) > index:
            codes.append(row[index])
    return any(code != 0 for code in codes)


def check_reply(
    api: str, header, reply: dict | None, must_answer: bool, must_refuse: str = ""
) -> None:
    """The invariants on one reply; ``must_refuse`` says why it may not be a success."""
    if reply is None:
        assert not must_answer, f"no reply to {api} {header!r:.300}"
        return
    assert isinstance(reply.get("error"), int), reply
    bad = unknown_errors(api, reply)
    assert not bad, f"{api} answered UNKNOWN (-1) instead of a specific error: {bad}"
    if must_refuse:
        assert any_error(api, reply), f"{must_refuse}, yet {api} answered {reply!r:.400}"


def make_fuzz_topic(broker, name: str, partitions: int) -> None:
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1}]},
        )
        assert header["topics"][0]["error"] == 0, header


# -- the tests ---------------------------------------------------------------------------


def test_the_fuzzer_covers_every_api_the_broker_lists(broker):
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request("api_versions", {})
    listed = set(header["apis"])
    assert listed <= APIS, f"the broker lists APIs the envelope does not know: {listed - APIS}"
    assert set(TEMPLATES) == APIS | listed, (
        f"add a template for {sorted((APIS | listed) - set(TEMPLATES))} to this fuzzer"
    )


def test_header_fields_fuzz(broker, well_behaved):
    make_fuzz_topic(broker, TOPIC, 2)
    with RawClient(broker.bootstrap) as client:
        client.request("produce", {"acks": 1, "targets": [[TOPIC, 0]]}, [good_batch(b"a")])

    @fuzz_settings(300)
    @given(request=mutated_requests())
    def one(request):
        api, header, payloads, beyond_int64 = request
        rid = b"h%d" % next(REQUEST_IDS)
        quiet = may_go_unanswered(api, header)
        frames = [MAGIC, rid, api.encode(), encode(header), *payloads]
        reply = send_raw(broker, frames, deferred=answered_after_fsync(api, header))
        check_reply(
            api,
            header,
            reply,
            must_answer=not quiet,
            must_refuse="an integer field holds a value beyond int64" if beyond_int64 else "",
        )
        well_behaved.round_trip()

    one()
    # Whatever the fuzzer managed to store in its topic reads back from the start.
    with RawClient(broker.bootstrap) as client:
        ends, _ = client.request("list_offsets", {"partitions": [[TOPIC, 0, -1], [TOPIC, 1, -1]]})
    for _name, partition, code, end, _ts in ends["partitions"]:
        assert code == 0, ends
        reader = TopicReader(broker, TOPIC, partition)
        try:
            reader.read_to(end)
        finally:
            reader.close()


@st.composite
def raw_messages(draw):
    magic = draw(st.sampled_from([MAGIC, MAGIC, MAGIC, b"", b"LK2", b"LK1\x00", b"lk1"]))
    rid = draw(
        st.one_of(
            st.binary(min_size=1, max_size=MAX_REQUEST_ID),
            st.sampled_from([b"", b"r" * (MAX_REQUEST_ID + 1), b"\xff" * 300]),
        )
    )
    api = draw(
        st.one_of(
            st.sampled_from(sorted(a.encode() for a in TEMPLATES)),
            st.binary(max_size=40),
            st.just(b"\xff\xfeapi"),
        )
    )
    header = draw(
        st.one_of(
            st.builds(encode, values),
            st.builds(encode, st.dictionaries(strings, values, max_size=4)),
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"",
                    b"{",
                    b'{"a":1',
                    b"\xff\xfe{}",
                    b"{}" * 3,
                    b"null",
                    b"[" * 100_000,
                    b'{"a":' * 50_000,
                    b"1" * 5000,
                    b'{"topics":"\\ud800"}',
                    b'{"group_id":"\\udc00"}',
                ]
            ),
        )
    )
    payloads = draw(
        st.one_of(
            st.lists(
                st.one_of(
                    st.binary(max_size=100),
                    st.just(good_batch(b"raw")),
                    st.sampled_from([b"", b"\x00" * 70_000, b"\xff" * (1 << 18)]),
                ),
                max_size=5,
            ),
            st.just([b""] * 10_001),  # more frames than the broker keeps
        )
    )
    frames = [magic, rid, api, header, *payloads]
    count = draw(st.one_of(st.just(len(frames)), st.integers(1, len(frames))))
    return frames[:count]


def test_raw_frames_fuzz(broker, well_behaved):
    @fuzz_settings(150)
    @given(frames=raw_messages())
    def one(frames):
        readable_id = len(frames) >= 2 and frames[0] == MAGIC and len(frames[1]) <= MAX_REQUEST_ID
        try:
            _rid, api, header, _payloads = parse_request(frames)
            malformed = False
        except Exception:  # noqa: BLE001 - anything parse_request refuses is malformed
            api, header, malformed = (frames[2][:40] if len(frames) > 2 else b"?"), None, True
        quiet = not readable_id or (not malformed and may_go_unanswered(api, header))
        reply = send_raw(
            broker, frames, deferred=not malformed and answered_after_fsync(api, header)
        )
        if not readable_id:
            assert reply is None, f"a reply to a message without a readable id: {reply}"
        check_reply(
            str(api),
            header,
            reply,
            must_answer=not quiet,
            must_refuse="the envelope is malformed" if malformed else "",
        )
        well_behaved.round_trip()

    one()


# -- record batches --------------------------------------------------------------------

FIELDS = [
    "magic",
    "attributes",
    "reserved",
    "last_offset_delta",
    "base_timestamp",
    "max_timestamp",
    "record_count",
    "batch_length",
]
FIELD_FORMATS = {
    "batch_length": (8, "<i"),
    "magic": (16, "<B"),
    "attributes": (17, "<B"),
    "reserved": (18, "<H"),
    "last_offset_delta": (20, "<i"),
    "base_timestamp": (24, "<q"),
    "max_timestamp": (32, "<q"),
    "record_count": (40, "<i"),
}
FIELD_VALUES = {
    "<B": st.integers(0, 255),
    "<H": st.integers(0, 2**16 - 1),
    "<i": st.one_of(st.integers(-2, 6), st.sampled_from([2**31 - 1, -(2**31)])),
    "<q": st.one_of(
        st.sampled_from([2**62, -(2**62), 2**63 - 1, -1, 0]), st.integers(0, 2 * NOW_MS)
    ),
}


def reseal(batch: bytearray, fix_length: bool = False) -> bytes:
    """Recompute the CRC (and batch_length): only the broker's own checks can object."""
    if fix_length:
        struct.pack_into("<i", batch, 8, len(batch) - LENGTH_PREFIX)
    struct.pack_into("<I", batch, 12, zlib.crc32(bytes(batch[CRC_START:])))
    return bytes(batch)


records = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=8)),  # key
        st.one_of(st.none(), st.binary(max_size=16)),  # value
        st.lists(
            st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=4))), max_size=2
        ),  # headers
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def batches(draw):
    recs = draw(records)
    with_keys = draw(st.booleans())
    with_headers = draw(st.booleans())
    batch = bytearray(
        encode_batch(
            [NOW_MS + i for i in range(len(recs))],
            [k for k, _v, _h in recs] if with_keys else None,
            [v for _k, v, _h in recs],
            [h for _k, _v, h in recs] if with_headers else None,
        )
    )
    n = len(recs)
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "flip",
                "flip+crc",
                "column+crc",
                "field+crc",
                "cut-tail+crc",
                "truncate",
                "append",
                "append+crc",
            ]
        )
    )
    if kind == "flip":
        pos = draw(st.integers(0, len(batch) - 1))
        batch[pos] ^= draw(st.integers(1, 255))
    elif kind == "flip+crc":
        pos = draw(st.integers(CRC_START + 4, len(batch) - 1))  # past magic/attrs... and CRC
        batch[pos] ^= draw(st.integers(1, 255))
        reseal(batch)
    elif kind == "column+crc":
        attrs = batch[17]
        columns = [("q", 8)]  # timestamps
        columns += [("i", 4)] if attrs & HAS_KEYS else []
        columns += [("i", 4)]  # value lengths
        columns += [("i", 4)] if attrs & HAS_HEADERS else []
        which = draw(st.integers(0, len(columns) - 1))
        start = HEADER_SIZE + sum(n * size for _t, size in columns[:which])
        code, size = columns[which]
        index = draw(st.integers(0, n - 1))
        fmt = "<q" if code == "q" else "<i"
        value = draw(
            FIELD_VALUES[fmt]
            if fmt == "<q"
            else st.one_of(st.integers(-3, 40), st.sampled_from([2**31 - 1, -(2**31)]))
        )
        struct.pack_into(fmt, batch, start + index * size, value)
        reseal(batch)
    elif kind == "field+crc":
        offset, fmt = FIELD_FORMATS[draw(st.sampled_from(FIELDS))]
        struct.pack_into(fmt, batch, offset, draw(FIELD_VALUES[fmt]))
        reseal(batch)
    elif kind == "cut-tail+crc":  # e.g. a headers blob cut short under a valid CRC
        cut = draw(st.integers(1, min(12, len(batch) - HEADER_SIZE) or 1))
        del batch[len(batch) - cut :]
        reseal(batch, fix_length=True)
    elif kind == "truncate":
        del batch[draw(st.integers(0, len(batch) - 1)) :]
    else:
        batch += draw(st.binary(min_size=1, max_size=12))
        if kind == "append+crc":
            reseal(batch, fix_length=True)
    return kind, bytes(batch)


def decodes_completely(batch: bytes) -> str | None:
    """None if the batch is whole and every record (headers too) decodes; else why not."""
    try:
        header = HEADER.unpack_from(batch, 0)
        if LENGTH_PREFIX + header[1] != len(batch):
            return "batch_length does not cover the frame"
        decode_batch(batch)
    except Exception as exc:  # noqa: BLE001 - whatever a reader would trip over
        return f"{type(exc).__name__}: {exc}"
    return None


class TopicReader:
    """A labkit consumer that follows the fuzzed topic; fails if it is stuck or raises."""

    def __init__(self, broker, topic: str, partition: int = 0):
        self.tp = TopicPartition(topic, partition)
        self.consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        self.consumer.assign([self.tp])
        self.seen = 0

    def read_range(self, start: int, end: int) -> None:
        """Read [start, end) (what one example stored), whatever came before it."""
        self.consumer.seek(self.tp, start)
        self.read_to(end)

    def read_to(self, end: int) -> None:
        deadline = time.monotonic() + READ_BACK_S
        while self.consumer.position(self.tp) < end:
            assert time.monotonic() < deadline, (
                f"a consumer of {self.tp} is stuck at {self.consumer.position(self.tp)} "
                f"(log end {end})"
            )
            try:
                got = self.consumer.poll(timeout_ms=200)
            except Exception as exc:
                raise AssertionError(
                    f"stored data is unreadable at offset "
                    f"{self.consumer.position(self.tp)}: {exc!r}"
                ) from exc
            self.seen += sum(len(r) for r in got.values())

    def close(self) -> None:
        self.consumer.close()


def test_record_batch_fuzz(broker, well_behaved):
    make_fuzz_topic(broker, BATCH_TOPIC, 1)
    reader = TopicReader(broker, BATCH_TOPIC)
    end = 0
    try:

        @fuzz_settings(250)
        @given(case=batches(), acks=st.sampled_from([1, -1]), with_neighbour=st.booleans())
        def one(case, acks, with_neighbour):
            nonlocal end
            kind, batch = case
            # A valid batch in the same request must not fail with its neighbour.
            batches_sent = [good_batch(b"neighbour"), batch] if with_neighbour else [batch]
            with RawClient(broker.bootstrap, timeout=REPLY_S) as client:
                header, _ = client.request(
                    "produce",
                    {"acks": acks, "targets": [[BATCH_TOPIC, 0]] * len(batches_sent)},
                    batches_sent,
                )
            check_reply("produce", None, header, must_answer=True)
            stored = []
            for sent, (base, code, *_rest) in zip(batches_sent, header["results"], strict=True):
                if sent is not batch:
                    assert code == 0, f"a valid batch failed with its corrupt neighbour: {header}"
                if code == 0:
                    why = decodes_completely(sent)
                    assert why is None, f"the broker acknowledged a corrupt batch ({kind}): {why}"
                    stored.append((base, base + HEADER.unpack_from(sent, 0)[6] + 1))
            if stored:  # this example's records read back (earlier ones: checked at the end)
                reader.read_range(stored[0][0], stored[-1][1])
                end = max(end, stored[-1][1])
            well_behaved.round_trip()

        one()
    finally:
        reader.close()
    # A reader from the very start gets through everything that was stored.
    fresh = TopicReader(broker, BATCH_TOPIC)
    try:
        fresh.read_to(end)
    finally:
        fresh.close()
    well_behaved.round_trip()


@pytest.fixture(autouse=True)
def _broker_log_on_failure(broker):
    """The broker's log tail, shown with a failure (tracebacks of -1 answers are there)."""
    yield
    print(f"--- broker log tail ---\n{broker.output()[-6000:]}")
