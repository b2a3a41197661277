"""Cluster mode: several labkit brokers coordinated by a real ZooKeeper (docs/replication.md).

``znodes`` (Kafka's ZooKeeper layout and JSON), ``decisions`` (the controller's choices
as pure functions over a snapshot) and ``offsets_topic`` (which ``__consumer_offsets``
partition holds a group; its records) import nothing but labkit's errors; ``member`` is the
thin kazoo layer (registration, controller election, the controller's writes), imported
only by a broker started with ``zookeeper.connect``.
"""
