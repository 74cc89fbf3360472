-- Apply ONE stock event to the ledger: de-duplication, stock arithmetic, per-order line
-- state, movement logs, version and the pending outbox, all in this one atomic call.
-- The executable specification is connector/stock.py; connector/ledger.py documents fields.
--
-- KEYS[1]   pending sorted set (SKU -> push priority: a changed SKU scores its change score,
--           a retry its retry time; lowest first, see connector/ledger.py)
-- KEYS[2]   SKU index set
-- KEYS[3]   order hash (order ops only); lines start at KEYS[4] for order ops, KEYS[3] else
-- then per line: SKU hash, de-dup ("seen") key, and for ops that move on-hand stock
--   (shipped, move, stocktake) the movement log of (SKU, warehouse)
--
-- ARGV[1]   JSON array: [op, dedupe_ttl_s, retention_ms, occurred_at_ms, event_id,
--           change_score, attempt, lines]
--   op            created | cancelled | shipped | refunded | move | stocktake
--   dedupe_ttl_s  TTL of the seen keys, and of the order hash once no line is reserved
--                 (an open order's state lives as long as its reservation)
--   retention_ms  how far (event time) the movement log reaches behind its newest entry
--   event_id      orders a stocktake against another at the same occurred_at
--   change_score  the pending score of a SKU this event changes (ledger.py: due now, ahead
--                 of every retry, oldest change first)
--   attempt       id of this apply call: a seen value carries it (`?<attempt>`) until
--                 ledger_reported.lua says the outputs were produced, so a duplicate from
--                 another attempt whose outputs never went out is reported as applied
--   lines         [[sku, quantity, warehouse, dedupe_key], ...]; quantity is the line
--                 quantity (orders), the signed delta (move) or the count (stocktake)
--   (One JSON argument rather than 5 + 4 per line: packing arguments is the client's cost.)
--
-- Returns ONE string, 8 space-separated values per line (a flat string parses far faster
-- in a pure-Python client than a nested array):
--   effect, duplicate (0/1), available, reserved, on_hand (total), version, oversold (0/1),
--   unreported (0/1: a duplicate of an application whose outputs may never have gone out)
--
-- A script never rolls back, so every read happens before the first write. Calls into
-- Redis dominate the cost, so reads and writes are batched per key where possible.

local op, ttl, retention, at, event_id, change_score, attempt, args =
  unpack(cjson.decode(ARGV[1]))

local is_order = op == 'created' or op == 'cancelled' or op == 'shipped' or op == 'refunded'
local moves_stock = op == 'shipped' or op == 'move' or op == 'stocktake'
local order_key = KEYS[3]
local key_base = is_order and 4 or 3
local keys_per_line = moves_stock and 3 or 2

local function int(x)
  -- tostring() would print large numbers in exponent form.
  return string.format('%d', x)
end

local function num(v)
  return tonumber(v) or 0
end

-- Lua compares strings with strcoll (locale dependent): compare bytes, as Python compares
-- code points, so ties between stocktakes break the same way everywhere.
local function bytes_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- ---------------------------------------------------------------- phase 1: read

local function read_line(i)
  local k = key_base + (i - 1) * keys_per_line
  local sku, qty, wh, dedupe = unpack(args[i])
  local l = {sku_key = KEYS[k], seen_key = KEYS[k + 1], sku = sku, qty = qty, wh = wh,
    dedupe = dedupe}
  if moves_stock then
    l.log_key = KEYS[k + 2]
  end
  l.seen = redis.call('GET', l.seen_key)
  local mark = l.seen and string.find(l.seen, '?', 1, true)
  if mark then
    -- Applied, outputs not known to be produced (`?<attempt>:<figures>`, see write): by
    -- another attempt (a retry after a lost reply, a redelivery after a crash) the
    -- application is reported again, with the figures it had then.
    local rest = string.sub(l.seen, mark + 1)
    local colon = string.find(rest, ':', 1, true)
    l.unreported = string.sub(rest, 1, (colon or 0) - 1) ~= attempt
    l.figures = colon and string.sub(rest, colon) or ''
    l.seen = string.sub(l.seen, 1, mark - 1)
  end
  if l.seen and string.sub(l.seen, -1) == '!' then
    -- The first application oversold: a replay reports it again, so its alert is re-raised.
    l.seen, l.seen_oversold = string.sub(l.seen, 1, -2), true
  end
  local h = redis.call('HMGET', l.sku_key, 'on_hand', 'reserved', 'version',
    'oh:' .. wh, 'st_at:' .. wh, 'st_id:' .. wh, 'mv_trim:' .. wh)
  l.on_hand, l.reserved, l.version, l.wh_on_hand = num(h[1]), num(h[2]), num(h[3]), num(h[4])
  l.known = h[3] ~= false -- every write sets `version`: absent means new to the index
  l.st_at, l.st_id, l.mv_trim = tonumber(h[5]), h[6], tonumber(h[7])
  if op == 'stocktake' then
    l.later = redis.call('ZRANGEBYSCORE', l.log_key, '(' .. int(at), '+inf')
  end
  return l
end

-- One HMGET for every line of the order.
local function read_order_lines(lines)
  local fields = {}
  for _, l in ipairs(lines) do
    fields[#fields + 1] = 'state:' .. l.sku
    fields[#fields + 1] = 'reserved:' .. l.sku
  end
  local o = redis.call('HMGET', order_key, unpack(fields))
  for i, l in ipairs(lines) do
    l.state, l.line_reserved = o[2 * i - 1], num(o[2 * i])
  end
end

-- ---------------------------------------------------------------- decide (no writes)

-- A movement at or before the warehouse's stocktake is already counted in it.
local function superseded(l)
  return l.st_at ~= nil and at <= l.st_at
end

-- Each planner sets on the line: effect (or dup), d_res (reserved delta), d_wh (on-hand
-- delta at the line's warehouse), log (delta to append to the movement log), stocktake,
-- and new_state / new_line_reserved (the order hash).
local planners = {}

function planners.created(l)
  if l.state == 'reserved' then
    l.dup = 'reserved' -- seen key expired while the order hash lived: still a duplicate
  elseif l.state == 'cancelled' then
    l.effect = 'order_already_cancelled'
  elseif l.state == 'shipped' then
    l.effect = 'order_already_shipped'
  else
    l.effect, l.d_res, l.new_state, l.new_line_reserved = 'reserved', l.qty, 'reserved', l.qty
  end
end

function planners.cancelled(l)
  if l.state == 'shipped' then
    l.effect = 'already_shipped'
  elseif l.line_reserved > 0 then
    l.effect, l.d_res = 'released', -l.line_reserved
    l.new_state, l.new_line_reserved = 'cancelled', 0
  else
    -- A tombstone, so that a create arriving later reserves nothing.
    l.effect, l.new_state, l.new_line_reserved = 'nothing_to_release', 'cancelled', 0
  end
end

function planners.shipped(l)
  if l.state == 'shipped' then
    l.dup = 'shipped' -- only this line key's own shipment sets the state
    return
  end
  -- A line ships once (its de-dup key is order|sku|shipped), so shipping closes it and
  -- releases its whole remaining reservation: nothing could ever release the rest, and it
  -- keeps the result independent of whether the create or the shipment arrived first.
  l.d_res = -l.line_reserved
  l.new_state, l.new_line_reserved = 'shipped', 0
  if superseded(l) then
    l.effect = 'superseded_by_stocktake' -- counted already; the release still happens
  else
    l.d_wh, l.log = -l.qty, -l.qty
    l.effect = l.line_reserved > 0 and 'shipped' or 'shipped_without_reservation'
  end
end

function planners.refunded(l)
  l.effect = 'no_stock_change'
end

function planners.move(l)
  if superseded(l) then
    l.effect = 'superseded_by_stocktake'
  else
    l.effect, l.d_wh, l.log = 'on_hand_changed', l.qty, l.qty
  end
end

function planners.stocktake(l)
  if l.st_at ~= nil and (at < l.st_at or (at == l.st_at and not bytes_less(l.st_id, event_id))) then
    l.effect = 'superseded_by_stocktake'
  elseif l.mv_trim ~= nil and at < l.mv_trim then
    -- The log may have dropped movements after `at`: a recount would be wrong.
    l.effect = 'stocktake_too_old'
  else
    local later = 0
    for _, member in ipairs(l.later) do
      later = later + tonumber(string.match(member, '|(-?%d+)$'))
    end
    l.effect, l.d_wh, l.stocktake = 'stocktake_applied', l.qty + later - l.wh_on_hand, true
  end
end

-- ---------------------------------------------------------------- phase 2: write

-- Append to the movement log and return the hash fields to set. Trimming to the retention
-- horizon happens in steps of a quarter of it (not on every write), and `mv_trim:<wh>`
-- records the horizon: a stocktake older than it can no longer be recomputed.
local function append_log(l, fields)
  redis.call('ZADD', l.log_key, at, l.dedupe .. '|' .. int(l.log))
  local horizon = at - retention
  if l.mv_trim == nil or horizon >= l.mv_trim + retention / 4 then
    if l.mv_trim ~= nil then
      redis.call('ZREMRANGEBYSCORE', l.log_key, '-inf', '(' .. int(horizon))
    end
    fields[#fields + 1], fields[#fields + 2] = 'mv_trim:' .. l.wh, int(horizon)
  end
end

-- The new figures are computed from what phase 1 read, so each SKU hash gets one HSET.
local function write_sku(l, pending)
  local d_wh, d_res = l.d_wh or 0, l.d_res or 0
  -- A first count of a SKU states its stock even when it is 0: Taobao must hear it once.
  -- (A refund or an early cancel of an unknown SKU states nothing and pushes nothing.)
  if d_wh ~= 0 or d_res ~= 0 or (l.stocktake and not l.known) then
    l.version = l.version + 1
    pending[#pending + 1], pending[#pending + 2] = int(change_score), l.sku
  elseif not (l.log or l.stocktake) then
    return
  end
  local fields = {'version', int(l.version), 'reserved', int(l.reserved + d_res)}
  if d_wh ~= 0 or l.stocktake then
    fields[5], fields[6] = 'on_hand', int(l.on_hand + d_wh)
    fields[7], fields[8] = 'oh:' .. l.wh, int(l.wh_on_hand + d_wh)
  end
  if l.log then
    append_log(l, fields)
  end
  if l.stocktake then
    redis.call('ZREMRANGEBYSCORE', l.log_key, '-inf', int(at))
    fields[#fields + 1], fields[#fields + 2] = 'st_at:' .. l.wh, int(at)
    fields[#fields + 1], fields[#fields + 2] = 'st_id:' .. l.wh, event_id
  end
  redis.call('HSET', l.sku_key, unpack(fields))
  if not l.known then
    redis.call('SADD', KEYS[2], l.sku)
  end
end

-- This effect reduced availability and left it below zero.
local function oversold_by(l)
  local before = l.on_hand - l.reserved
  local available = before + (l.d_wh or 0) - (l.d_res or 0)
  return available < before and available < 0
end

-- The figures right after this line's effect, as the outcome reports them.
local function figures_after(l)
  local on_hand, reserved = l.on_hand + (l.d_wh or 0), l.reserved + (l.d_res or 0)
  return on_hand - reserved, reserved, on_hand, l.version
end

-- `effect[!]?<attempt>:<available>:<reserved>:<on_hand>:<version>` until
-- ledger_reported.lua cuts it at `?` once the outputs are produced.
local function unreported_value(effect, oversold, figures)
  return effect .. (oversold and '!' or '') .. '?' .. attempt .. figures
end

local function write(lines)
  local pending, order_fields, open_delta = {}, {}, 0
  for _, l in ipairs(lines) do
    if l.unreported then
      -- Now reported by this attempt: a later copy in this batch is a plain duplicate.
      redis.call('SET', l.seen_key, unreported_value(l.seen, l.seen_oversold, l.figures),
        'KEEPTTL')
    elseif not (l.seen or l.dup) then
      write_sku(l, pending)
      local available, reserved, on_hand, version = figures_after(l)
      local figures = ':' .. table.concat(
        {int(available), int(reserved), int(on_hand), int(version)}, ':')
      redis.call('SET', l.seen_key, unreported_value(l.effect, oversold_by(l), figures),
        'EX', ttl)
      if l.new_state then
        order_fields[#order_fields + 1] = 'state:' .. l.sku
        order_fields[#order_fields + 1] = l.new_state
        order_fields[#order_fields + 1] = 'reserved:' .. l.sku
        order_fields[#order_fields + 1] = int(l.new_line_reserved)
        open_delta = open_delta + (l.new_state == 'reserved' and 1 or 0)
          - (l.state == 'reserved' and 1 or 0)
      end
    end
  end
  if #pending > 0 then
    -- LT: a SKU already waiting keeps its earlier score, so changes go out oldest first
    -- (with equal scores the order would be by name, and a late-sorting code could wait
    -- forever), and a SKU waiting for a retry is brought forward by a new change.
    redis.call('ZADD', KEYS[1], 'LT', unpack(pending))
  end
  if #order_fields > 0 then
    redis.call('HSET', order_key, unpack(order_fields))
    -- `open` counts the lines still reserved. The order's state guards its reservation
    -- (a cancel or shipment releases what it says), so it must not expire while any line
    -- holds stock, however long the order stays open (presales ship weeks later).
    if redis.call('HINCRBY', order_key, 'open', open_delta) > 0 then
      redis.call('PERSIST', order_key)
    else
      redis.call('EXPIRE', order_key, ttl)
    end
  end
end

local function outcome(l)
  local available, reserved, on_hand, version = figures_after(l)
  if l.unreported and l.figures ~= '' then
    -- Reported as the application it was: with the figures right after it.
    local a, r, o, v = string.match(l.figures, '^:(-?%d+):(-?%d+):(-?%d+):(%d+)$')
    if v then
      available, reserved, on_hand, version = tonumber(a), tonumber(r), tonumber(o), tonumber(v)
    end
  end
  local dup = (l.seen or l.dup) and 1 or 0
  local oversold = ((dup == 1 and l.seen_oversold) or (dup == 0 and oversold_by(l))) and 1 or 0
  return table.concat(
    {l.seen or l.dup or l.effect, dup, int(available), int(reserved), int(on_hand),
      int(version), oversold, l.unreported and 1 or 0}, ' ')
end

-- ---------------------------------------------------------------- main

if not planners[op] then
  return redis.error_reply('ledger: unknown op ' .. tostring(op))
end
if #KEYS ~= key_base - 1 + #args * keys_per_line then
  return redis.error_reply('ledger: ' .. #KEYS .. ' keys do not fit ' .. #args .. ' lines')
end

local lines = {}
for i = 1, #args do
  lines[i] = read_line(i)
end
if is_order then
  read_order_lines(lines)
end
for _, l in ipairs(lines) do
  if not l.seen then
    planners[op](l)
  end
end

write(lines)
local out = {}
for i, l in ipairs(lines) do
  out[i] = outcome(l)
end
return table.concat(out, ' ')
