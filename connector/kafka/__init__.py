"""The Kafka boundary: a batch consumer with manual commits, a batch producer, admin helpers.

Everything here is synchronous; the loops call it through ``asyncio.to_thread`` (except
``Delivery.add``, which never blocks). Each ``EventConsumer`` and ``EventProducer`` must be
used from one thread at a time.
``KafkaException``/``KafkaError`` never leave this module: a broker that cannot be reached, or a
broker refusal, becomes ``DependencyError`` naming ``KAFKA_BOOTSTRAP_SERVERS`` (retried);
a refusal no retry can cure (authorization, message size) or a client that hit a fatal
error becomes ``BrokerRefused`` (the connector stops); a client configuration librdkafka
rejects becomes ``ConfigError``. ``sasl_password`` is
never part of a message.

Delivery semantics (at least once; duplicates are removed downstream, by event id):

* Offsets are committed only by ``EventConsumer.commit``, synchronously, for a batch whose
  effects (ledger writes, produced results) are done. ``enable.auto.commit`` and
  ``enable.auto.offset.store`` are off and ``KAFKA_EXTRA_CONFIG`` cannot turn them on.
* ``EventProducer.send`` (and ``Delivery.wait``, for a batch queued in parts) returns only
  once every message is acknowledged by all in-sync replicas; otherwise it raises, and the
  caller must not commit the batch.
* Rebalances: the ingest loop commits each processed batch before it polls again, and
  ``on_revoke`` fires only inside ``poll_batch`` (librdkafka serves rebalance callbacks
  from ``consume()``). So when partitions are revoked nothing processed is uncommitted. Messages
  of a partition revoked during a ``poll_batch`` call are dropped from its result (the new
  owner reads them from the committed offset); if the same partition was assigned back
  within that call, the consumer also seeks back to the first dropped offset, so nothing is
  skipped. ``commit`` leaves out partitions that are no longer assigned, and a commit
  refused because the group is rebalancing is logged, not raised: those messages will be
  delivered again, which the de-duplication absorbs.
* The consumer asks the broker to hold a fetch at most 50 ms (``fetch.wait.max.ms``;
  librdkafka's default is 500): Apache Kafka answers as soon as data is there anyway, but
  some brokers (Tansu, the demo's) hold the fetch the whole time, and that time becomes
  input → result latency. ``KAFKA_EXTRA_CONFIG`` may change it.
* Partition assignment is eager ``roundrobin``: it pools the partitions of both input
  topics, so N replicas share them evenly (``range`` assigns per topic, and with two
  one-partition topics it gives both to one member and leaves the other idle, and not
  ready). ``cooperative-sticky`` works on Tansu too, but a new member waited about 11 s
  for its partitions (three rebalance rounds) against about 4 s eager; the
  commit-before-poll rule above keeps the eager stop-the-world pause short.
  ``KAFKA_EXTRA_CONFIG`` may set ``partition.assignment.strategy``; both protocols are
  handled.
* ``pause_all`` survives rebalances: partitions assigned while paused are paused at once.

Kafka transactions are deliberately not used: on Tansu, the broker of the demo and the tests,
aborted records reached ``read_committed`` consumers and committed ones went missing.
"""

from connector.kafka.admin import check_broker, check_topics, ensure_topics
from connector.kafka.config import Inbound, Outbound, PartitionsCallback, client_config
from connector.kafka.consumer import EventConsumer
from connector.kafka.producer import Delivery, EventProducer
from connector.kafka.reader import PartitionReader, ReadReport

__all__ = [
    "Delivery",
    "EventConsumer",
    "EventProducer",
    "Inbound",
    "Outbound",
    "PartitionReader",
    "PartitionsCallback",
    "ReadReport",
    "check_broker",
    "check_topics",
    "client_config",
    "ensure_topics",
]
