"""The hand-written result encoder against the schema and against fastavro."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.contracts.codec import RecordKind, load_schema
from connector.contracts.convert import result_record
from connector.contracts.records import (
    EventSource,
    ResultStatus,
    SkuResult,
    SyncResult,
    TaobaoCall,
    TaobaoState,
)
from connector.contracts.result_writer import SHAPE, STATE_SYMBOLS, STATUS_SYMBOLS, write_result

SCHEMA = load_schema(RecordKind.RESULT)
PARSED = fastavro.parse_schema(SCHEMA)


def _shape(fields: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The schema reduced to what the writer's ``SHAPE`` states."""
    out = []
    for field in fields:
        kind = field["type"]
        if isinstance(kind, list):  # ["null", X]: optional
            assert kind[0] == "null"
            out.append((field["name"], f"{kind[1]}?"))
        elif isinstance(kind, dict) and kind["type"] == "record":
            out.append((field["name"], _shape(kind["fields"])))
        elif isinstance(kind, dict) and kind["type"] == "array":
            items = kind["items"]
            if isinstance(items, dict):
                out.append((field["name"], _shape(items["fields"])))
            else:
                out.append((field["name"], f"{items}[]"))
        elif isinstance(kind, dict):
            out.append((field["name"], kind["type"]))  # enum, or a logical type's base
        else:
            out.append((field["name"], kind))
    return tuple(out)


def _symbols(name: str) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum" and node.get("name") == name:
                found.extend(node["symbols"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SCHEMA)
    return found


def test_the_writer_follows_the_bundled_schema() -> None:
    assert _shape(SCHEMA["fields"]) == SHAPE
    assert tuple(_symbols("ResultStatus")) == STATUS_SYMBOLS
    assert tuple(_symbols("TaobaoState")) == STATE_SYMBOLS


def _fastavro(result: SyncResult) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, result_record(result))
    return buf.getvalue()


longs = st.integers(-(1 << 63), (1 << 63) - 1)
ints = st.integers(-(1 << 31), (1 << 31) - 1)
texts = st.text(max_size=12)
sku_results = st.builds(
    SkuResult,
    sku=texts,
    effect=texts,
    available=longs,
    version=longs,
    taobao_quantity=st.none() | longs,
    taobao_state=st.sampled_from(TaobaoState),
    taobao_target=st.none() | longs,
    taobao_version=st.none() | longs,
)
calls = st.builds(
    TaobaoCall,
    method=texts,
    num_iid=st.none() | longs,
    sku_ids=st.lists(longs, max_size=3).map(tuple),
    request_id=st.none() | texts,
    outcome=texts,
    attempts=ints,
)
results = st.builds(
    SyncResult,
    event_id=texts,
    event_type=texts,
    source=st.builds(EventSource, topic=texts, partition=ints, offset=longs),
    status=st.sampled_from(ResultStatus),
    processed_at_ms=longs,
    skus=st.lists(sku_results, max_size=3).map(tuple),
    taobao_calls=st.lists(calls, max_size=2).map(tuple),
    error_code=st.none() | texts,
    error_message=st.none() | texts,
    trace_id=st.none() | texts,
)


@given(results)
def test_the_bytes_are_fastavros(result: SyncResult) -> None:
    assert write_result(result) == _fastavro(result)


def test_a_typical_result_round_trips() -> None:
    result = SyncResult(
        "e-1",
        "order.created",
        EventSource("orders", 2, 123_456),
        ResultStatus.APPLIED,
        1_764_000_000_000,
        (SkuResult("A", "reserved", -3, 9_000, None, TaobaoState.PENDING, 0, 8_999),),
        trace_id="ab" * 16,
    )
    data = write_result(result)
    assert data == _fastavro(result)
    decoded = fastavro.schemaless_reader(io.BytesIO(data), PARSED, None)
    assert decoded["skus"][0]["available"] == -3


@pytest.mark.parametrize("bad", [1 << 63, -(1 << 63) - 1])
def test_a_number_outside_avro_long_is_refused_not_wrapped(bad: int) -> None:
    result = SyncResult("e", "t", EventSource("t", 0, bad), ResultStatus.APPLIED, 0)
    with pytest.raises(ValueError, match="Avro long"):
        write_result(result)
