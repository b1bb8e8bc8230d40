"""The Kafka adapter: aiokafka behind a small surface, its exceptions mapped to ours where they enter.

Everything here works on Apache Kafka and on tansu alike: no idempotent producer, no transactions, and no
trust in `end_offsets()` (tansu undercounts it): reading "to the end" means reaching the fetch high-water mark.

Modules: `client` (client id, security options, errors mapped where they enter, bounded close), `partitions`
(`Partition`, `Record`, the default partitioner), `producer`, `group` (the group consumer and the lease's view of
the coordinator), `changelog` (reading partitions to their end outside any group). Import from here.
"""

from highlight.kafka.changelog import ChangelogReader
from highlight.kafka.client import CLIENT_ID, CLOSE_TIMEOUT_SECONDS, broker_errors, client_options
from highlight.kafka.group import FETCH_CHUNK_BYTES, GroupConsumer, RebalanceHandler
from highlight.kafka.partitions import KEY_HASH_CACHE, Partition, Record, home_partition, partition_for
from highlight.kafka.producer import Producer, RecordBatch, record_size

__all__ = [
    "CLIENT_ID",
    "CLOSE_TIMEOUT_SECONDS",
    "FETCH_CHUNK_BYTES",
    "KEY_HASH_CACHE",
    "ChangelogReader",
    "GroupConsumer",
    "Partition",
    "Producer",
    "RebalanceHandler",
    "Record",
    "RecordBatch",
    "broker_errors",
    "client_options",
    "home_partition",
    "partition_for",
    "record_size",
]
