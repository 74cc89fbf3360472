"""Avro codec: round trips, Confluent framing, schema evolution, and garbage that never escapes."""

from __future__ import annotations

import copy
import functools
import importlib
import io
import json
import uuid
import warnings
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.contracts.codec import AvroCodec, RecordKind, load_schema, millis
from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.contracts.records import (
    AlertKind,
    EventSource,
    PushedSku,
    ResultStatus,
    Severity,
    SkuResult,
    StockAlert,
    StockPush,
    SyncResult,
    TaobaoCall,
    TaobaoState,
)
from connector.errors import ConfigError, DependencyError, InvalidEvent
from connector.ingest.validate import parse_order
from connector.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[3]
NOW_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z

ORDER = OrderEvent(
    event_id="evt-1",
    order_id="TB-20240501-0001",
    channel="taobao",
    shop="旗舰店",
    type=OrderType.CREATED,
    lines=(OrderLine("红色-XL/纯棉", 2), OrderLine("SKU-2", 1, "HZ-01")),
    occurred_at_ms=NOW_MS - 1,
)
WAREHOUSE = WarehouseEvent(
    event_id="evt-2",
    warehouse="HZ-01",
    type=WarehouseType.ADJUSTED,
    sku="SKU-2",
    quantity=-3,
    occurred_at_ms=NOW_MS,
)
RESULT = SyncResult(
    event_id="evt-1",
    event_type="order.created",
    source=EventSource("orders", 3, 2**40),
    status=ResultStatus.FAILED,
    processed_at_ms=NOW_MS + 5,
    skus=(
        SkuResult("SKU-1", "reserved", -2, 17, None, TaobaoState.PENDING),
        SkuResult("SKU-2", "reserved", 40, 3, 38, TaobaoState.SYNCED, 38, 3),
    ),
    taobao_calls=(
        TaobaoCall("taobao.skus.quantity.update", 600123456789, (1, 2), "req-1", "ok", 3),
        TaobaoCall("taobao.item.update.delisting", None, (), None, "TaobaoCallerError"),
    ),
    error_code="isv.invalid-parameter",
    error_message="bad",
    trace_id="0af7651916cd43dd8448eb211c80319c",
)
ALERT = StockAlert(
    alert_id="oversell:SKU-1:evt-1",
    kind=AlertKind.OVERSELL,
    severity=Severity.CRITICAL,
    message="SKU-1 oversold by 2",
    raised_at_ms=NOW_MS,
    sku="SKU-1",
    num_iid=600123456789,
    event_id="evt-1",
    details={"available": "-2", "requested": "2"},
)
PUSH = StockPush(
    push_id="push:600123456789:17:1714521600010",
    num_iid=600123456789,
    outcome=TaobaoState.PENDING,
    pushed_at_ms=NOW_MS + 10,
    skus=(
        PushedSku("红色-XL/纯棉", 5001, 0, 17, confirmed=True),
        PushedSku("SKU-2", None, None, None),
    ),
    calls=(
        TaobaoCall("taobao.skus.quantity.update", 600123456789, (5001,), "req-7", "ok", 2),
        TaobaoCall("taobao.item.update.delisting", 600123456789, (), None, "TaobaoCallLimited"),
    ),
    shelf=("DELISTED",),
    error_class="call_limited",
    error_message="accesscontrol.limited-by-app-access-count",
    attempts=3,
    retry_at_ms=NOW_MS + 60_000,
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    event_trace_ids=("0af7651916cd43dd8448eb211c80319c", "5b8efff798038103d269b633813fc60c"),
)


# Authlib (the registry client's OAuth dependency) warns on import when it finds httpx
# rather than httpx2, and forces that warning to "always"; recording it here keeps it out
# of every test's warnings. The proper fix is installing httpx2.
schema_registry: Any
with warnings.catch_warnings(record=True):
    try:
        schema_registry = importlib.import_module("confluent_kafka.schema_registry")
    except ImportError:  # the schema registry extras are not installed
        schema_registry = None

needs_registry = pytest.mark.skipif(
    schema_registry is None, reason="confluent_kafka.schema_registry needs authlib, cachetools"
)


