"""The stock ledger in Redis: the source of truth Taobao is a projection of.

A batch is applied in chunks, each by ONE call of ``ledger_apply.lua``: for every event of
the chunk, in order, its de-dup keys, its stock arithmetic for every line, the order's line
state, the movement logs, the version bump and the pending (outbox) entry are written
together, so a crash leaves all or none of the chunk. Each SKU hash, order hash and de-dup
key is read and written once per chunk, which is what makes a batch cheap. The semantics
are specified by the pure model in ``connector.ledger.stock``; the two must agree for any
arrival order, batching and redelivery (property test in
``tests/integration/ledger/test_ledger.py``).

Redis layout (every key from ``connector.keys.Keys``):

- ``sku(sku)`` hash: ``on_hand`` (total over warehouses), ``oh:<wh>`` (per warehouse),
  ``reserved``, ``version`` (+1 on every stock change), ``pushed`` (highest version Taobao
  confirmed), ``tb_state`` / ``tb_qty`` / ``tb_ver`` (the last push's state, the quantity
  Taobao was told and the version it came from: what results say of Taobao),
  ``st_at:<wh>`` / ``st_id:<wh>`` (the stocktake in force at a warehouse: occurred_at and
  event id), ``mv_trim:<wh>`` (the movement log's horizon, see Limits).
- ``order(order_id)`` hash: ``state:<sku>`` (reserved | cancelled | shipped),
  ``reserved:<sku>`` (what that line holds), ``seen:<type>:<sku>`` (the line's de-dup value,
  below), ``open`` (how many lines are reserved) and ``layout`` (2; a hash without it was
  created when order lines' de-dup values were ``seen`` keys, which it still reads for
  them); kept while ``open`` > 0, then expires
  after the de-dup TTL (refreshed by each write), so a line's de-dup value lives at least
  that long, read and written with the line's state at no extra command.
- ``seen(event_id)`` string with the de-dup TTL: a warehouse event's de-dup value. A de-dup
  value is the effect name, ``!`` if it oversold, and
  ``?<attempt>:<available>:<reserved>:<on_hand>:<version>`` (the apply call that made it and
  the figures right after it).
- ``reported(attempt)`` string with the de-dup TTL plus an hour: that apply call's outputs
  (results, alerts) were produced (``mark_reported``, one write per call). A duplicate
  whose seen value names an attempt without it is reported as the application it was.
- ``movements(sku, wh)`` sorted set: movements applied since the warehouse's last stocktake,
  score = occurred_at, member = ``<dedupe key>|<signed delta>``.
- ``marker`` hash: ``id``, ``created_ms``, ``layout``, ``p:<topic>:<partition>`` (the last
  input offset applied of each partition, written by the same call as the effects) and
  ``r:<topic>:<partition>`` (the last one whose outputs were produced, written after each
  batch's acknowledgement); see ``connector.ledger.positions``. Every apply call and every
  stock read checks it exists.
- ``pending`` sorted set: SKU -> push priority, lowest first. A changed SKU scores the
  connector's clock at its first change minus ``CHANGE_AHEAD_MS`` (~35 years): due at once
  whatever the clocks of the replicas, ahead of every retry, oldest change first. A retry
  scores its retry time (epoch ms); 0 is a change that arrived while a push was failing and
  had no change score left. ``pending_since`` sorted set: SKU -> its oldest unconfirmed
  change time, written when a change score is replaced by a retry time or 0 (so the
  oldest-pending age survives retries), removed when the SKU leaves the pending set.
  ``sku_index`` set of SKU codes.

Limits (event time, not wall-clock):

- Redelivery is recognised for the de-dup TTL only; so is a closed order's state (an open
  order's lives until it is closed). A redelivery of an application whose outputs were never
  marked produced is reported as that application within the de-dup TTL of its call.
- Without stocktakes, a warehouse's movement log keeps at least ``movement_retention_s``
  (default: the de-dup TTL) of movements behind the newest one, trimmed in steps of a
  quarter of that, so at most 1.25 times as much. ``mv_trim:<wh>`` records the trim horizon;
  a stocktake counted as of an earlier time cannot be recomputed and is rejected
  (``stocktake_too_old``, no change). One up to ``movement_retention_s`` behind the newest
  movement is always accepted.
- Arrival-order independence holds within those limits, and for distinct events that
  never share an order-line key (two *different* events for the same order, SKU and type:
  the first to arrive wins).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, TypeVar

from redis.exceptions import NoScriptError, RedisError

from connector.contracts.events import (
    OrderEvent,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
    line_key,
)
from connector.errors import ConnectorError, DependencyError, LedgerBehind, LedgerLost
from connector.keys import Keys
from connector.ledger.outcomes import (
    Effect,
    EventOutcome,
    LineOutcome,
    PushBase,
    SkuStock,
    TaobaoView,
)
from connector.ledger.positions import REBUILDING, Marker, PartitionKey, field_of, partition_of
from connector.ledger.stock import movement_delta
from connector.redis_client import AsyncRedis

__all__ = ["Application", "Ledger", "LedgerExists"]

# How far ahead of retries a change is put in the pending set (see the module docstring):
# far more than any retry delay or clock difference between replicas.
CHANGE_AHEAD_MS: Final = 1 << 40
# How much longer than the de-dup TTL a reported mark lives (see mark_reported).
MARK_MARGIN_S: Final = 3600

_APPLY_LUA = resources.files(__package__).joinpath("ledger_apply.lua").read_text("utf-8")
_CONFIRM_LUA = resources.files(__package__).joinpath("ledger_confirm.lua").read_text("utf-8")
_RESCHEDULE_LUA = resources.files(__package__).joinpath("ledger_reschedule.lua").read_text("utf-8")
_TAOBAO_LUA = resources.files(__package__).joinpath("ledger_taobao.lua").read_text("utf-8")
# Positions moved up, never down: KEYS[1] the marker, ARGV field, offset, field, offset...
_RAISE_LUA: Final = """
for i = 1, #ARGV, 2 do
  local stored = tonumber(redis.call('HGET', KEYS[1], ARGV[i])) or -1
  if tonumber(ARGV[i + 1]) > stored then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
