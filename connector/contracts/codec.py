"""Avro encoding and decoding of the connector's Kafka records (fastavro).

Two wire formats, chosen by whether a Schema Registry is configured:

* **With a registry**: Confluent framing, ``0x00`` + 4-byte big-endian schema id + Avro
  binary. Encoding registers the bundled schema under ``<topic>-value``
  (TopicNameStrategy) once per topic and caches the id. Decoding fetches the *writer*
  schema by id (cached) and resolves it to the bundled *reader* schema, so records written
  with an older or a newer compatible schema version both decode; an enum symbol this
  reader does not know reads as the enum's default (``UNKNOWN``).
* **Without a registry**: plain schemaless Avro binary, with the bundled schema as both
  writer and reader. There is no schema id on the wire, so every producer must use the
  same schema version; that is the price of running without a registry.

The bundled schemas live in ``connector/contracts/schemas/`` (shipped in the wheel);
``schemas/`` at the repository root is a byte-identical copy for readers of the repository.
The mapping between typed values and Avro records is ``connector.contracts.convert``.

Decoding never lets a fastavro exception escape: bad bytes raise ``InvalidEvent`` (reason
``undecodable`` or ``unknown_schema``) so the caller dead-letters them, while a registry
that cannot be reached raises ``DependencyError`` so the caller retries instead.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, Final, Protocol, TypeVar

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form

from connector.contracts.convert import (
    alert_record,
    alert_value,
    millis,
    order_record,
    push_record,
    push_value,
    result_value,
    warehouse_record,
)
from connector.contracts.events import OrderEvent, WarehouseEvent
from connector.contracts.records import StockAlert, StockPush, SyncResult
from connector.contracts.result_writer import write_result
from connector.errors import ConfigError, DependencyError, InvalidEvent
from connector.settings import KafkaSettings

__all__ = [
    "MAGIC_BYTE",
    "AvroCodec",
    "RecordKind",
    "SchemaRegistry",
    "load_schema",
    "millis",
]

MAGIC_BYTE: Final = 0
_HEADER_SIZE: Final = 5  # magic byte + 4-byte schema id

# HTTP statuses of the registry that mean "this schema id does not exist" (bad input), as
# opposed to the registry being down (retry) or refusing our credentials (fix the config).
_NOT_FOUND: Final = 404
_AUTH_FAILED: Final = frozenset({401, 403})
_INCOMPATIBLE: Final = frozenset({409, 422})

_T = TypeVar("_T")


class RecordKind(StrEnum):
    """The record types, named after their schema files."""

    ORDER = "order_event"
    WAREHOUSE = "warehouse_event"
    RESULT = "sync_result"
    ALERT = "stock_alert"
    PUSH = "stock_push"


class SchemaRegistry(Protocol):
    """What the codec needs of ``confluent_kafka.schema_registry.SchemaRegistryClient``."""

    def register_schema(self, subject_name: str, schema: Any) -> int: ...

    def lookup_schema(self, subject_name: str, schema: Any) -> Any: ...

    def get_schema(self, schema_id: int) -> Any: ...


def load_schema(kind: RecordKind) -> dict[str, Any]:
    """The bundled schema of ``kind`` as JSON, read from the installed package."""
    text = (
        resources.files("connector.contracts")
        .joinpath("schemas", f"{kind.value}.avsc")
        .read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class _Bundled:
    """One bundled schema: its JSON text (what gets registered) and its parsed form."""

    text: str
    parsed: Any
    canonical: str


@dataclass(frozen=True, slots=True)
class _Reader:
    """How to read one writer schema id as one record kind."""

    writer: Any
    reader: Any  # None when the writer is the bundled schema: no resolution needed


class AvroCodec:
    """Encodes and decodes the connector's records; one instance per process is enough.

    The schemas are parsed once, here. Registry lookups are cached per instance: the id
    registered for each topic, and the writer schema for each id seen.
    """

    def __init__(self, registry: SchemaRegistry | None = None, *, auto_register: bool = True):
        self._registry = registry
        self._auto_register = auto_register
        self._schemas = {kind: _bundle(load_schema(kind)) for kind in RecordKind}
        self._plain = {kind: _Reader(s.parsed, None) for kind, s in self._schemas.items()}
        self._headers: dict[tuple[str, RecordKind], bytes] = {}
        self._readers: dict[tuple[int, RecordKind], _Reader] = {}

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> AvroCodec:
        """A codec with a registry client when ``KAFKA_SCHEMA_REGISTRY_URL`` is set."""
        if settings.schema_registry_url is None:
            return cls(None)
        return cls(_registry_client(settings))

    @property
    def uses_registry(self) -> bool:
        return self._registry is not None

    # -- input events ------------------------------------------------------------------

    def decode_order(self, payload: bytes) -> dict[str, Any]:
        """The raw Avro record of an ``OrderEvent``; ``connector.ingest.validate`` types it."""
        return self._decode(payload, RecordKind.ORDER)

    def decode_warehouse(self, payload: bytes) -> dict[str, Any]:
        """The raw Avro record of a ``WarehouseEvent``; ``connector.ingest.validate`` types it."""
        return self._decode(payload, RecordKind.WAREHOUSE)

    def encode_order(self, event: OrderEvent, *, topic: str) -> bytes:
        return self._encode(order_record(event), RecordKind.ORDER, topic)

    def encode_warehouse(self, event: WarehouseEvent, *, topic: str) -> bytes:
        return self._encode(warehouse_record(event), RecordKind.WAREHOUSE, topic)

    # -- output records ----------------------------------------------------------------

    def encode_result(self, result: SyncResult, *, topic: str) -> bytes:
        # Written by hand (connector.contracts.result_writer): the same bytes as fastavro
        # writes, at a fraction of the cost, for the record every input produces.
        body = write_result(result)
        if self._registry is None:
            return body
        return self._header(self._registry, topic, RecordKind.RESULT) + body

    def decode_result(self, payload: bytes) -> SyncResult:
        return _typed(result_value, self._decode(payload, RecordKind.RESULT))

    def encode_alert(self, alert: StockAlert, *, topic: str) -> bytes:
        return self._encode(alert_record(alert), RecordKind.ALERT, topic)

    def decode_alert(self, payload: bytes) -> StockAlert:
        return _typed(alert_value, self._decode(payload, RecordKind.ALERT))

    def encode_push(self, push: StockPush, *, topic: str) -> bytes:
        return self._encode(push_record(push), RecordKind.PUSH, topic)

    def decode_push(self, payload: bytes) -> StockPush:
        return _typed(push_value, self._decode(payload, RecordKind.PUSH))

    # -- wire format -------------------------------------------------------------------

    def _encode(self, record: Mapping[str, Any], kind: RecordKind, topic: str) -> bytes:
        buf = io.BytesIO()
        if self._registry is not None:
            buf.write(self._header(self._registry, topic, kind))
        fastavro.schemaless_writer(buf, self._schemas[kind].parsed, record)
        return buf.getvalue()

    def _header(self, registry: SchemaRegistry, topic: str, kind: RecordKind) -> bytes:
        header = self._headers.get((topic, kind))
        if header is None:
            schema_id = self._schema_id(registry, f"{topic}-value", kind)
            header = bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")
            self._headers[(topic, kind)] = header
        return header

    def _schema_id(self, registry: SchemaRegistry, subject: str, kind: RecordKind) -> int:
        schema = _registry_schema(self._schemas[kind].text)
        try:
            if self._auto_register:
                return int(registry.register_schema(subject, schema))
            return int(registry.lookup_schema(subject, schema).schema_id)
        except Exception as exc:
            doing = f"looking up the {kind.value} schema under subject {subject}"
            if getattr(exc, "http_status_code", None) == _NOT_FOUND:
                # Only reachable with auto-registration off: a deployment step was missed.
                raise ConfigError(f"schema registry: not registered while {doing}") from exc
            raise _registry_error(exc, doing) from exc

    def _decode(self, payload: bytes, kind: RecordKind) -> dict[str, Any]:
        if self._registry is None:
            return _read(payload, 0, self._plain[kind], kind)
        if len(payload) < _HEADER_SIZE or payload[0] != MAGIC_BYTE:
            raise InvalidEvent(
                "undecodable",
                f"{kind.value}: not in Confluent wire format (magic byte 0 + 4-byte schema id)",
            )
        schema_id = int.from_bytes(payload[1:_HEADER_SIZE], "big")
        reader = self._readers.get((schema_id, kind))
        if reader is None:
            reader = self._resolve(self._registry, schema_id, kind)
        return _read(payload, _HEADER_SIZE, reader, kind)

    def _resolve(self, registry: SchemaRegistry, schema_id: int, kind: RecordKind) -> _Reader:
        """Fetch a writer schema once and remember how to read it as ``kind``."""
        writer = self._writer_schema(registry, schema_id, kind)
        bundled = self._schemas[kind]
        # Resolution costs time on every record: skip it when writer and reader agree.
        same = to_parsing_canonical_form(writer) == bundled.canonical
        reader = _Reader(writer, None if same else bundled.parsed)
        self._readers[(schema_id, kind)] = reader
        return reader

    def _writer_schema(self, registry: SchemaRegistry, schema_id: int, kind: RecordKind) -> Any:
        try:
            schema = registry.get_schema(schema_id)
        except Exception as exc:
            raise _registry_error(exc, f"fetching schema id {schema_id}") from exc
        if (getattr(schema, "schema_type", None) or "AVRO") != "AVRO":
            raise InvalidEvent(
                "unknown_schema", f"{kind.value}: schema id {schema_id} is not an Avro schema"
            )
        try:
            return fastavro.parse_schema(json.loads(schema.schema_str))
        except Exception as exc:  # any malformed schema text: json, fastavro, attributes
            raise InvalidEvent(
                "unknown_schema", f"{kind.value}: schema id {schema_id} is not a usable schema"
            ) from exc


def _bundle(schema: dict[str, Any]) -> _Bundled:
    parsed = fastavro.parse_schema(schema)
    return _Bundled(json.dumps(schema), parsed, to_parsing_canonical_form(parsed))


def _read(payload: bytes, start: int, how: _Reader, kind: RecordKind) -> dict[str, Any]:
    buf = io.BytesIO(payload)
    buf.seek(start)
    try:
        record = fastavro.schemaless_reader(buf, how.writer, how.reader)
    except SchemaResolutionError as exc:
        raise InvalidEvent(
            "unknown_schema", f"{kind.value}: the writer schema cannot be read as {kind.value}"
        ) from exc
    except Exception as exc:
        # Garbage bytes surface as EOFError, UnicodeDecodeError, IndexError, ValueError,
        # OverflowError, MemoryError (a huge length prefix)...: all mean the same here.
        raise InvalidEvent("undecodable", f"{kind.value}: not a valid Avro record") from exc
    if buf.tell() != len(payload) or not isinstance(record, dict):
        # Trailing bytes mean the payload was not written with this schema.
        raise InvalidEvent("undecodable", f"{kind.value}: not a valid Avro record")
    return record


def _typed(convert: Callable[[dict[str, Any]], _T], record: dict[str, Any]) -> _T:
    """Build a typed value; a symbol it has no member for (``UNKNOWN``) is rejected."""
    try:
        return convert(record)
    except ValueError as exc:
        raise InvalidEvent("unknown_type", f"unrepresentable value: {exc}") from exc


# -- registry ----------------------------------------------------------------------------


def _registry_client(settings: KafkaSettings) -> SchemaRegistry:
    try:
        # Imported here: the registry client's own dependencies are only needed with a registry.
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:
        raise ConfigError(
            "KAFKA_SCHEMA_REGISTRY_URL is set but confluent-kafka's schema registry support "
            f"is not installed ({exc})"
        ) from exc
    conf: dict[str, str] = {"url": str(settings.schema_registry_url)}
    if settings.schema_registry_basic_auth is not None:
        conf["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    try:
        # new_client also understands mock:// URLs, for tests and demos.
        client: SchemaRegistry = SchemaRegistryClient.new_client(conf)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            "KAFKA_SCHEMA_REGISTRY_URL / KAFKA_SCHEMA_REGISTRY_BASIC_AUTH: invalid "
            f"({type(exc).__name__})"
        ) from None
    return client


def _registry_schema(text: str) -> Any:
    from confluent_kafka.schema_registry import Schema  # only reached with a registry

    return Schema(text, "AVRO")


def _registry_error(exc: Exception, doing: str) -> Exception:
    """Translate a registry failure: unknown id is bad input, anything else is not."""
    status = getattr(exc, "http_status_code", None)
    if status == _NOT_FOUND:
        return InvalidEvent("unknown_schema", f"schema registry: not found while {doing}")
    if status in _AUTH_FAILED:
        return ConfigError(
            f"schema registry refused the credentials (HTTP {status}) while {doing}: "
            "check KAFKA_SCHEMA_REGISTRY_BASIC_AUTH"
        )
    if status in _INCOMPATIBLE:
        return ConfigError(f"schema registry rejected the schema (HTTP {status}) while {doing}")
    return DependencyError(f"schema registry unreachable while {doing}: {type(exc).__name__}")
