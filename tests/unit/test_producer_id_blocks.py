"""Cluster-wide producer id blocks: the ``/latest_producer_id_block`` JSON and the
compare-and-set loop (cluster/producer_id_blocks.py), against a fake versioned znode."""

from __future__ import annotations

import json
import time
import types

import pytest
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from labkit.broker.producer_ids import CHECKPOINT, reserve_cluster_block
from labkit.cluster import znodes
from labkit.cluster.producer_id_blocks import (
    BLOCK_SIZE,
    MAX_ID,
    ProducerIdBlockError,
    ZkProducerIdBlocks,
    next_block,
)
from labkit.cluster.znodes import ProducerIdBlock


class Done:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.value


class FakeZk:
    """One versioned znode, as ZooKeeper keeps it; ``before_set`` lets a test write
    in between a read and a set (another broker)."""

    def __init__(self, data: bytes | None = None):
        self.data = data  # None: no node
        self.version = 0
        self.before_set = None
        self.sets = 0

    def get_async(self, path):
        assert path == znodes.PRODUCER_ID_BLOCK
        if self.data is None:
            return Done(error=NoNodeError())
        return Done((self.data, types.SimpleNamespace(version=self.version)))

    def create_async(self, path, data):
        if self.data is not None:
            return Done(error=NodeExistsError())
        self.data, self.version = data, 0
        return Done(path)

    def set_async(self, path, data, version):
        if self.before_set is not None:
            hook, self.before_set = self.before_set, None
            hook()
        self.sets += 1
        if version != self.version:
            return Done(error=BadVersionError())
        self.data, self.version = data, self.version + 1
        return Done()

    def block(self) -> dict:
        return json.loads(self.data)


def test_the_znode_json_is_kafkas():
    data = znodes.encode_producer_id_block(ProducerIdBlock(2, 1000, 1999))
    assert json.loads(data) == {
        "version": 1,
        "broker": 2,
        "block_start": "1000",
        "block_end": "1999",
    }
    assert znodes.decode_producer_id_block(data) == ProducerIdBlock(2, 1000, 1999)
    # what Kafka itself wrote (field order and all)
    kafka = b'{"version":1,"broker":0,"block_start":"0","block_end":"999"}'
    assert znodes.decode_producer_id_block(kafka) == ProducerIdBlock(0, 0, 999)
    assert znodes.decode_producer_id_block(b"") is None  # Kafka's empty persistent node


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1]",
        b'{"version":1,"broker":0,"block_start":"x","block_end":"999"}',
        b'{"version":1,"broker":0,"block_start":"1000","block_end":"999"}',
        b'{"version":1,"broker":"0","block_start":"0","block_end":"999"}',
    ],
)
def test_a_node_that_is_not_kafkas_json_is_refused(data):
    with pytest.raises(ValueError, match=r"latest_producer_id_block|JSON"):
        znodes.decode_producer_id_block(data)


def test_next_block_follows_the_last_and_respects_the_floor():
    assert next_block(None, 1) == ProducerIdBlock(1, 0, BLOCK_SIZE - 1)
    assert next_block(ProducerIdBlock(3, 0, 999), 1) == ProducerIdBlock(1, 1000, 1999)
    assert next_block(ProducerIdBlock(3, 0, 999), 1, floor=5000) == ProducerIdBlock(1, 5000, 5999)
    with pytest.raises(ProducerIdBlockError, match="exhausted"):
        next_block(ProducerIdBlock(3, 0, MAX_ID - 10), 1)


def test_a_missing_node_is_created_and_the_first_block_claimed():
    zk = FakeZk(data=None)
    assert ZkProducerIdBlocks(zk, 1).claim() == ProducerIdBlock(1, 0, 999)
    assert zk.block() == {"version": 1, "broker": 1, "block_start": "0", "block_end": "999"}


def test_successive_claims_by_different_brokers_never_overlap():
    zk = FakeZk(data=b"")
    blocks = [ZkProducerIdBlocks(zk, broker).claim() for broker in (1, 2, 3, 1)]
    assert [(b.broker_id, b.first, b.last) for b in blocks] == [
        (1, 0, 999),
        (2, 1000, 1999),
        (3, 2000, 2999),
        (1, 3000, 3999),
    ]


def test_a_lost_compare_and_set_reads_again():
    zk = FakeZk(data=b"")
    other = ZkProducerIdBlocks(zk, 2)
    zk.before_set = other.claim  # broker 2 claims between broker 1's read and its set
    mine = ZkProducerIdBlocks(zk, 1).claim()
    assert mine == ProducerIdBlock(1, 1000, 1999)  # after broker 2's [0, 999]
    assert zk.block()["broker"] == 1
    assert zk.sets == 3  # broker 2's, broker 1's refused one, broker 1's second


def test_always_losing_gives_up_with_a_clear_error():
    zk = FakeZk(data=b"")

    def steal():
        zk.version += 1
        zk.before_set = steal

    zk.before_set = steal
    with pytest.raises(ProducerIdBlockError, match="compare-and-set"):
        ZkProducerIdBlocks(zk, 1).claim()


def test_a_cluster_claim_starts_past_the_local_checkpoint_and_moves_it(tmp_path):
    (tmp_path / CHECKPOINT).write_text("3000\n")  # ids [0, 3000) handed out as one broker
    zk = FakeZk(data=b"")
    blocks = ZkProducerIdBlocks(zk, 1)
    assert reserve_cluster_block(tmp_path, lambda floor: blocks.claim(floor).first) == 3000
    assert (tmp_path / CHECKPOINT).read_text() == "4000\n"
    other = ZkProducerIdBlocks(zk, 2).claim()
    assert other.first == 4000
    assert reserve_cluster_block(tmp_path, lambda floor: blocks.claim(floor).first) == 5000
    assert (tmp_path / CHECKPOINT).read_text() == "6000\n"


def test_producer_ids_in_cluster_mode_hand_out_the_claimed_blocks(tmp_path):
    from labkit.broker.producer_ids import ProducerIds

    zk = FakeZk(data=b'{"version":1,"broker":2,"block_start":"0","block_end":"999"}')
    ids = ProducerIds(tmp_path)
    ids.start(lambda floor: ZkProducerIdBlocks(zk, 1).claim(floor).first, "ZooKeeper")
    assert ids.wait_reserved()
    assert [ids.next_id() for _ in range(3)] == [1000, 1001, 1002]


def test_a_failed_claim_is_retriable_and_says_where(tmp_path):
    from labkit.broker.producer_ids import ProducerIds
    from labkit.errors import CoordinatorLoadInProgressError

    def unreachable(floor):
        raise ProducerIdBlockError("ZooKeeper is away")

    ids = ProducerIds(tmp_path)
    ids.start(unreachable, "ZooKeeper's /latest_producer_id_block")
    for _ in range(200):
        if ids.error is not None:
            break
        time.sleep(0.01)
    with pytest.raises(CoordinatorLoadInProgressError, match=r"latest_producer_id_block.*away"):
        ids.next_id()
