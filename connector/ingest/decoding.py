"""From a consumed message to a stock event or a rejection, and rejections to dead letters.

Every message gets a span (``<topic> process``) that continues the producer's trace from
the W3C context in its headers; the loop ends it once the batch is committed. Bad input
never raises out of here: it becomes a rejection with a stable reason, and its dead letter
keeps the original bytes and says why in its headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from connector.contracts.codec import AvroCodec
from connector.contracts.events import StockEvent
from connector.contracts.records import EventSource
from connector.errors import InvalidEvent
from connector.ingest.validate import parse_order, parse_warehouse
from connector.kafka import Inbound, Outbound
from connector.settings import KafkaSettings, SyncSettings
from connector.telemetry import extract_context, inject_context

__all__ = ["DEAD_LETTER_MAX_BYTES", "Decoded", "Decoder", "dead_letter"]

# A dead letter's value is cut to this, well under the producer's default 1 MB message
# limit (headers and key come on top).
DEAD_LETTER_MAX_BYTES: Final = 512 * 1024


@dataclass(slots=True)
class Decoded:
    """One consumed message: its event, or why it was rejected, and its span."""

    inbound: Inbound
    span: Span
    source: EventSource
    event: StockEvent | None = None
    rejection: InvalidEvent | None = None


class Decoder:
    """Decodes and validates consumed messages (pure CPU, unless a Schema Registry is used:
    an unknown schema id is then an HTTP call, and a registry outage raises
    ``DependencyError``)."""

    def __init__(
        self,
        codec: AvroCodec,
        kafka: KafkaSettings,
        sync: SyncSettings,
        tracer: Tracer,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._codec = codec
        self._kafka = kafka
        self._sync = sync
        self._tracer = tracer
        self._clock_ms = clock_ms

    def decode(self, inbound: Inbound) -> Decoded:
        span = self._tracer.start_span(
            f"{inbound.topic} process",
            # Only a message that carries headers can carry a trace context.
            context=extract_context(inbound.headers) if inbound.headers else None,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": inbound.topic,
                "messaging.kafka.destination.partition": inbound.partition,
                "messaging.kafka.message.offset": inbound.offset,
            },
        )
        message = Decoded(
            inbound, span, EventSource(inbound.topic, inbound.partition, inbound.offset)
        )
        try:
            message.event = self._parse(inbound)
            span.set_attribute("event.id", message.event.event_id)
        except InvalidEvent as exc:
            message.rejection = exc
            span.set_status(Status(StatusCode.ERROR, exc.reason))
            span.set_attribute("event.rejected", exc.reason)
        except BaseException:
            span.end()
            raise
        return message

    def kind_of(self, topic: str) -> str:
        """The event type of a rejected message, as far as its topic tells."""
        if topic == self._kafka.orders_topic:
            return "order.unknown"
        if topic == self._kafka.warehouse_topic:
            return "warehouse.unknown"
        return "unknown"

    def _parse(self, inbound: Inbound) -> StockEvent:
        if not inbound.value:
            raise InvalidEvent("undecodable", "empty message value")
        now_ms = self._clock_ms()
        if inbound.topic == self._kafka.orders_topic:
            record = self._codec.decode_order(inbound.value)
            return parse_order(
                record,
                max_quantity=self._sync.max_quantity,
                max_lines=self._sync.max_lines,
                now_ms=now_ms,
            )
        if inbound.topic == self._kafka.warehouse_topic:
            record = self._codec.decode_warehouse(inbound.value)
            return parse_warehouse(record, max_quantity=self._sync.max_quantity, now_ms=now_ms)
        raise InvalidEvent("unknown_topic", f"no event type is read from topic {inbound.topic!r}")


def dead_letter(message: Decoded, topic: str) -> Outbound:
    """The rejected message's copy for the dead-letter topic: original bytes, reason headers."""
    rejection = message.rejection
    assert rejection is not None
    inbound = message.inbound
    value = inbound.value or b""
    headers: tuple[tuple[str, bytes], ...] = (
        *inbound.headers,
        ("dlq.reason", rejection.reason.encode()),
        ("dlq.error", str(rejection)[:1000].encode()),
        ("dlq.topic", inbound.topic.encode()),
        ("dlq.partition", str(inbound.partition).encode()),
        ("dlq.offset", str(inbound.offset).encode()),
    )
    if len(value) > DEAD_LETTER_MAX_BYTES:
        # A message the broker took compressed may be over the producer's size limit
        # uncompressed: a copy that can never be sent would stall the partition. The
        # original stays in the input topic at the offset named in the headers.
        headers += (("dlq.truncated_from", str(len(value)).encode()),)
        value = value[:DEAD_LETTER_MAX_BYTES]
    return Outbound(topic, value, key=inbound.key, headers=inject_context(message.span, headers))