def _mock_registry() -> Any:
    if schema_registry is None:
        pytest.skip("confluent_kafka.schema_registry needs authlib and cachetools")
    # new_client() is what turns a mock:// URL into the in-memory mock registry.
    url = f"mock://codec-{uuid.uuid4().hex}"
    return schema_registry.SchemaRegistryClient.new_client({"url": url})


def _schema(text: str) -> Any:
    assert schema_registry is not None
    return schema_registry.Schema(text, "AVRO")


def _avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def _framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


@pytest.fixture(params=["plain", "registry"])
def codec(request: pytest.FixtureRequest) -> AvroCodec:
    return AvroCodec(_mock_registry() if request.param == "registry" else None)


# -- round trips ---------------------------------------------------------------------------


def test_order_round_trip(codec: AvroCodec) -> None:
    record = codec.decode_order(codec.encode_order(ORDER, topic="orders"))
    assert record["channel"] == "TAOBAO"
    assert record["type"] == "CREATED"
    assert parse_order(record, max_quantity=100, max_lines=10, now_ms=NOW_MS) == ORDER


def test_warehouse_round_trip(codec: AvroCodec) -> None:
    record = codec.decode_warehouse(codec.encode_warehouse(WAREHOUSE, topic="wh"))
    assert record == {
        "event_id": "evt-2",
        "warehouse": "HZ-01",
        "type": "ADJUSTED",
        "sku": "SKU-2",
        "quantity": -3,
        "occurred_at": record["occurred_at"],
    }
    assert millis(record["occurred_at"]) == NOW_MS


def test_result_round_trip(codec: AvroCodec) -> None:
    assert codec.decode_result(codec.encode_result(RESULT, topic="results")) == RESULT
    minimal = SyncResult("", "unknown", EventSource("orders", 0, 0), ResultStatus.REJECTED, 1)
    assert codec.decode_result(codec.encode_result(minimal, topic="results")) == minimal


def test_alert_round_trip(codec: AvroCodec) -> None:
    assert codec.decode_alert(codec.encode_alert(ALERT, topic="alerts")) == ALERT
    bare = StockAlert("a", AlertKind.CALL_LIMITED, Severity.INFO, "m", 1)
    assert codec.decode_alert(codec.encode_alert(bare, topic="alerts")) == bare


def test_push_round_trip(codec: AvroCodec) -> None:
    assert codec.decode_push(codec.encode_push(PUSH, topic="pushes")) == PUSH
    minimal = StockPush("p", 1, TaobaoState.SYNCED, 1)
    assert codec.decode_push(codec.encode_push(minimal, topic="pushes")) == minimal
    assert minimal.attempts == 0
    assert minimal.retry_at_ms is None


def test_channel_without_symbol_travels_as_other() -> None:
    codec = AvroCodec()
    event = OrderEvent("e", "o", "xiaohongshu", "s", OrderType.SHIPPED, ORDER.lines, 1)
    assert codec.decode_order(codec.encode_order(event, topic="orders"))["channel"] == "OTHER"


def test_millisecond_timestamps_are_exact() -> None:
    codec = AvroCodec()
    for ms in (1, 999, 1_714_521_600_001, 253_402_300_799_999):  # up to 9999-12-31
        alert = StockAlert("a", AlertKind.LOW_STOCK, Severity.WARNING, "m", ms)
        assert codec.decode_alert(codec.encode_alert(alert, topic="t")).raised_at_ms == ms


# -- wire format ---------------------------------------------------------------------------


def test_confluent_framing_is_magic_id_then_plain_avro() -> None:
    registry = _mock_registry()
    framed = AvroCodec(registry).encode_order(ORDER, topic="orders")
    plain = AvroCodec().encode_order(ORDER, topic="orders")
    schema_id = registry.get_latest_version("orders-value").schema_id
    assert framed == b"\x00" + schema_id.to_bytes(4, "big") + plain


def test_subjects_follow_the_topic_name_strategy() -> None:
    registry = _mock_registry()
    codec = AvroCodec(registry)
    codec.encode_order(ORDER, topic="orders")
    codec.encode_result(RESULT, topic="results")
    codec.encode_push(PUSH, topic="stock-sync-pushes")
    assert sorted(registry.get_subjects()) == [
        "orders-value",
        "results-value",
        "stock-sync-pushes-value",
    ]