"""
# A rebuild claims the marker: KEYS[1] the marker, ARGV[1] the rebuild's id, ARGV[2] the id
# of an earlier rebuild it takes over ("": none). Returns the id the marker then holds.
_CLAIM_LUA: Final = """
local found = redis.call('HGET', KEYS[1], 'id')
if found and found ~= ARGV[2] then
  return found
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1])
return ARGV[1]
"""
_REPLY_WIDTH = 8  # values per line in ledger_apply.lua's reply
_LOST: Final = (
    "the ledger's marker is missing from Redis (wiped, restored from before the ledger "
    "existed, or REDIS_URL names another server): restore the Redis backup or rebuild the "
    "ledger with `taobao-connector ledger rebuild` (README: Redis faults)"
)
# Order lines per ledger_apply.lua call: bounds one call's time inside Redis (a few ms) and
# the values it unpacks; an event is never split (an order has at most 1,000 lines).
CHUNK_LINES: Final = 1000
# Ops whose lines carry a movement log key (ledger_apply.lua's key layout).
_MOVES_STOCK = frozenset({"shipped", "move", "stocktake"})
# An effect's name as the script replies it (bytes, or text when the client decodes).
_EFFECTS: Final[dict[bytes | str, Effect]] = {
    **{e.value.encode(): e for e in Effect},
    **{e.value: e for e in Effect},
}
_T = TypeVar("_T")
_Line = tuple[str, int, str, str, str | None]  # sku, quantity, warehouse, dedupe key, listing


@dataclass(frozen=True, slots=True)
class Application:
    """What one ``apply_viewing`` did: the events' outcomes in input order, where Taobao
    stood for each SKU they name, and the call's id, for ``mark_reported`` once the
    outputs are out."""

    outcomes: list[EventOutcome]
    views: dict[str, TaobaoView]
    attempt: str


@dataclass(frozen=True, slots=True)
class _Call:
    """One script call: its KEYS and its one JSON argument."""

    keys: list[str]
    arg: str


class _ChunkBuilder:
    """The KEYS (each once) and the events of one ledger_apply.lua call (layout there)."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._index: dict[str, int] = {}
        self.key_list = [keys.pending, keys.sku_index, keys.marker]
        self.events: list[list[Any]] = []
        self.lines = 0
        self.skus: dict[str, int] = {}  # -> KEYS index, in the order lines first name them
        self.call = _Call([], "")

    def _key(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.key_list.append(key)
            index = self._index[key] = len(self.key_list)  # Lua counts from 1
        return index

    def add(self, event: StockEvent, op: str, lines: list[_Line]) -> None:
        k = self._keys
        order = self._key(k.order(event.order_id)) if isinstance(event, OrderEvent) else 0
        rows = []
        for sku, quantity, warehouse, dedupe, listing in lines:
            log = self._key(k.movements(sku, warehouse)) if op in _MOVES_STOCK else 0
            # An order line's de-dup value is a field of the order's hash: no key.
            seen = 0 if order else self._key(k.seen(dedupe))
            sku_key = self.skus.get(sku)
            if sku_key is None:  # (a chunk names few SKUs many times: index them once)
                sku_key = self.skus[sku] = self._key(k.sku(sku))
            row: list[Any] = [sku, quantity, warehouse, dedupe, sku_key, seen, log]
            if listing:
                row.append(listing)  # a Taobao-side order: its listing's push base moves
            rows.append(row)
        self.events.append([op, event.occurred_at_ms, event.event_id, order, rows])
        self.lines += len(lines)

    def finish(
        self,
        ttl_s: int,
        retention_ms: int,
        change_score: int,
        attempt: str,
        now_ms: int,
        companions: Sequence[str],
        positions: list[list[Any]],
        write_positions: bool,
        rebuild: str,
    ) -> None:
        k = self._keys
        head = [ttl_s, retention_ms, change_score, attempt, k.reported(""), k.seen(""), now_ms]
        head += [list(companions), positions, int(write_positions), rebuild]
        arg = json.dumps([*head, self.events], ensure_ascii=False, separators=(",", ":"))
        self.call = _Call(self.key_list, arg)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _texts(values: Iterable[Any]) -> list[str]:
    """Redis replies as text, whether or not the client decodes responses."""
    return [_text(v) for v in values]


class Ledger:
    """Applies stock events exactly once and keeps the outbox of SKUs to push."""

    def __init__(
        self,
        redis: AsyncRedis,
        keys: Keys,
        *,
        dedupe_ttl_s: int,
        default_warehouse: str,
        movement_retention_s: int | None = None,
        chunk_lines: int = CHUNK_LINES,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        if not 0 < chunk_lines <= CHUNK_LINES:
            raise ValueError(f"chunk_lines must be 1..{CHUNK_LINES}")
        if dedupe_ttl_s <= 0 or (movement_retention_s is not None and movement_retention_s <= 0):
            raise ValueError("dedupe_ttl_s and movement_retention_s must be positive")
        if not default_warehouse:
            raise ValueError("default_warehouse must not be empty")
        self._redis = redis
        self._keys = keys
        self._ttl_s = dedupe_ttl_s
        self._retention_ms = (movement_retention_s or dedupe_ttl_s) * 1000
        self._default_warehouse = default_warehouse
        self._clock_ms = clock_ms
        self._chunk_lines = chunk_lines
        # The last offset of each input partition this object saw the ledger hold.
        self._known: dict[PartitionKey, int] = {}
        self._apply = redis.register_script(_APPLY_LUA)
        self._confirm = redis.register_script(_CONFIRM_LUA)
        self._reschedule = redis.register_script(_RESCHEDULE_LUA)
        self._taobao = redis.register_script(_TAOBAO_LUA)
        self._raise = redis.register_script(_RAISE_LUA)
        self._claim = redis.register_script(_CLAIM_LUA)
        self._rebuild_id: str | None = None  # set by begin_rebuild: this object rebuilds

    # ------------------------------------------------------------- applying events

    async def apply(self, events: Sequence[StockEvent]) -> list[EventOutcome]:
        """Apply events in order in one pipelined round trip; outcomes in input order.

        The events go in chunks (``CHUNK_LINES`` order lines at most), one atomic script
        call each, all in one pipeline; each event sees the effects of the ones before it.
        On ``DependencyError`` some chunks may have been applied: retry the whole batch.
        Their events come back as duplicates that are ``unreported`` (until the outputs of
        the call that applied them are marked, ``mark_reported``), with the effect and
        figures of that application.
        """
        return (await self.apply_viewing(events)).outcomes

    async def apply_viewing(
        self,
        events: Sequence[StockEvent],
        *,
        companions: Sequence[str] = (),
        positions: Mapping[PartitionKey, int] | None = None,
    ) -> Application:
        """``apply``, with where Taobao stood for every SKU the events name, as the same
        atomic calls read it (so results need no second round trip), and the id of the
        call for ``mark_reported``.

        ``companions``: the ids of earlier calls for the same input batch (slices of it),
        whose outputs will be produced and marked together with this call's. A copy of one
        of their applications is then a plain duplicate, as a copy within one call is;
        without it, it would be reported as the application again. (A call whose reply
        was lost is no companion: its applications must be reported by the retry.)

        ``positions``: the last offset of each input partition among the messages these
        events came from (valid or not: a batch of dead letters moves it too), recorded in
        the call's last chunk. Raises ``LedgerLost`` when the ledger's marker is missing,
        and ``LedgerBehind`` when Redis holds less of a partition than this ledger object
        saw it hold (``know``); either way nothing is written."""
        now_ms = self._clock_ms()
        # This call's id, dated (see ledger_apply.lua's outputs_reported).
        attempt = f"{int(now_ms):x}.{uuid.uuid4().hex[:10]}"
        prepared = [(event, *self._op_and_lines(event)) for event in events]
        marks = [
            [field_of(partition), offset, self._known.get(partition, -1)]
            for partition, offset in (positions or {}).items()
        ]
        # An event without lines has nothing to apply: it is in no call.
        chunks = self._chunks([p for p in prepared if p[2]], now_ms, attempt, companions, marks)
        replies = await self._run([chunk.call for chunk in chunks])
        for partition, offset in (positions or {}).items():
            self._known[partition] = max(offset, self._known.get(partition, -1))
        line_values: list[Any] = []
        views: dict[str, TaobaoView] = {}
        for chunk, reply in zip(chunks, replies, strict=True):
            cut = chunk.lines * _REPLY_WIDTH
            line_values += reply[:cut]
            tail = reply[cut:]
            for i, sku in enumerate(chunk.skus):
                pushed, state, quantity = tail[3 * i : 3 * i + 3]
                views[sku] = TaobaoView(
                    int(pushed), None if state is None else _text(state), quantity
                )
        outcomes = []
        at = 0
        for event, _, lines in prepared:
            outcomes.append(EventOutcome(event.event_id, _lines(lines, line_values, at)))
            at += len(lines) * _REPLY_WIDTH
        return Application(outcomes, views, attempt)

    def _chunks(
        self,
        prepared: Sequence[tuple[StockEvent, str, list[_Line]]],
        now_ms: int,
        attempt: str,
        companions: Sequence[str],
        positions: list[list[Any]],
    ) -> list[_ChunkBuilder]:
        chunks: list[_ChunkBuilder] = []
        for event, op, lines in prepared:
            if not chunks or chunks[-1].lines + len(lines) > self._chunk_lines:
                chunks.append(_ChunkBuilder(self._keys))
            chunks[-1].add(event, op, lines)
        if not chunks and positions:
            chunks.append(_ChunkBuilder(self._keys))  # nothing to apply, positions to record
        change_score = now_ms - CHANGE_AHEAD_MS
        for i, chunk in enumerate(chunks):
            # Every chunk checks the positions; the last records them, so a call cut off
            # between chunks never claims more than it applied.
            last = i == len(chunks) - 1
            chunk.finish(
                self._ttl_s,
                self._retention_ms,
                change_score,
                attempt,
                now_ms,
                companions,
                positions,
                last,
                self._rebuild_id or "",
            )
        return chunks

    def _op_and_lines(self, event: StockEvent) -> tuple[str, list[_Line]]:
        """The script's op and its (sku, quantity, warehouse, dedupe key) per line."""
        if isinstance(event, WarehouseEvent):
            if event.type is WarehouseType.STOCKTAKE:
                return "stocktake", [
                    (event.sku, event.quantity, event.warehouse, event.event_id, None)
                ]
            delta = movement_delta(event)
            return "move", [(event.sku, delta, event.warehouse, event.event_id, None)]
        return event.type.value, [
            (
                line.sku,
                line.quantity,
                line.warehouse or self._default_warehouse,
                line_key(event.order_id, line.sku, event.type),
                line.listing,
            )
            for line in event.lines
        ]

    async def _run(self, calls: list[_Call]) -> list[Any]:
        """EVALSHA every call in one pipeline; load the script and rerun only on NOSCRIPT.

        (redis-py's pipelined Script call would add a SCRIPT EXISTS round trip per batch.)
        """
        replies = await self._pipeline(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # A call that got NOSCRIPT did not run, so running it now applies it once.
            await self._guard(self._redis.script_load(self._apply.script))
            again = await self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise _script_error(reply) from reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        if not calls:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(self._apply.sha, len(call.keys), *call.keys, call.arg)
            result: list[Any] = await self._guard(pipe.execute(raise_on_error=False))
            return result

    @staticmethod
    async def _guard(awaitable: Awaitable[_T]) -> _T:
        try:
            return await awaitable
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the stock ledger: {exc}") from exc

    # ------------------------------------------------------------- reading stock

    async def stock(self, skus: Iterable[str]) -> dict[str, SkuStock]:
        """Current figures of each SKU (zeros for an unknown one), in one round trip.

        Read atomically with the ledger's marker: a quantity read from a wiped ledger would
        be zero and take items off sale, so a missing marker raises ``LedgerLost``."""
        wanted = list(dict.fromkeys(skus))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys.marker, "id")
            for sku in wanted:
                pipe.hgetall(self._keys.sku(sku))
            ledger_id, *rows = await self._guard(pipe.execute())
        if ledger_id is None or _text(ledger_id).startswith(REBUILDING):
            raise LedgerLost(_LOST)
        return {sku: _sku_stock(sku, row) for sku, row in zip(wanted, rows, strict=True)}

    # ------------------------------------------------------------- the marker

    async def marker(self, partitions: Iterable[PartitionKey] = ()) -> Marker:
        """The ledger's marker and the positions it records for ``partitions``."""
        wanted = list(dict.fromkeys(partitions))
        names = [field_of(p) for p in wanted] + [field_of(p, "r") for p in wanted]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self._keys.marker, ["id", *names])
            pipe.exists(self._keys.sku_index)
            (ledger_id, *offsets), has_data = await self._guard(pipe.execute())
        applied, reported = offsets[: len(wanted)], offsets[len(wanted) :]
        return Marker(
            None if ledger_id is None else _text(ledger_id),
            {p: int(o) for p, o in zip(wanted, applied, strict=True) if o is not None},
            {p: int(o) for p, o in zip(wanted, reported, strict=True) if o is not None},
            bool(has_data),
        )

    async def create_marker(self, positions: Mapping[PartitionKey, int] | None = None) -> str:
        """Create the marker unless it exists (another replica may be creating it at the
        same moment) with these positions for the partitions it has none of; its id."""
        new_id = f"{self._clock_ms():x}.{uuid.uuid4().hex[:10]}"
        key = self._keys.marker
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "id", new_id)
            pipe.hsetnx(key, "created_ms", self._clock_ms())
            pipe.hsetnx(key, "layout", 1)
            for partition, offset in (positions or {}).items():
                pipe.hsetnx(key, field_of(partition), offset)
            pipe.hget(key, "id")
            *_, ledger_id = await self._guard(pipe.execute())
        return _text(ledger_id)

    async def begin_rebuild(self, *, take_over: str | None = None) -> str:
        """Mark the ledger as being rebuilt, its positions cleared (connectors wait; this
        object may apply to it); ``take_over``: the id of an earlier rebuild that stopped
        half way, replaced. Raises ``LedgerExists`` if another marker is there. Returns
        the rebuild's id."""
        rebuild_id = f"{REBUILDING}{self._clock_ms():x}.{uuid.uuid4().hex[:10]}"
        claimed = await self._guard(
            self._claim(keys=[self._keys.marker], args=[rebuild_id, take_over or ""])
        )
        if _text(claimed) != rebuild_id:
            raise LedgerExists(f"the ledger is there (marker id {_text(claimed)})")
        self._rebuild_id = rebuild_id
        self._known.clear()
        return rebuild_id

    async def finish_rebuild(self, rebuild_id: str, positions: Mapping[PartitionKey, int]) -> str:
        """Record ``positions`` (never lowering one) and make the ledger ready: connectors
        waiting on ``LEDGER_LOST`` go on. Returns the ledger's new id."""
        ledger_id = f"{self._clock_ms():x}.{uuid.uuid4().hex[:10]}"
        key = self._keys.marker
        stored = await self.marker()
        if stored.ledger_id != rebuild_id:
            raise LedgerExists(f"the marker changed during the rebuild (now {stored.ledger_id})")
        await self.raise_positions(positions)
        # Everything up to there went out when it was first read: its outputs count as
        # produced (a partition without a committed offset resumes after them).
        await self.record_reported(positions)
        fields: list[str | int] = ["id", ledger_id, "created_ms", self._clock_ms(), "layout", 1]
        await self._guard(self._redis.hset(key, items=fields))
        self._rebuild_id = None
        return ledger_id

    async def raise_positions(
        self, positions: Mapping[PartitionKey, int], *, kind: str = "p"
    ) -> None:
        """Move these positions up (never down), atomically per call."""
        if not positions:
            return
        args: list[str | int] = []
        for partition, offset in positions.items():
            args += [field_of(partition, kind), offset]
        await self._guard(self._raise(keys=[self._keys.marker], args=args))

    async def record_reported(self, positions: Mapping[PartitionKey, int]) -> None:
        """The outputs of every message up to these offsets were produced (after a batch's
        acknowledgement): where a partition with no committed offset resumes."""
        await self.raise_positions(positions, kind="r")

    def know(self, positions: Mapping[PartitionKey, int]) -> None:
        """Take these as the positions the ledger holds (read at an assignment or after a
        rewind): a later call that finds less raises ``LedgerBehind``."""
        self._known.update(positions)

    def known(self) -> dict[PartitionKey, int]:
        return dict(self._known)

    async def due(self, now_ms: int, limit: int) -> list[str]:
        """Pending SKUs whose push time has come (score <= now_ms): changed SKUs first,
        oldest change first, then retries whose time has come, earliest first."""
        members = await self._guard(
            self._redis.zrangebyscore(self._keys.pending, "-inf", now_ms, start=0, num=limit)
        )
        return _texts(members)

    async def pending_count(self) -> int:
        return int(await self._guard(self._redis.zcard(self._keys.pending)))

    async def iter_skus(self) -> AsyncIterator[str]:
        """Every SKU the ledger knows (SSCAN: safe on a large index, may repeat one)."""
        try:
            async for member in self._redis.sscan_iter(self._keys.sku_index, count=500):
                yield _text(member)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the stock ledger: {exc}") from exc

    async def forget_push_bases(self) -> int:
        """Drop every listing's push base (``connector.push.bases``), so each listing's
        next push is an absolute write: after Redis came back behind, the bases it holds
        miss the increments sent since, which no replay brings back. How many went."""
        dropped, batch = 0, []
        async for sku in self.iter_skus():
            batch.append(sku)
            if len(batch) >= 500:
                dropped += await self._drop_bases(batch)
                batch = []
        return dropped + (await self._drop_bases(batch) if batch else 0)

    async def _drop_bases(self, skus: list[str]) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for sku in skus:
                pipe.hkeys(self._keys.sku(sku))
            fields = await self._guard(pipe.execute())
        doomed = {
            sku: [f for f in _texts(names) if f[:2] in ("b:", "a:", "i:", "z:")]
            for sku, names in zip(skus, fields, strict=True)
        }
        doomed = {sku: names for sku, names in doomed.items() if names}
        if doomed:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sku, names in doomed.items():
                    pipe.hdel(self._keys.sku(sku), *names)
                await self._guard(pipe.execute())
        return sum(1 for names in doomed.values() for n in names if n.startswith("b:"))

    # ------------------------------------------------------------- the outbox

    async def mark_reported(self, attempt: str) -> None:
        """Record that the outputs (results, alerts) of the apply call ``attempt`` were
        produced, so that a later redelivery of its events is reported as a plain
        duplicate. One write per call, whatever its size. It lives the de-dup TTL and
        ``MARK_MARGIN_S`` more: the script takes a mark older than the TTL as given (it may
        have expired), judging the age by the replicas' clocks, which may differ from
        each other and from Redis's by up to the margin."""
        ttl_s = self._ttl_s + MARK_MARGIN_S
        await self._guard(self._redis.set(self._keys.reported(attempt), 1, ex=ttl_s))

    async def confirm(self, pushed: Mapping[str, int]) -> None:
        """Record that Taobao shows ``version`` for each SKU; a SKU leaves the pending set
        only once that covers its current version (atomic per SKU)."""
        if not pushed:
            return
        k = self._keys
        keys = [k.pending, k.pending_since, *(k.sku(sku) for sku in pushed)]
        args = [value for sku, version in pushed.items() for value in (sku, version)]
        await self._guard(self._confirm(keys=keys, args=args))

    async def reschedule(self, read: Mapping[str, int], until_ms: int) -> None:
        """Retry these SKUs (code -> the version a failed push read) at ``until_ms``.

        A SKU that changed since it was read stays due now, so a failing push never delays
        a newer change; one whose current version Taobao already has is left alone.
        """
        if not read:
            return
        k = self._keys
        keys = [k.pending, k.pending_since, *(k.sku(sku) for sku in read)]
        args: list[str | int] = [until_ms, CHANGE_AHEAD_MS, self._clock_ms()]
        args += [value for sku, version in read.items() for value in (sku, version)]
        await self._guard(self._reschedule(keys=keys, args=args))

    async def force_pending(self, skus: Iterable[str]) -> None:
        """Make these SKUs due now, first, whatever Taobao is recorded to have: after a push
        lost its lease, Taobao may show an older quantity than the ledger says it confirmed
        (a full update of the current figures is harmless)."""
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return
        k = self._keys
        now_ms = self._clock_ms()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(k.pending_since, dict.fromkeys(wanted, now_ms), nx=True)
            pipe.zadd(k.pending, dict.fromkeys(wanted, 0))
            await self._guard(pipe.execute())

    async def record_taobao(self, standing: Mapping[str, tuple[int, str, int | None]]) -> None:
        """Record, per SKU, where its last push left Taobao: code -> (the ledger version the
        push read, its state, the quantity Taobao was told or ``None``). An older picture
        never overwrites a newer one (see ledger_taobao.lua)."""
        if not standing:
            return
        keys = [self._keys.sku(sku) for sku in standing]
        args: list[str | int] = []
        for version, state, quantity in standing.values():
            args += [version, state, "" if quantity is None else quantity]
        await self._guard(self._taobao(keys=keys, args=args))

    async def oldest_pending_ms(self) -> int | None:
        """When the oldest change Taobao has not confirmed was made (epoch ms), if any.

        A change waiting for its first push carries its time in its pending score; one
        whose push failed carries a retry time there, its change time in pending-since."""
        k = self._keys
        changes_below = self._clock_ms() - CHANGE_AHEAD_MS // 2
        async with self._redis.pipeline(transaction=False) as pipe:
            # The lowest change score (0 and retry times are not change times).
            pipe.zrangebyscore(
                k.pending, "(0", f"({changes_below}", start=0, num=1, withscores=True
            )
            pipe.zrange(k.pending_since, 0, 0, withscores=True)
            first, since = await self._guard(pipe.execute())
        times = [int(s) for _, s in since]
        times += [int(s) + CHANGE_AHEAD_MS for _, s in first]
        return min(times) if times else None


