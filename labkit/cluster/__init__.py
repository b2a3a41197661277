"""Cluster mode: several labkit brokers coordinated by a real ZooKeeper (docs/replication.md).

``znodes`` (Kafka's ZooKeeper layout and JSON), ``decisions`` (the controller's choices
as pure functions over a snapshot) and ``offsets_topic`` (which ``__consumer_offsets``
partition holds a group; its records) import nothing but labkit's errors; ``member`` is the
thin kazoo layer (registration and its worker), with ``controller`` (election, fencing,
the controller's writes), ``snapshot_reader``, ``admin`` (topic writes) and ``zk_errors``
beside it, imported only by a broker started with ``zookeeper.connect``.
"""
