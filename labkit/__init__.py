"""labkit: a hands-on lab for event streaming.

``from labkit import KafkaProducer`` is all a kafka-python script needs to change.
"""

__version__ = "0.1.0"