class _Counting:
    """A registry proxy that counts calls, to show the codec caches them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def register_schema(self, subject_name: str, schema: Any) -> int:
        self.calls.append("register")
        return int(self.inner.register_schema(subject_name, schema))

    def lookup_schema(self, subject_name: str, schema: Any) -> Any:
        self.calls.append("lookup")
        return self.inner.lookup_schema(subject_name, schema)

    def get_schema(self, schema_id: int) -> Any:
        self.calls.append("get")
        return self.inner.get_schema(schema_id)


def test_registry_lookups_are_cached() -> None:
    registry = _Counting(_mock_registry())
    codec = AvroCodec(registry)
    payloads = [codec.encode_order(ORDER, topic="orders") for _ in range(5)]
    for payload in payloads:
        codec.decode_order(payload)
    assert registry.calls == ["register", "get"]


def test_lookup_instead_of_register_when_auto_register_is_off() -> None:
    registry = _Counting(_mock_registry())
    with pytest.raises(ConfigError, match="not registered"):
        AvroCodec(registry, auto_register=False).encode_order(ORDER, topic="orders")
    AvroCodec(registry).encode_order(ORDER, topic="orders")  # a deployment step registers it
    framed = AvroCodec(registry, auto_register=False).encode_order(ORDER, topic="orders")
    assert framed[:1] == b"\x00"
    assert registry.calls == ["lookup", "register", "lookup"]


# -- schema evolution ----------------------------------------------------------------------


def _older_order_schema() -> dict[str, Any]:
    """v0: lines had no warehouse, and the type enum had no REFUNDED symbol."""
    schema = load_schema(RecordKind.ORDER)
    fields = {f["name"]: f for f in schema["fields"]}
    line = fields["lines"]["type"]["items"]
    line["fields"] = [f for f in line["fields"] if f["name"] != "warehouse"]
    fields["type"]["type"]["symbols"].remove("REFUNDED")
    return schema


def _newer_order_schema() -> dict[str, Any]:
    """v2: an optional field with a default, and a type symbol this codec has never seen."""
    schema = load_schema(RecordKind.ORDER)
    schema["fields"].append(
        {"name": "buyer_note", "type": ["null", "string"], "default": None, "doc": "note"}
    )
    type_enum = next(f for f in schema["fields"] if f["name"] == "type")["type"]
    type_enum["symbols"].insert(0, "PRESALE_LOCKED")
    return schema


def _order_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "evt-9",
        "order_id": "o-9",
        "channel": "JD",
        "shop": "jd-shop",
        "type": "CREATED",
        "lines": [{"sku": "SKU-1", "quantity": 4}],
        "occurred_at": NOW_MS,
    }
    record.update(changes)
    return record


def test_older_and_newer_writer_schemas_both_decode() -> None:
    registry = _mock_registry()
    codec = AvroCodec(registry)
    current = codec.encode_order(ORDER, topic="orders")  # registers the current version
    older, newer = _older_order_schema(), _newer_order_schema()
    older_id = registry.register_schema("orders-value", _schema(json.dumps(older)))
    newer_id = registry.register_schema("orders-value", _schema(json.dumps(newer)))
    assert len({older_id, newer_id, int.from_bytes(current[1:5], "big")}) == 3

    old = codec.decode_order(_framed(older_id, _avro(older, _order_record())))
    assert old["lines"] == [{"sku": "SKU-1", "quantity": 4, "warehouse": None, "listing": None}]
    event = parse_order(old, max_quantity=100, max_lines=10, now_ms=NOW_MS)
    assert event.type is OrderType.CREATED
    assert event.lines == (OrderLine("SKU-1", 4, None),)

    new = codec.decode_order(
        _framed(newer_id, _avro(newer, _order_record(buyer_note="hi", type="SHIPPED")))
    )
    assert "buyer_note" not in new
    assert parse_order(new, max_quantity=100, max_lines=10, now_ms=NOW_MS).type is (
        OrderType.SHIPPED
    )


def test_unknown_enum_symbol_from_newer_writer_is_rejected_by_validation() -> None:
    registry = _mock_registry()
    codec = AvroCodec(registry)
    newer = _newer_order_schema()
    newer_id = registry.register_schema("orders-value", _schema(json.dumps(newer)))
    record = codec.decode_order(
        _framed(newer_id, _avro(newer, _order_record(type="PRESALE_LOCKED")))
    )
    assert record["type"] == "UNKNOWN"
    with pytest.raises(InvalidEvent) as info:
        parse_order(record, max_quantity=100, max_lines=10, now_ms=NOW_MS)
    assert info.value.reason == "unknown_type"


def _previous_result_schema() -> dict[str, Any]:
    """sync_result before SkuResult had taobao_target/taobao_version and TaobaoCall attempts."""
    schema = load_schema(RecordKind.RESULT)
    fields = {f["name"]: f for f in schema["fields"]}
    sku = fields["skus"]["type"]["items"]
    sku["fields"] = [
        f for f in sku["fields"] if f["name"] not in {"taobao_target", "taobao_version"}
    ]
    call = fields["taobao_calls"]["type"]["items"]
    call["fields"] = [f for f in call["fields"] if f["name"] != "attempts"]
    return schema


def _previous_result_record() -> dict[str, Any]:
    return {
        "event_id": "evt-7",
        "event_type": "order.created",
        "source": {"topic": "orders", "partition": 1, "offset": 42},
        "status": "APPLIED",
        "processed_at": NOW_MS,
        "skus": [
            {
                "sku": "SKU-1",
                "effect": "reserved",
                "available": 9,
                "version": 4,
                "taobao_quantity": 9,
                "taobao_state": "SYNCED",
            }
        ],
        "taobao_calls": [
            {
                "method": "taobao.skus.quantity.update",
                "num_iid": 600123456789,
                "sku_ids": [5001],
                "request_id": "req-1",
                "outcome": "ok",
            }
        ],
    }


def test_previous_result_schema_reads_with_the_new_fields_defaulted() -> None:
    registry = _mock_registry()
    codec = AvroCodec(registry)
    previous = _previous_result_schema()
    assert previous != load_schema(RecordKind.RESULT)
    previous_id = registry.register_schema("results-value", _schema(json.dumps(previous)))
    result = codec.decode_result(_framed(previous_id, _avro(previous, _previous_result_record())))
    assert result.skus == (SkuResult("SKU-1", "reserved", 9, 4, 9, TaobaoState.SYNCED, None, None),)
    assert result.taobao_calls == (
        TaobaoCall("taobao.skus.quantity.update", 600123456789, (5001,), "req-1", "ok", 1),
    )
    assert result.taobao_calls[0].attempts == 1


def test_current_result_reads_with_the_previous_schema() -> None:
    """Forward compatibility: a consumer still on the previous schema reads new results."""
    previous = fastavro.parse_schema(_previous_result_schema())
    current = fastavro.parse_schema(load_schema(RecordKind.RESULT))
    buf = io.BytesIO(AvroCodec().encode_result(RESULT, topic="results"))
    record: Any = fastavro.schemaless_reader(buf, current, previous)
    assert [s["taobao_quantity"] for s in record["skus"]] == [None, 38]
    assert "taobao_target" not in record["skus"][1]
    assert "attempts" not in record["taobao_calls"][0]


def test_unknown_push_outcome_is_rejected_not_crashing() -> None:
    schema = load_schema(RecordKind.PUSH)
    record = {"push_id": "p", "num_iid": 1, "outcome": "UNKNOWN", "pushed_at": 1}
    with pytest.raises(InvalidEvent) as info:
        AvroCodec().decode_push(_avro(schema, record))
    assert info.value.reason == "unknown_type"


def test_unknown_output_symbol_is_rejected_not_crashing() -> None:
    schema = load_schema(RecordKind.ALERT)
    kind = next(f for f in schema["fields"] if f["name"] == "kind")["type"]
    record = {
        "alert_id": "a",
        "kind": "UNKNOWN",
        "severity": "INFO",
        "message": "m",
        "raised_at": 1,
        "details": {},
    }
    assert "UNKNOWN" in kind["symbols"]
    with pytest.raises(InvalidEvent) as info:
        AvroCodec().decode_alert(_avro(schema, record))
    assert info.value.reason == "unknown_type"


# -- failures ------------------------------------------------------------------------------


def _reason(call: Any, payload: bytes) -> str:
    with pytest.raises(InvalidEvent) as info:
        call(payload)
    return info.value.reason


def test_bad_framing_and_unknown_ids() -> None:
    codec = AvroCodec(_mock_registry())
    good = codec.encode_order(ORDER, topic="orders")
    assert _reason(codec.decode_order, b"") == "undecodable"
    assert _reason(codec.decode_order, b"\x00\x00\x01") == "undecodable"
    assert _reason(codec.decode_order, b"\x01" + good[1:]) == "undecodable"
    assert _reason(codec.decode_order, _framed(4242, good[5:])) == "unknown_schema"
    assert _reason(codec.decode_order, good[:-1]) == "undecodable"
    assert _reason(codec.decode_order, good + b"\x00") == "undecodable"


def test_writer_schema_of_another_record_is_unknown_schema() -> None:
    codec = AvroCodec(_mock_registry())
    warehouse = codec.encode_warehouse(WAREHOUSE, topic="wh")
    assert _reason(codec.decode_order, warehouse) == "unknown_schema"


def test_plain_codec_rejects_truncated_and_trailing_bytes() -> None:
    codec = AvroCodec()
    good = codec.encode_warehouse(WAREHOUSE, topic="wh")
    assert _reason(codec.decode_warehouse, good[:-1]) == "undecodable"
    assert _reason(codec.decode_warehouse, good + b"\x02") == "undecodable"


class _Failing:
    """A registry whose every call fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def register_schema(self, subject_name: str, schema: Any) -> int:
        raise self.error

    def lookup_schema(self, subject_name: str, schema: Any) -> Any:
        raise self.error

    def get_schema(self, schema_id: int) -> Any:
        raise self.error


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        self.http_status_code = status


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError("refused"), DependencyError),
        (TimeoutError("slow"), DependencyError),
        (_HttpError(503), DependencyError),
        (_HttpError(401), ConfigError),
        (_HttpError(409), ConfigError),
    ],
)
def test_registry_failures_are_not_bad_input(error: Exception, expected: type[Exception]) -> None:
    codec = AvroCodec(_Failing(error))
    with pytest.raises(expected):
        codec.encode_order(ORDER, topic="orders")
    with pytest.raises(expected):
        codec.decode_order(_framed(1, b""))


