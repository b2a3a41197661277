"""The Kafka ecosystem's real engines run against a broker (docs/ecosystem.md).

``connect``  Apache Kafka's own Connect runtime (standalone and distributed workers)
``spark``    a local SparkSession with Spark's Kafka connector on its classpath

Nothing here is imported by the broker or the client: these modules start Java
programs whose jars come from Maven Central through make targets into ``.cache/``.
"""
