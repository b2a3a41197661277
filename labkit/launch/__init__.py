"""The engines labkit starts as child processes, each dying with the process that started
it (``lifeline.py``): a labkit broker (``broker.BrokerProcess``: ``nb.cluster()``,
``labkit grade --fresh-broker``, the tests), Apache ZooKeeper (``zookeeper.ZooKeeperServer``),
and where Apache Kafka's jars are (``kafka_jars``: Kafka Connect's worker, and the Apache
Kafka that labkit.testing runs), and a free port for each (``ports.free_port``). Test
support (labkit.testing) re-exports these; product code imports them from here, never from
labkit.testing."""
