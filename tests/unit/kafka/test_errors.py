"""How Kafka errors become ours: retried, or the process stops (pure, no broker)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from pydantic import SecretStr

from connector.errors import BrokerRefused, DependencyError
from connector.kafka.config import refused
from connector.kafka.consumer import EventConsumer
from connector.settings import KafkaSettings

SETTINGS = KafkaSettings(bootstrap_servers="kafka:9092", sasl_password=SecretStr("s3cret-pw"))


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.MSG_SIZE_TOO_LARGE,
    ],
)
def test_refusals_no_retry_can_cure_stop_the_process(code: int) -> None:
    error = refused(SETTINGS, "producing", KafkaError(code, "refused s3cret-pw"))

    assert isinstance(error, BrokerRefused)
    assert "KAFKA_BOOTSTRAP_SERVERS=kafka:9092" in str(error)
    assert "s3cret-pw" not in str(error)


def test_a_fatal_client_error_stops_the_process() -> None:
    fatal = KafkaError(KafkaError._FATAL, "producer fenced", fatal=True)

    assert isinstance(refused(SETTINGS, "producing", fatal), BrokerRefused)


@pytest.mark.parametrize(
    "code",
    [KafkaError._TRANSPORT, KafkaError._MSG_TIMED_OUT, KafkaError.NOT_LEADER_FOR_PARTITION],
)
def test_outages_and_leader_moves_are_retried(code: int) -> None:
    error = refused(SETTINGS, "producing", KafkaError(code))

    assert isinstance(error, DependencyError)
    assert not isinstance(error, BrokerRefused)


def test_a_consumer_refused_its_topics_stops_the_process() -> None:
    consumer = EventConsumer(SETTINGS, ["orders"])  # no client is created until start()
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "no read ACL")

    with pytest.raises(BrokerRefused, match="TOPIC_AUTHORIZATION_FAILED"):
        consumer._on_message_error(denied)
    consumer._on_message_error(KafkaError(KafkaError._PARTITION_EOF))  # not an error
    consumer._on_message_error(KafkaError(KafkaError._TRANSPORT))  # librdkafka retries it


class _SeekFails:
    def seek(self, _partition: TopicPartition) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "erroneous state"))


def test_a_failed_rewind_stops_rather_than_skipping_messages() -> None:
    consumer = EventConsumer(SETTINGS, ["orders"])

    with pytest.raises(BrokerRefused, match=r"rewind orders\[2\] to offset 40"):
        consumer._rewind(_SeekFails(), {("orders", 2): 40})  # type: ignore[arg-type]


def test_the_consumer_asks_the_broker_to_hold_a_fetch_briefly_unless_told_otherwise() -> None:
    # Apache Kafka answers a fetch as soon as data is there; some brokers hold it for the
    # whole fetch.wait.max.ms, and that wait becomes input → result latency.
    assert EventConsumer(SETTINGS, ["orders"])._config["fetch.wait.max.ms"] == 50
    tuned = SETTINGS.model_copy(update={"extra_config": {"fetch.wait.max.ms": 10}})
    assert EventConsumer(tuned, ["orders"])._config["fetch.wait.max.ms"] == 10
