-- Put pending SKUs back for a later push, unless they changed since they were read.
--
-- KEYS[1]       pending sorted set
-- KEYS[2]       pending-since sorted set (SKU -> when its oldest unconfirmed change was made)
-- KEYS[2 + i]   SKU hash of the i-th SKU
-- ARGV[1]       when to push them (epoch ms)
-- ARGV[2]       the change-score offset (ledger.py CHANGE_AHEAD_MS): a score more than half
--               of it before ARGV[1] is a change made at score + offset (a retry scores a
--               time near now, 0 a change whose time was lost)
-- ARGV[3]       now (epoch ms): the change time recorded when the SKU's own was lost
-- ARGV[2i + 2]  SKU code of the i-th SKU
-- ARGV[2i + 3]  the ledger version the failed push had read
--
-- Per SKU: if a newer change arrived meanwhile (version moved on) it stays due now (at its
-- change score if it has one, so it keeps its place, oldest change first; else at 0); if
-- Taobao already confirmed the current version nothing is re-added; otherwise the SKU is
-- (re)added with the later time. A plain ZADD, so a SKU whose entry another push's
-- confirm removed is still retried. A retry score no longer says when the change was made,
-- so that time is kept in the pending-since set first (NX: the oldest one stays).
-- Returns how many SKUs were rescheduled.

local due = ARGV[1]
local offset = tonumber(ARGV[2])
local now = ARGV[3]
local changes_below = tonumber(due) - offset / 2
local count = 0
for i = 3, #KEYS do
  local sku = ARGV[2 * (i - 2) + 2]
  local read = tonumber(ARGV[2 * (i - 2) + 3])
  local h = redis.call('HMGET', KEYS[i], 'version', 'pushed')
  local version, pushed = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  if h[1] and pushed < version then
    local score = tonumber(redis.call('ZSCORE', KEYS[1], sku))
    local is_change = score and score > 0 and score < changes_below
    if version == read then
      if is_change then
        redis.call('ZADD', KEYS[2], 'NX', string.format('%d', score + offset), sku)
      end
      redis.call('ZADD', KEYS[1], due, sku)
      count = count + 1
    elseif not is_change then
      redis.call('ZADD', KEYS[2], 'NX', now, sku)
      redis.call('ZADD', KEYS[1], 0, sku)
    end
  end
end
return count