def test_registry_not_found_is_unknown_schema() -> None:
    assert _reason(AvroCodec(_Failing(_HttpError(404))).decode_order, _framed(7, b"")) == (
        "unknown_schema"
    )


@needs_registry
def test_unreachable_real_registry_is_a_dependency_error() -> None:
    # Port 9 (discard) has no listener: connection refused, once (no retries, to be fast).
    client = schema_registry.SchemaRegistryClient({"url": "http://127.0.0.1:9", "max.retries": 0})
    codec = AvroCodec(client)
    with pytest.raises(DependencyError):
        codec.decode_order(_framed(1, b"\x00"))


def test_from_settings() -> None:
    assert not AvroCodec.from_settings(KafkaSettings(bootstrap_servers="b:9092")).uses_registry
    if schema_registry is None:
        pytest.skip("confluent_kafka.schema_registry needs authlib and cachetools")
    with_registry = KafkaSettings(
        bootstrap_servers="b:9092",
        schema_registry_url=f"mock://settings-{uuid.uuid4().hex}",
        schema_registry_basic_auth="user:pass",
    )
    codec = AvroCodec.from_settings(with_registry)
    assert codec.uses_registry
    assert codec.decode_order(codec.encode_order(ORDER, topic="orders"))["order_id"] == (
        ORDER.order_id
    )
    bad = KafkaSettings(bootstrap_servers="b:9092", schema_registry_url="ftp://registry")
    with pytest.raises(ConfigError, match="KAFKA_SCHEMA_REGISTRY_URL"):
        AvroCodec.from_settings(bad)


