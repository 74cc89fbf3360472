"""Admin helpers: is the broker there, and create the topics that are missing."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connector.errors import ConfigError
from connector.kafka.config import (
    client_config,
    kafka_error,
    log,
    translate,
    unreachable,
)
from connector.settings import KafkaSettings

__all__ = ["check_broker", "check_topics", "ensure_topics"]


def _admin(settings: KafkaSettings) -> AdminClient:
    try:
        config: dict[str, Any] = {**client_config(settings), "logger": log}
        return AdminClient(config)
    except KafkaException as exc:
        raise translate(settings, "starting the admin client", exc) from exc


def _topic_names(admin: AdminClient, settings: KafkaSettings, timeout_s: float) -> set[str]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise translate(settings, "listing topics", exc) from exc
    return {name for name, topic in metadata.topics.items() if topic.error is None}


def check_broker(settings: KafkaSettings, *, timeout_s: float = 5) -> None:
    """Raise ``DependencyError`` unless the broker answers a metadata request in time."""
    _topic_names(_admin(settings), settings, timeout_s)


def check_topics(settings: KafkaSettings, *, timeout_s: float = 5) -> None:
    """Raise ``ConfigError`` naming every configured topic the broker does not show.

    Producing to a topic that does not exist fails only when the first record goes out,
    and then as a broker error retried for ever: a missing output topic would stall a
    loop with the pod still ready. (A broker that creates topics on first use still
    passes once they exist; create them up front, as ``helm/README.md`` says.)
    """
    found = _topic_names(_admin(settings), settings, timeout_s)
    missing = [
        f"{settings.env_name(field)} ({getattr(settings, field)})"
        for field in settings.TOPICS
        if getattr(settings, field) not in found
    ]
    if missing:
        raise ConfigError(
            "topics missing on the broker, or not visible to this principal: "
            + ", ".join(missing)
            + "; create them or fix the names"
        )


def ensure_topics(
    settings: KafkaSettings, topics: Sequence[str], *, partitions: int = 3, timeout_s: float = 10
) -> None:
    """Create the topics in ``topics`` that do not exist yet (replication: broker default)."""
    admin = _admin(settings)
    # Create only what is missing: a principal allowed to use the topics is not always
    # allowed to create them, even ones that already exist.
    missing = sorted(set(topics) - _topic_names(admin, settings, timeout_s))
    if not missing:
        return
    new = [NewTopic(name, num_partitions=partitions, replication_factor=-1) for name in missing]
    futures = admin.create_topics(new, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise translate(settings, f"creating topic {name}", exc) from exc
        except FutureTimeout as exc:
            raise unreachable(settings, f"creating topic {name}", "timed out") from exc
