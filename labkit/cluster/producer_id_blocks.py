"""Blocks of producer ids claimed cluster-wide in ZooKeeper, as Kafka's ZkProducerIdManager.

Theory of operation
-------------------
In cluster mode every broker answers InitProducerId, and two brokers must never hand out
the same id: two producers with one id writing to one partition would see each other's
batches as duplicates (acknowledged, not stored) or as out of order. So, as Kafka in
ZooKeeper mode, a broker claims a block of ``BLOCK_SIZE`` ids through the znode
``/latest_producer_id_block`` (cluster/znodes.py), which names the last block claimed:

1. read the node and its version (create it empty first when it is missing, as Kafka's
   persistent path);
2. the new block starts after the last one (0 for an empty node), and never below
   ``floor`` (the ids this broker handed out from its local checkpoint before);
3. set the node *at the version read* (compare-and-set); a BadVersionError means another
   broker claimed a block in between: read again (at most ``MAX_ATTEMPTS`` rounds).

``claim`` blocks on ZooKeeper (each call bounded by ``ADMIN_TIMEOUT_S``): it runs on the
broker's producer-ids thread (broker/producer_ids.py), never on the loop thread.
"""

from __future__ import annotations

import logging

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from labkit.cluster import znodes
from labkit.cluster.zk_errors import ADMIN_TIMEOUT_S
from labkit.cluster.znodes import ProducerIdBlock

log = logging.getLogger(__name__)

BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
MAX_ID = 2**63 - 1  # a producer id is an int64
MAX_ATTEMPTS = 100  # compare-and-set rounds lost to other brokers before giving up for now


class ProducerIdBlockError(Exception):
    """No block could be claimed (ids exhausted, or too much contention); says why."""


def next_block(
    latest: ProducerIdBlock | None, broker_id: int, floor: int = 0, size: int = BLOCK_SIZE
) -> ProducerIdBlock:
    """The block after ``latest`` (the node's content; None: no block claimed yet), not
    below ``floor``. Raises ProducerIdBlockError when the int64 ids are exhausted."""
    first = max(0 if latest is None else latest.last + 1, floor)
    if first > MAX_ID - size + 1:
        raise ProducerIdBlockError(
            f"producer ids are exhausted: {znodes.PRODUCER_ID_BLOCK} ends at "
            f"{latest.last if latest else floor}"
        )
    return ProducerIdBlock(broker_id, first, first + size - 1)


class ZkProducerIdBlocks:
    """Claims blocks in ZooKeeper for one broker (see the module docstring)."""

    def __init__(self, zk, broker_id: int, size: int = BLOCK_SIZE):
        self._zk = zk  # a KazooClient (or a fake with the same *_async calls)
        self.broker_id = broker_id
        self.size = size

    def claim(self, floor: int = 0) -> ProducerIdBlock:
        """A new block, claimed. Raises ProducerIdBlockError, ValueError (the node is not
        Kafka's JSON) and kazoo's errors (ZooKeeper away)."""
        path = znodes.PRODUCER_ID_BLOCK
        for _attempt in range(MAX_ATTEMPTS):
            try:
                data, stat = self._zk.get_async(path).get(timeout=ADMIN_TIMEOUT_S)
            except NoNodeError:
                try:
                    self._zk.create_async(path, b"").get(timeout=ADMIN_TIMEOUT_S)
                except NodeExistsError:
                    pass  # another broker created it first
                continue
            block = next_block(
                znodes.decode_producer_id_block(data), self.broker_id, floor, self.size
            )
            encoded = znodes.encode_producer_id_block(block)
            try:
                self._zk.set_async(path, encoded, stat.version).get(timeout=ADMIN_TIMEOUT_S)
            except BadVersionError:
                log.debug("another broker claimed producer ids first; reading %s again", path)
                continue
            log.info("claimed producer ids [%d, %d] in %s", block.first, block.last, path)
            return block
        raise ProducerIdBlockError(
            f"lost the compare-and-set on {path} {MAX_ATTEMPTS} times in a row (many brokers "
            "claiming producer ids at once); the broker retries on the next InitProducerId"
        )
