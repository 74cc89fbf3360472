-- Record the versions Taobao now shows, and take SKUs off the pending set once confirmed.
--
-- KEYS[1]       pending sorted set
-- KEYS[2]       pending-since sorted set (SKU -> when its oldest unconfirmed change was made)
-- KEYS[2 + i]   SKU hash of the i-th SKU
-- ARGV[2i - 1]  SKU code of the i-th SKU
-- ARGV[2i]      the ledger version Taobao now shows for it
--
-- Per SKU: pushed := max(pushed, confirmed); the SKU leaves the pending set (and the
-- pending-since set) only if pushed has caught up with the current version, so a change
-- made while the push was in flight keeps it pending. Its pending score still dates the
-- older change (ledger_apply.lua's ZADD LT keeps the lower score), so the oldest-pending age
-- is an upper bound, never an understatement. Returns how many SKUs left the pending set.

local removed = 0
for i = 3, #KEYS do
  local sku = ARGV[2 * (i - 2) - 1]
  local confirmed = tonumber(ARGV[2 * (i - 2)])
  local h = redis.call('HMGET', KEYS[i], 'version', 'pushed')
  local version, pushed = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  if confirmed > pushed and h[1] then
    -- Only an existing SKU gets the field: a confirm must not invent a SKU.
    pushed = confirmed
    redis.call('HSET', KEYS[i], 'pushed', string.format('%d', pushed))
  end
  if math.max(pushed, confirmed) >= version then
    removed = removed + redis.call('ZREM', KEYS[1], sku)
    redis.call('ZREM', KEYS[2], sku)
  end
end
return removed
