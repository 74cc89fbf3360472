-- Apply a CHUNK of stock events to the ledger, in order, in one atomic call: de-duplication,
-- stock arithmetic, per-order line state, movement logs, versions and the pending outbox.
-- The executable specification is connector/ledger/stock.py; connector/ledger/ledger.py
-- documents the fields. Each event sees the effects of the events before it in the chunk.
--
-- KEYS[1]   pending sorted set (SKU -> push priority: a changed SKU scores its change score,
--           a retry its retry time; lowest first, see connector/ledger/ledger.py)
-- KEYS[2]   SKU index set
-- KEYS[3]   the ledger's marker hash: `id` (present from the ledger's first start) and
--           `p:<topic>:<partition>`, the last input offset applied of each partition
--           (connector/ledger/positions.py)
-- KEYS[4..] every other key the chunk touches, once each: SKU hashes, order hashes, de-dup
--           ("seen") keys of warehouse events, movement logs of (SKU, warehouse); events
--           refer to them by index. An order line's de-dup value is a field of its order's
--           hash (`seen:<op>:<sku>`): read and written with the line's state, no key of its
--           own.
--
-- ARGV[1]   JSON array: [dedupe_ttl_s, retention_ms, change_score, attempt, reported, seen,
--           now_ms, companions, positions, write_positions, rebuild, events]
--   dedupe_ttl_s  TTL of the seen keys, and of an order hash once no line is reserved
--                 (an open order's state lives as long as its reservation)
--   retention_ms  how far (event time) a movement log reaches behind its newest entry
--   change_score  the pending score of a SKU the chunk changes (ledger.py: due now, ahead
--                 of every retry, oldest change first)
--   attempt       id of this apply call, `<hex ms>.<random>`: a seen value carries it
--                 (`?<attempt>`), and a duplicate from another attempt is reported as
--                 applied unless that attempt's outputs are marked produced (the key
--                 `<reported><attempt>`) or the mark may have expired (see outputs_reported)
--   reported      name prefix of those marker keys (Ledger.mark_reported writes them; they
--                 share the chunk's hash tag, so they live in the slot of its KEYS)
--   seen          name prefix of seen keys: an order hash written before order lines'
--                 de-dup values moved into it has them there (same hash tag)
--   now_ms        the caller's clock
--   companions    ids of earlier calls for the same input batch: their outputs go out and
--                 are marked with this call's, so a copy of one of their applications is a
--                 plain duplicate, as a copy within this call is
--   positions     [[field, last_offset, known], ...] per input partition of the call's
--                 messages: `known` is the position this process last saw the ledger hold
--                 (-1: none); a stored position below it means Redis lost writes
--   write_positions  1 in a call's last chunk: record the positions (never lowering one:
--                 another replica may have applied further before a rebalance)
--   rebuild       the id of the rebuild this call is part of, or "": a marker whose id
--                 is another `rebuilding:` one is no ledger to apply to
--   events        [[op, occurred_at_ms, event_id, order_key (0: none), lines], ...]
--     op          created | cancelled | shipped | refunded | move | stocktake
--     lines       [[sku, quantity, warehouse, dedupe_key, sku_key, seen_key, log_key
--                 (, listing)], ...]; listing: a Taobao-side order line's listing
--                 (`<num_iid>:<sku_id>`), whose push base it moves (move_base);
--                 *_key are indexes into KEYS (seen_key 0 for order lines, log_key 0 for
--                 ops that move no on-hand stock); quantity is the line quantity (orders), the signed delta (move)
--                 or the count (stocktake)
--   (One JSON argument, keys by index: packing arguments is the client's cost.)
--
-- Fails, writing nothing, with `LEDGER_LOST` when the marker is missing (the ledger was wiped
-- or this is not its server) and `LEDGER_BEHIND <field>=<stored> ...` when a position is
-- below what the caller saw (ledger.py raises LedgerLost / LedgerBehind).
--
-- Returns ONE flat array (numbers as integers: Redis converts them in C, where Lua's own
-- number-to-string conversion costs about a microsecond each): 8 values per line, lines in
-- event order:
--   effect, duplicate (0/1), available, reserved, on_hand (total), version, oversold (0/1),
--   unreported (0/1: a duplicate of an application whose outputs may never have gone out)
-- then 3 per SKU, in the order the lines first name them, of where Taobao stands as the
-- projection recorded it: pushed (the version Taobao confirmed), tb_state, tb_qty (nil: none)
--
-- Each SKU hash, order hash and seen key is read at most once and written at most once per
-- chunk (a cache in between); a mark key (and, for an order hash older than the current
-- layout, a legacy seen key: see load_order_fields) is read at most once; a movement log's writes are queued in order, and a stocktake
-- reads the log together with what the chunk queued for it. Every read happens before the
-- first write (a script never rolls back: a failure leaves the chunk unapplied, whole), and
-- everything is validated first. The caller bounds a chunk's size (ledger.py), so a call
-- stays short.

local ttl, retention, change_score, attempt, reported_prefix, seen_prefix, now, companions,
  positions, write_positions, rebuild, events = unpack(cjson.decode(ARGV[1]))
local same_batch = {[attempt] = true}
for _, id in ipairs(companions) do
  same_batch[id] = true
end

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

local ORDER_OPS = {created = true, cancelled = true, shipped = true, refunded = true}
local STOCK_OPS = {shipped = true, move = true, stocktake = true}

-- ---------------------------------------------------------------- the marker (no writes)

-- No marker, no ledger: whatever this server holds is not the ledger the offsets count on.
local marker_fields = {'id'}
for i, p in ipairs(positions) do
  marker_fields[i + 1] = p[1]
end
local marker = redis.call('HMGET', KEYS[3], unpack(marker_fields))
if not marker[1] then
  return redis.error_reply('LEDGER_LOST the ledger marker is missing')
end
if string.sub(marker[1], 1, 11) == 'rebuilding:' and marker[1] ~= rebuild then
  return redis.error_reply('LEDGER_LOST a rebuild is writing the ledger')
end
local stored, behind = {}, {}
for i, p in ipairs(positions) do
  stored[i] = tonumber(marker[i + 1]) or -1
  if stored[i] < p[3] then
    behind[#behind + 1] = p[1] .. '=' .. string.format('%d', stored[i])
  end
end
if #behind > 0 then
  return redis.error_reply('LEDGER_BEHIND ' .. table.concat(behind, ' '))
end

-- ---------------------------------------------------------------- validate (no writes)

for n, e in ipairs(events) do
  local op, order_key, lines = e[1], e[4], e[5]
  if not (ORDER_OPS[op] or op == 'move' or op == 'stocktake') then
    return redis.error_reply('ledger: event ' .. n .. ': unknown op ' .. tostring(op))
  end
  if ORDER_OPS[op] and not KEYS[order_key] then
    return redis.error_reply('ledger: event ' .. n .. ': no order key')
  end
  for _, line in ipairs(lines) do
    if not KEYS[line[5]] or not (ORDER_OPS[op] or KEYS[line[6]])
        or (STOCK_OPS[op] and not KEYS[line[7]]) then
      return redis.error_reply('ledger: event ' .. n .. ': a line names a missing key')
    end
  end
end

-- ---------------------------------------------------------------- the chunk's cache

local skus = {}     -- KEYS index -> SKU state (read once, written once)
local orders = {}   -- KEYS index -> order state
local seens = {}    -- KEYS index -> {value = stored value or false, write = new value, ex}
local logs = {}     -- KEYS index -> {ops = queued writes in order, adds = {member = score}}
local pending, new_skus = {}, {}
local touched = {} -- SKU states in the order of first touch (for the reply's tail)

local function log_state(k)
  local g = logs[k]
  if not g then
    g = {ops = {}, adds = {}}
    logs[k] = g
  end
  return g
end

-- Field names are built once per warehouse and per order line: in Redis' Lua a string
-- concatenation costs about as much as a redis.call.
local wh_fields = {}
local function fields_of(wh)
  local f = wh_fields[wh]
  if not f then
    f = {oh = 'oh:' .. wh, st_at = 'st_at:' .. wh, st_id = 'st_id:' .. wh,
      mv_trim = 'mv_trim:' .. wh}
    wh_fields[wh] = f
  end
  return f
end

local function warehouse(h, i)
  return {on_hand = num(h[i]), st_at = tonumber(h[i + 1]), st_id = h[i + 2] or nil,
    mv_trim = tonumber(h[i + 3])}
end

-- A SKU and one of its warehouses: one HMGET on first touch, another only for a second
-- warehouse of the same SKU.
local function sku_state(k, sku, wh)
  local s = skus[k]
  if not s then
    local f = fields_of(wh)
    local h = redis.call('HMGET', KEYS[k], 'on_hand', 'reserved', 'version',
      f.oh, f.st_at, f.st_id, f.mv_trim, 'pushed', 'tb_state', 'tb_qty')
    -- dirty: field -> new value; numbers are formatted once, when the chunk writes.
    s = {sku = sku, on_hand = num(h[1]), reserved = num(h[2]), version = num(h[3]),
      known = h[3] ~= false, wh = {[wh] = warehouse(h, 4)}, dirty = {},
      pushed = num(h[8]), tb_state = h[9], tb_qty = tonumber(h[10]) or false, k = k,
      bases = {}}
    skus[k] = s
    touched[#touched + 1] = s
  elseif not s.wh[wh] then
    local f = fields_of(wh)
    local h = redis.call('HMGET', KEYS[k], f.oh, f.st_at, f.st_id, f.mv_trim)
    s.wh[wh] = warehouse(h, 1)
  end
  return s, s.wh[wh]
end

local function order_state(k)
  local o = orders[k]
  if not o then
    o = {fields = {}, dirty = {}, open = nil, existed = false, legacy = false, open_delta = 0,
      written = false}
    orders[k] = o
  end
  return o
end

-- One HMGET per event for the order-hash fields the cache does not hold yet (and, the
-- first time, the order's count of open lines and its layout). A hash created without
-- `layout` dates from when order lines' de-dup values had keys of their own: for its lines
-- without a de-dup field, the old key is read instead (such an order expires within the
-- de-dup TTL of closing; every hash created since carries `layout`).
local function load_order_fields(o, k, names)
  local want = {}
  if o.open == nil then
    want[1], want[2] = 'open', 'layout'
  end
  for _, name in ipairs(names) do
    if o.fields[name] == nil then
      want[#want + 1] = name
    end
  end
  if #want > 0 then
    local got = redis.call('HMGET', KEYS[k], unpack(want))
    for i = 1, #want do
      o.fields[want[i]] = got[i]
    end
    if o.open == nil then
      -- Every write of an order hash sets `open`: without it, there is no hash yet.
      o.open, o.existed = num(got[1]), got[1] ~= false
      o.legacy = o.existed and got[2] == false
    end
  end
end

-- Whether an earlier attempt's outputs were marked produced (Ledger.mark_reported), once
-- per attempt per chunk.
local reported = {}
local function outputs_reported(by)
  local r = reported[by]
  if r == nil then
    -- A mark lives the de-dup TTL from just after its call, and an open order keeps its
    -- lines' seen values longer: past that age, a missing mark may have expired rather
    -- than never been written, so the application counts as reported.
    local made = tonumber(string.match(by, '^(%x+)%.') or '', 16)
    r = (made ~= nil and now - made >= ttl * 1000)
      or redis.call('EXISTS', reported_prefix .. by) == 1
    reported[by] = r
  end
  return r
end

local function seen_value(k)
  local v = seens[k]
  if not v then
    v = {value = redis.call('GET', KEYS[k])}
    seens[k] = v
  end
  return v
end

-- ---------------------------------------------------------------- read one line

local function read_line(line, seen)
  local sku, qty, wh, dedupe, sku_k, seen_k, log_k, listing = unpack(line)
  local s, w = sku_state(sku_k, sku, wh)
  -- Every field a line ever gets is named here: a table built with its fields is sized
  -- once (fields added one by one grow it several times), and under 32 fields it takes
  -- half the memory of one just over (Lua sizes by powers of two; this runs per line).
  -- What the planners read of the warehouse (stocktake, horizon, on hand) they read from
  -- `w`: an event's lines name distinct SKUs, so nothing changes it before they decide.
  -- on_hand, reserved and version are the SKU's figures as the event found them.
  local l = {sku = sku, qty = qty, wh = wh, dedupe = dedupe, seen_k = seen_k, log_k = log_k,
    seen = seen or nil, unreported = false, figures = '', seen_oversold = false, s = s,
    w = w, on_hand = s.on_hand, reserved = s.reserved, version = s.version, effect = nil,
    dup = nil, d_res = nil, d_wh = nil, log = nil, stocktake = nil, new_state = nil,
    new_line_reserved = nil, state = nil, line_reserved = 0, state_f = nil,
    reserved_f = nil, seen_f = nil, listing = listing}
  local mark = l.seen and string.find(l.seen, '?', 1, true)
  if mark then
    -- Applied by `?<attempt>`, with the figures right after it. By another attempt (a
    -- retry after a lost reply, a redelivery after a crash) whose outputs were never
    -- marked produced, the application is reported again, with the figures it had then.
    local rest = string.sub(l.seen, mark + 1)
    local colon = string.find(rest, ':', 1, true)
    local by = string.sub(rest, 1, (colon or 0) - 1)
    l.unreported = not same_batch[by] and not outputs_reported(by)
    l.figures = colon and string.sub(rest, colon) or ''
    l.seen = string.sub(l.seen, 1, mark - 1)
  end
  if l.seen and string.sub(l.seen, -1) == '!' then
    -- The first application oversold: a replay reports it again, so its alert is re-raised.
    l.seen, l.seen_oversold = string.sub(l.seen, 1, -2), true
  end
  return l
end

-- ---------------------------------------------------------------- decide (no writes)

local at, event_id, op_now -- of the event being applied

-- A movement at or before the warehouse's stocktake is already counted in it.
local function superseded(l)
  return l.w.st_at ~= nil and at <= l.w.st_at
end

-- Each planner sets on the line: effect (or dup), d_res (reserved delta), d_wh (on-hand
-- delta at the line's warehouse), log (delta to append to the movement log), stocktake,
-- and new_state / new_line_reserved (the order hash).
local planners = {}

function planners.created(l)
  if l.state == 'reserved' then
    -- No de-dup value but reserved: applied by a ledger that kept order lines' de-dup
    -- values in keys of their own (since expired). Still a duplicate.
    l.dup = 'reserved'
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
  local w = l.w
  if w.st_at ~= nil and (at < w.st_at or (at == w.st_at and not bytes_less(w.st_id, event_id))) then
    l.effect = 'superseded_by_stocktake'
  elseif w.mv_trim ~= nil and at < w.mv_trim then
    -- The log may have dropped movements after `at`: a recount would be wrong.
    l.effect = 'stocktake_too_old'
  else
    -- Movements after the count: in the log, and queued by this chunk. (What the chunk
    -- removes from a log is never after a count it applies: trims stay below mv_trim and
    -- stocktake cuts below their own time, both at most `at`.)
    local later, counted = 0, {}
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[l.log_k], '(' .. int(at), '+inf')) do
      counted[member] = true
      later = later + tonumber(string.match(member, '|(-?%d+)$'))
    end
    for member, score in pairs(log_state(l.log_k).adds) do
      if score > at and not counted[member] then
        later = later + tonumber(string.match(member, '|(-?%d+)$'))
      end
    end
    l.effect, l.d_wh, l.stocktake = 'stocktake_applied', l.qty + later - w.on_hand, true
  end
end

-- ---------------------------------------------------------------- apply to the cache

-- Append to the movement log. Trimming to the retention horizon happens in steps of a
-- quarter of it (not on every write), and `mv_trim:<wh>` records the horizon: a stocktake
-- older than it can no longer be recomputed.
local function append_log(l)
  local g = log_state(l.log_k)
  local member = string.format('%s|%d', l.dedupe, l.log)
  g.adds[member] = at
  g.ops[#g.ops + 1] = {'ZADD', int(at), member}
  local horizon = at - retention
  local trim = l.w.mv_trim
  if trim == nil or horizon >= trim + retention / 4 then
    if trim ~= nil then
      g.ops[#g.ops + 1] = {'ZREMRANGEBYSCORE', '-inf', '(' .. int(horizon)}
    end
    l.w.mv_trim = horizon
    l.s.dirty[fields_of(l.wh).mv_trim] = horizon
  end
end

-- A Taobao-side order on a listing the projection pushes by increments: Taobao already
-- took (created) or gave back (cancelled) that listing's units itself, so its push base
-- (`b:<listing>`) moves by the same, and the next increment leaves them out
-- (connector/push/bases.py). A shipment moves nothing on Taobao, whatever the ledger does
-- with it. Only a base that exists (the projection writes it), and only for an order
-- placed after the listing's last absolute write (`a:<listing>`), which erased what the
-- orders before it did; in the same (whole) second a deduction counts as before and a
-- give-back as after, so a tie leaves Taobao showing less, never more. Read once per
-- chunk, written with the SKU's other fields.
-- Every Taobao-side order on a listing also records when it reached the ledger
-- (`t:<listing>`, the caller's clock: the bridge may lag), and one placed in the very
-- second of the last absolute write marks the base ambiguous (`z:<listing>`, since when):
-- the projection writes that listing absolutely again once no Taobao order has come for a
-- while (connector/push/projection.py, re-anchoring).
local function move_base(l, delta)
  local s = l.s
  local b = s.bases[l.listing]
  if b == nil then
    local h = redis.call('HMGET', KEYS[s.k], 'b:' .. l.listing, 'a:' .. l.listing,
      't:' .. l.listing, 'z:' .. l.listing)
    b = {base = tonumber(h[1]), at = tonumber(h[2]) or 0, last = tonumber(h[3]) or 0,
      ambiguous = h[4] ~= false}
    s.bases[l.listing] = b
  end
  if now > b.last then
    b.last = now
    s.dirty['t:' .. l.listing] = now
  end
  if not b.base then
    return
  end
  if at == b.at and not b.ambiguous then
    b.ambiguous = true
    s.dirty['z:' .. l.listing] = now
  end
  if at > b.at or (delta > 0 and at == b.at) then
    b.base = b.base + delta
    s.dirty['b:' .. l.listing] = b.base
  end
end

local function apply_sku(l)
  local s, w = l.s, l.w
  local d_wh, d_res = l.d_wh or 0, l.d_res or 0
  if l.listing and d_res ~= 0 and (op_now == 'created' or op_now == 'cancelled') then
    move_base(l, -d_res)
  end
  -- A first count of a SKU states its stock even when it is 0: Taobao must hear it once.
  -- (A refund or an early cancel of an unknown SKU states nothing and pushes nothing.)
  if d_wh ~= 0 or d_res ~= 0 or (l.stocktake and not s.known) then
    s.version = s.version + 1
    pending[s.sku] = true
  elseif not (l.log or l.stocktake) then
    return
  end
  l.version = s.version
  s.reserved = s.reserved + d_res
  s.dirty.version, s.dirty.reserved = s.version, s.reserved
  if d_wh ~= 0 or l.stocktake then
    s.on_hand, w.on_hand = s.on_hand + d_wh, w.on_hand + d_wh
    s.dirty.on_hand, s.dirty[fields_of(l.wh).oh] = s.on_hand, w.on_hand
  end
  if l.log then
    append_log(l)
  end
  if l.stocktake then
    local g = log_state(l.log_k)
    g.ops[#g.ops + 1] = {'ZREMRANGEBYSCORE', '-inf', int(at)}
    for member, score in pairs(g.adds) do
      if score <= at then
        g.adds[member] = nil
      end
    end
    w.st_at, w.st_id = at, event_id
    local f = fields_of(l.wh)
    s.dirty[f.st_at], s.dirty[f.st_id] = at, event_id
  end
  if not s.known then
    s.known = true
    new_skus[#new_skus + 1] = s.sku
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

-- `effect[!]?<attempt>:<available>:<reserved>:<on_hand>:<version>`: the mark key of
-- `<attempt>` says whether the outputs were produced (see outputs_reported).
local function unreported_value(effect, oversold, figures)
  return effect .. (oversold and '!' or '') .. '?' .. attempt .. figures
end

-- The line's de-dup value: a field of its order's hash, or a warehouse event's own key
-- (`fresh`: a new application, which starts the key's TTL; a re-stamp keeps it).
local function write_seen(l, o, value, fresh)
  if o then
    o.fields[l.seen_f], o.dirty[l.seen_f], o.written = value, value, true
  else
    local seen = seens[l.seen_k]
    seen.value, seen.write, seen.ex = value, value, fresh or seen.ex or false
  end
end

local function apply_line(l, o)
  if l.unreported then
    -- Now reported by this attempt: a later copy in this chunk is a plain duplicate.
    write_seen(l, o, unreported_value(l.seen, l.seen_oversold, l.figures), false)
  elseif not (l.seen or l.dup) then
    apply_sku(l)
    local figures = string.format(':%d:%d:%d:%d', figures_after(l))
    write_seen(l, o, unreported_value(l.effect, oversold_by(l), figures), true)
    if l.new_state then
      o.fields[l.state_f], o.fields[l.reserved_f] = l.new_state, l.new_line_reserved
      o.dirty[l.state_f], o.dirty[l.reserved_f] = l.new_state, l.new_line_reserved
      o.written = true
      o.open_delta = o.open_delta + (l.new_state == 'reserved' and 1 or 0)
        - (l.state == 'reserved' and 1 or 0)
    end
  end
end

local out, n_out = {}, 0

local function outcome(l)
  local available, reserved, on_hand, version = figures_after(l)
  if l.unreported and l.figures ~= '' then
    -- Reported as the application it was: with the figures right after it.
    local a, r, oh, v = string.match(l.figures, '^:(-?%d+):(-?%d+):(-?%d+):(%d+)$')
    if v then
      available, reserved, on_hand, version = tonumber(a), tonumber(r), tonumber(oh), tonumber(v)
    end
  end
  local dup = (l.seen or l.dup) and true or false
  local oversold = (dup and l.seen_oversold) or (not dup and oversold_by(l))
  local n = n_out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = l.seen or l.dup or l.effect, dup and 1 or 0,
    available, reserved
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = on_hand, version, oversold and 1 or 0,
    l.unreported and 1 or 0
  n_out = n + 8
end

-- ---------------------------------------------------------------- one event

local function apply_event(e)
  local op, order_k, args = e[1], e[4], e[5]
  at, event_id, op_now = e[2], e[3], op
  local lines, o = {}, nil
  if ORDER_OPS[op] then
    -- Per line: its state, its reservation and its de-dup value, in one HMGET.
    local names = {}
    for i, line in ipairs(args) do
      local sku = line[1]
      names[3 * i - 2], names[3 * i - 1] = 'state:' .. sku, 'reserved:' .. sku
      names[3 * i] = 'seen:' .. op .. ':' .. sku
    end
    o = order_state(order_k)
    load_order_fields(o, order_k, names)
    for i, line in ipairs(args) do
      local seen = o.fields[names[3 * i]]
      if not seen and o.legacy then
        seen = redis.call('GET', seen_prefix .. line[4])
        o.fields[names[3 * i]] = seen -- read once per chunk (written only through `dirty`)
      end
      local l = read_line(line, seen)
      l.state_f, l.reserved_f, l.seen_f = names[3 * i - 2], names[3 * i - 1], names[3 * i]
      l.state = o.fields[l.state_f] or nil
      l.line_reserved = num(o.fields[l.reserved_f])
      lines[i] = l
    end
  else
    for i, line in ipairs(args) do
      lines[i] = read_line(line, seen_value(line[6]).value)
    end
  end
  for _, l in ipairs(lines) do
    if not l.seen then
      planners[op](l)
    end
  end
  -- Decided on what the event saw, then written: an event's lines never see each other.
  for _, l in ipairs(lines) do
    apply_line(l, o)
  end
  for _, l in ipairs(lines) do
    outcome(l)
  end
end

-- ---------------------------------------------------------------- main

for _, e in ipairs(events) do
  apply_event(e)
end

-- Write what the cache holds, once per key, and the queued log writes in their order.
for k, g in pairs(logs) do
  for _, op in ipairs(g.ops) do
    redis.call(op[1], KEYS[k], op[2], op[3])
  end
end
for k, s in pairs(skus) do
  local fields = {}
  for field, value in pairs(s.dirty) do
    fields[#fields + 1], fields[#fields + 2] = field, type(value) == 'number' and int(value) or value
  end
  if #fields > 0 then
    redis.call('HSET', KEYS[k], unpack(fields))
  end
end
if #new_skus > 0 then
  redis.call('SADD', KEYS[2], unpack(new_skus))
end
local marks = {}
for sku in pairs(pending) do
  marks[#marks + 1], marks[#marks + 2] = int(change_score), sku
end
if #marks > 0 then
  -- LT: a SKU already waiting keeps its earlier score, so changes go out oldest first
  -- (with equal scores the order would be by name, and a late-sorting code could wait
  -- forever), and a SKU waiting for a retry is brought forward by a new change.
  redis.call('ZADD', KEYS[1], 'LT', unpack(marks))
end
for k, v in pairs(seens) do
  if v.write then
    if v.ex then
      redis.call('SET', KEYS[k], v.write, 'EX', ttl)
    else
      redis.call('SET', KEYS[k], v.write, 'KEEPTTL')
    end
  end
end
for k, o in pairs(orders) do
  if o.written then
    local fields = {}
    for field, value in pairs(o.dirty) do
      fields[#fields + 1], fields[#fields + 2] = field, value
    end
    -- `open` counts the lines still reserved. The order's state guards its reservation
    -- (a cancel or shipment releases what it says), so it must not expire while any line
    -- holds stock, however long the order stays open (presales ship weeks later).
    local open = o.open + o.open_delta
    fields[#fields + 1], fields[#fields + 2] = 'open', int(open)
    if not o.existed then
      fields[#fields + 1], fields[#fields + 2] = 'layout', '2'
    end
    redis.call('HSET', KEYS[k], unpack(fields))
    if open > 0 then
      -- Only a closed order's hash has a TTL (a new one has none, an open one lost it).
      if o.open == 0 and o.existed then
        redis.call('PERSIST', KEYS[k])
      end
    else
      redis.call('EXPIRE', KEYS[k], ttl)
    end
  end
end
if write_positions == 1 then
  local moved = {}
  for i, p in ipairs(positions) do
    if p[2] > stored[i] then
      moved[#moved + 1], moved[#moved + 2] = p[1], int(p[2])
    end
  end
  if #moved > 0 then
    redis.call('HSET', KEYS[3], unpack(moved))
  end
end
for _, s in ipairs(touched) do
  out[n_out + 1], out[n_out + 2], out[n_out + 3] = s.pushed, s.tb_state, s.tb_qty
  n_out = n_out + 3
end
return out
