"""The controller's seat: election through ``/controller``, fencing, and its writes.

Theory of operation
-------------------
``ControllerSeat`` is driven by the member's worker thread only (cluster/member.py), once
per round:

- **contend()** creates ``/controller`` as an ephemeral node when it is empty (it vanishes
  with its owner's session, so a dead controller is replaced within the session timeout);
  the broker that created it increments ``/controller_epoch`` with a conditional set and
  keeps that znode's version as its fencing token.
- **control(snapshot)** writes the decisions of ``partition_changes`` and
  ``topics_to_delete`` (cluster/decisions.py). Every state write is a ZooKeeper
  transaction that checks the epoch znode's version, plus the state znode's own version,
  so a controller that lost its seat cannot overwrite a newer controller's decision: its
  transaction fails and it resigns.
- **resign()** forgets the token and frees ``/controller`` if that is still its own, so the
  next round elects again (with a new epoch) rather than leaving the cluster without one.
- **lost()** (a session expiry, from kazoo's thread): the ephemeral node is gone already.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError

from labkit.cluster import znodes
from labkit.cluster.decisions import ClusterSnapshot, partition_changes, topics_to_delete

log = logging.getLogger(__name__)


class ControllerSeat:
    """This broker's claim on the controller (see the module docstring)."""

    def __init__(self, zk: KazooClient, broker_id: int, wake: Callable[[], None]):
        self._zk = zk
        self.broker_id = broker_id
        self._wake = wake
        self._epoch_version: int | None = None  # set while this broker is the controller
        self.controller_epoch = 0

    @property
    def is_controller(self) -> bool:
        return self._epoch_version is not None

    def lost(self) -> None:
        """The session expired: /controller, if it was ours, went with it."""
        self._epoch_version = None

    def contend(self) -> None:
        """Create /controller if it is empty; when it is ours, take the next epoch."""
        me = self.broker_id
        try:
            self._zk.create(
                znodes.CONTROLLER,
                znodes.encode_controller(me, int(time.time() * 1000)),
                ephemeral=True,
            )
        except NodeExistsError:
            return
        try:
            data, stat = self._zk.get(znodes.CONTROLLER_EPOCH)
        except NoNodeError:
            try:
                self._zk.create(znodes.CONTROLLER_EPOCH, znodes.encode_epoch(0))
            except NodeExistsError:
                pass
            data, stat = self._zk.get(znodes.CONTROLLER_EPOCH)
        version = stat.version
        try:
            epoch = znodes.decode_epoch(data)
        except ValueError as exc:
            # fencing rests on the znode's version, not its text: start the count again
            log.warning("%s; broker %d writes epoch 1 over it", exc, me)
            epoch = 0
        try:
            stat = self._zk.set(znodes.CONTROLLER_EPOCH, znodes.encode_epoch(epoch + 1), version)
        except BadVersionError:  # another controller moved the epoch first: step down
            self.resign()
            return
        self.controller_epoch = epoch + 1
        self._epoch_version = stat.version
        log.info("broker %d is the controller (controller epoch %d)", me, epoch + 1)

    def check_seat(self, snapshot: ClusterSnapshot) -> None:
        """Someone else holds /controller now: stop acting as controller."""
        if self.is_controller and snapshot.controller_id != self.broker_id:
            log.warning("broker %d is no longer the controller", self.broker_id)
            self._epoch_version = None

    def resign(self) -> None:
        """Stop acting as controller and free /controller if it is still ours, so that the
        next round elects again (with a new epoch) instead of leaving no one in charge."""
        self._epoch_version = None
        try:
            data, stat = self._zk.get(znodes.CONTROLLER)
            if znodes.decode_controller(data) == self.broker_id:
                self._zk.delete(znodes.CONTROLLER, version=stat.version)
        except (NoNodeError, BadVersionError, ValueError):
            pass
        self._wake()

    def control(self, snapshot: ClusterSnapshot, unclean_default: bool) -> bool:
        """Write the controller's decisions. True when something was written."""
        wrote = False
        snapshot = dataclasses.replace(snapshot, controller_epoch=self.controller_epoch)
        for change in partition_changes(snapshot, unclean_default):
            path = znodes.state_path(change.topic, change.partition)
            transaction = self._zk.transaction()
            transaction.check(znodes.CONTROLLER_EPOCH, self._epoch_version)
            if change.version is None:
                self._zk.ensure_path(path.rsplit("/", 1)[0])
                transaction.create(path, znodes.encode_state(change.new))
            else:
                transaction.set_data(path, znodes.encode_state(change.new), change.version)
            results = transaction.commit()
            if isinstance(results[0], BaseException) and not isinstance(
                results[0], RolledBackError
            ):
                log.warning("the controller epoch moved on: broker %d steps down", self.broker_id)
                self.resign()
                return wrote
            if any(isinstance(result, BaseException) for result in results):
                continue  # the state moved since it was read: the next round decides again
            wrote = True
            log.info(
                "%s-%d: leader %d, leader epoch %d, isr %s (%s)",
                change.topic,
                change.partition,
                change.new.leader,
                change.new.leader_epoch,
                list(change.new.isr),
                change.why,
            )
        for name in topics_to_delete(snapshot):
            for path, recursive in (
                (znodes.topic_path(name), True),
                (znodes.config_path(name), False),
                (znodes.delete_path(name), False),
            ):
                try:
                    self._zk.delete(path, recursive=recursive)
                except NoNodeError:
                    pass  # gone already (another round, or never written)
            log.info("deleted topic %s", name)
            wrote = True
        return wrote