class LedgerExists(ConnectorError):
    """A rebuild found a ledger marker: it replaces only a lost ledger."""


def _script_error(reply: Exception) -> Exception:
    """ledger_apply.lua's refusals as our errors; anything else is Redis failing."""
    text = str(reply)
    if text.startswith("LEDGER_LOST"):
        return LedgerLost(_LOST)
    if text.startswith("LEDGER_BEHIND"):
        positions = {}
        for item in text.split()[1:]:
            name, _, offset = item.rpartition("=")
            positions[partition_of(name)] = int(offset)
        return LedgerBehind(positions)
    return DependencyError(f"Redis ledger script failed: {reply}")


def _lines(lines: list[_Line], values: list[Any], at: int) -> tuple[LineOutcome, ...]:
    """One event's lines from ledger_apply.lua's reply, from index ``at``: 8 values per
    line (the effect's name, then integers)."""
    out = []
    for line in lines:
        effect, dup, available, reserved, on_hand, version, oversold, unreported = values[
            at : at + _REPLY_WIDTH
        ]
        at += _REPLY_WIDTH
        out.append(
            LineOutcome(
                line[0],
                _EFFECTS[effect],
                dup == 1,
                available,
                reserved,
                on_hand,
                version,
                oversold == 1,
                unreported == 1,
            )
        )
    return tuple(out)


def _sku_stock(sku: str, row: Mapping[bytes | str, bytes | str]) -> SkuStock:
    fields = {_text(k): _text(v) for k, v in row.items()}
    on_hand = {f[3:]: int(n) for f, n in fields.items() if f.startswith("oh:")}
    reserved = int(fields.get("reserved", 0))
    return SkuStock(
        sku=sku,
        on_hand=on_hand,
        reserved=reserved,
        available=sum(on_hand.values()) - reserved,
        version=int(fields.get("version", 0)),
        pushed=int(fields.get("pushed", 0)),
        taobao_state=fields.get("tb_state"),
        taobao_quantity=int(fields["tb_qty"]) if "tb_qty" in fields else None,
        # A base with an increment in flight (``i:``) is unknown: Taobao may or may not
        # have taken it (connector/push/base_store.py).
        bases={
            f[2:]: PushBase(int(v), int(fields.get("a:" + f[2:], 0)))
            for f, v in fields.items()
            if f.startswith("b:") and "i:" + f[2:] not in fields
        },
        taobao_orders_ms={f[2:]: int(v) for f, v in fields.items() if f.startswith("t:")},
        ambiguous={f[2:]: int(v) for f, v in fields.items() if f.startswith("z:")},
    )
