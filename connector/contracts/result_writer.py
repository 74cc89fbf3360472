"""Avro binary of a ``SyncResult``, written by hand: the one record written for every input.

fastavro's ``schemaless_writer`` walks the parsed schema for every record and needs the
record as nested dicts first (``convert.result_record``); for the result, the connector's
most frequent output, that cost about as much as everything else ingest does per event. This
writes the same bytes straight from the typed value. It is bound to
``schemas/sync_result.avsc`` field by field: ``tests/unit/contracts/test_result_writer.py``
checks the schema's shape against ``SHAPE`` and the bytes against fastavro for generated
results, so a schema change that this module does not follow fails there, not in production.

Avro binary, as the specification has it: ``long`` and ``int`` are zig-zag varints; a
``string`` is its UTF-8 length then the bytes; an ``enum`` the symbol's index; a union the
branch's index then the value; an array blocks of ``count, items...`` ended by a 0 count
(fastavro writes one block); a record its fields in order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from connector.contracts.records import (
    ResultStatus,
    SkuResult,
    SyncResult,
    TaobaoCall,
    TaobaoState,
)

__all__ = ["SHAPE", "write_result"]

# The schema as this writer knows it: (field, Avro type) in order, nested records inline.
SHAPE: Final = (
    ("event_id", "string"),
    ("event_type", "string"),
    ("source", (("topic", "string"), ("partition", "int"), ("offset", "long"))),
    ("status", "enum"),
    ("processed_at", "long"),
    (
        "skus",
        (
            ("sku", "string"),
            ("effect", "string"),
            ("available", "long"),
            ("version", "long"),
            ("taobao_quantity", "long?"),
            ("taobao_state", "enum"),
            ("taobao_target", "long?"),
            ("taobao_version", "long?"),
        ),
    ),
    (
        "taobao_calls",
        (
            ("method", "string"),
            ("num_iid", "long?"),
            ("sku_ids", "long[]"),
            ("request_id", "string?"),
            ("outcome", "string"),
            ("attempts", "int"),
        ),
    ),
    ("error_code", "string?"),
    ("error_message", "string?"),
    ("trace_id", "string?"),
)
# Symbol indexes, in the schema's order (checked by the same test).
STATUS_SYMBOLS: Final = ("APPLIED", "DUPLICATE", "REJECTED", "UNMAPPED", "FAILED", "UNKNOWN")
STATE_SYMBOLS: Final = ("SYNCED", "PENDING", "UNMAPPED", "FAILED", "HAND_DELISTED", "UNKNOWN")

# Varints of the integers results are full of (versions, quantities, counts), made once.
_SMALL: Final = 1 << 13


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zig-zag: small magnitudes of either sign stay short
    if z < 0x200000:  # offsets and counts: up to three bytes, without a loop
        if z < 0x4000:
            return bytes((z & 0x7F | 0x80, z >> 7)) if z > 0x7F else bytes((z,))
        return bytes((z & 0x7F | 0x80, (z >> 7) & 0x7F | 0x80, z >> 14))
    return _long_varint(z)


@lru_cache(maxsize=64)  # mostly timestamps: a batch's results share theirs
def _long_varint(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_CACHE: Final = tuple(_varint(n) for n in range(-_SMALL, _SMALL))
# (UNKNOWN, the readers' default, has no member: the connector never writes it.)
_STATUS: Final = {s: _varint(STATUS_SYMBOLS.index(s.value)) for s in ResultStatus}
_STATE: Final = {s: _varint(STATE_SYMBOLS.index(s.value)) for s in TaobaoState}
_NULL: Final = b"\x00"  # union branch 0 (null); also an empty array's end
_SOME: Final = b"\x02"  # union branch 1 (the value)


def _long(n: int) -> bytes:
    if -_SMALL <= n < _SMALL:
        return _CACHE[n + _SMALL]
    if not -(1 << 63) <= n < 1 << 63:
        raise ValueError(f"{n} does not fit an Avro long")
    return _varint(n)


def _string(s: str) -> bytes:
    data = s.encode("utf-8")
    return _long(len(data)) + data


def _optional_long(n: int | None) -> bytes:
    return _NULL if n is None else _SOME + _long(n)


def _optional_string(s: str | None) -> bytes:
    return _NULL if s is None else _SOME + _string(s)


def _sku(s: SkuResult, out: list[bytes]) -> None:
    sku, effect = s.sku.encode("utf-8"), s.effect.encode("utf-8")
    out += (
        _long(len(sku)),
        sku,
        _long(len(effect)),
        effect,
        _long(s.available),
        _long(s.version),
        _optional_long(s.taobao_quantity),
        _STATE[s.taobao_state],
        _optional_long(s.taobao_target),
        _optional_long(s.taobao_version),
    )


def _call(c: TaobaoCall) -> bytes:
    ids = b"".join(_long(i) for i in c.sku_ids)
    return b"".join(
        (
            _string(c.method),
            _optional_long(c.num_iid),
            (_long(len(c.sku_ids)) + ids + _NULL) if c.sku_ids else _NULL,
            _optional_string(c.request_id),
            _string(c.outcome),
            _int(c.attempts),
        )
    )


def _int(n: int) -> bytes:
    if not -(1 << 31) <= n < 1 << 31:
        raise ValueError(f"{n} does not fit an Avro int")
    return _long(n)


def write_result(result: SyncResult) -> bytes:
    """The schemaless Avro binary of ``result`` (what fastavro writes for it)."""
    # One flat list joined once: this runs for every input, so it avoids a call per field.
    source = result.source
    event_id, event_type = result.event_id.encode("utf-8"), result.event_type.encode("utf-8")
    topic = source.topic.encode("utf-8")
    out = [
        _long(len(event_id)),
        event_id,
        _long(len(event_type)),
        event_type,
        _long(len(topic)),
        topic,
        _int(source.partition),
        _long(source.offset),
        _STATUS[result.status],
        _long(result.processed_at_ms),
    ]
    if result.skus:
        out.append(_long(len(result.skus)))
        for sku in result.skus:
            _sku(sku, out)
    out.append(_NULL)
    if result.taobao_calls:
        out.append(_long(len(result.taobao_calls)))
        out += (_call(c) for c in result.taobao_calls)
    out += (
        _NULL,
        _optional_string(result.error_code),
        _optional_string(result.error_message),
        _optional_string(result.trace_id),
    )
    return b"".join(out)
