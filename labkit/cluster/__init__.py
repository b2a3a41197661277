"""Cluster mode: several labkit brokers coordinated by a real ZooKeeper (docs/replication.md).

``znodes`` (Kafka's ZooKeeper layout and JSON) and ``decisions`` (the controller's choices
as pure functions over a snapshot) import nothing but labkit's errors; ``member`` is the
thin kazoo layer (registration, controller election, the controller's writes), imported
only by a broker started with ``zookeeper.connect``.
"""
