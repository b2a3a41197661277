"""labkit.log: the storage engine (segments, indexes, recovery, retention, compaction).

See docs/storage.md for the file layout and the rules; the public names are below.
"""

from labkit.log.batchio import FileOps
from labkit.log.config import TOPIC_CONFIG_KEYS, LogConfig, split_broker_configs
from labkit.log.partition import PartitionLog
from labkit.log.segment import SegmentInfo

__all__ = [
    "TOPIC_CONFIG_KEYS",
    "FileOps",
    "LogConfig",
    "PartitionLog",
    "SegmentInfo",
    "split_broker_configs",
]