# -- fuzzing -------------------------------------------------------------------------------

PLAIN = AvroCodec()


@functools.cache
def _fuzz_registry_codec() -> AvroCodec:
    """One registry codec for all examples, with every record type registered (ids 1-5)."""
    codec = AvroCodec(_mock_registry())
    codec.encode_order(ORDER, topic="t")
    codec.encode_warehouse(WAREHOUSE, topic="t")
    codec.encode_result(RESULT, topic="t")
    codec.encode_alert(ALERT, topic="t")
    codec.encode_push(PUSH, topic="t")
    return codec


def _decoders(codec: AvroCodec) -> list[Any]:
    return [
        codec.decode_order,
        codec.decode_warehouse,
        codec.decode_result,
        codec.decode_alert,
        codec.decode_push,
    ]


def _only_invalid_event(codec: AvroCodec, payload: bytes) -> None:
    """Each decoder either decodes or raises InvalidEvent; anything else fails the test."""
    reasons = set()
    for decode in _decoders(codec):
        try:
            decode(payload)
        except InvalidEvent as exc:
            reasons.add(exc.reason)
    assert reasons <= {"undecodable", "unknown_schema", "unknown_type"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_garbage_raises_only_invalid_event(payload: bytes) -> None:
    _only_invalid_event(PLAIN, payload)


VALID = [
    PLAIN.encode_order(ORDER, topic="t"),
    PLAIN.encode_warehouse(WAREHOUSE, topic="t"),
    PLAIN.encode_result(RESULT, topic="t"),
    PLAIN.encode_alert(ALERT, topic="t"),
    PLAIN.encode_push(PUSH, topic="t"),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_corrupted_records_raise_only_invalid_event(valid: bytes, data: st.DataObject) -> None:
    payload = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    _only_invalid_event(PLAIN, bytes(payload[:cut]))
    _only_invalid_event(PLAIN, bytes(payload))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 6))
def test_framed_garbage_raises_only_invalid_event(body: bytes, schema_id: int) -> None:
    codec = _fuzz_registry_codec()
    _only_invalid_event(codec, _framed(schema_id, body))
    _only_invalid_event(codec, body)


def test_huge_length_prefix_is_undecodable() -> None:
    # A string length of about 2**62: must not try to allocate it.
    assert _reason(PLAIN.decode_order, b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f") == "undecodable"


# -- schema files --------------------------------------------------------------------------


def test_repository_schemas_match_the_packaged_ones() -> None:
    packaged = {
        p.name: p.read_bytes()
        for p in (ROOT / "connector" / "contracts" / "schemas").glob("*.avsc")
    }
    top = {p.name: p.read_bytes() for p in (ROOT / "schemas").glob("*.avsc")}
    assert set(packaged) == {f"{kind.value}.avsc" for kind in RecordKind}
    assert set(packaged) == {
        "order_event.avsc",
        "warehouse_event.avsc",
        "sync_result.avsc",
        "stock_alert.avsc",
        "stock_push.avsc",
    }
    assert top == packaged


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every named type and field in a schema."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "name" in node:
            found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_shared_types_are_defined_alike_in_every_schema() -> None:
    """A named type repeated in another (standalone) file must be the same definition."""
    defined: dict[str, dict[RecordKind, dict[str, Any]]] = {}
    for kind in RecordKind:
        for node in _walk(load_schema(kind)):
            if node.get("type") in ("record", "enum"):
                defined.setdefault(node["name"], {})[kind] = node
    for name, where in defined.items():
        assert len({json.dumps(node, sort_keys=True) for node in where.values()}) == 1, name
    for name in ("TaobaoState", "TaobaoCall"):
        assert set(defined[name]) == {RecordKind.RESULT, RecordKind.PUSH}


@pytest.mark.parametrize("kind", list(RecordKind))
def test_schema_conventions(kind: RecordKind) -> None:
    schema = load_schema(kind)
    assert schema["namespace"] == "com.tbsync.stock.v1"
    for node in _walk(copy.deepcopy(schema)):
        assert node.get("doc"), f"{node['name']} has no doc"
        if node.get("type") == "enum":
            assert node.get("default") in node["symbols"], f"{node['name']} has no default"
        if isinstance(node.get("type"), list) and "null" in node["type"]:
            assert node["type"][0] == "null"
            assert "default" in node and node["default"] is None, node["name"]
