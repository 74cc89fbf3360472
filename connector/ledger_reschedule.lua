-- Put pending SKUs back for a later push, unless they changed since they were read.
--
-- KEYS[1]       pending sorted set
-- KEYS[1 + i]   SKU hash of the i-th SKU
-- ARGV[1]       when to push them (epoch ms)
-- ARGV[2i]      SKU code of the i-th SKU
-- ARGV[2i + 1]  the ledger version the failed push had read
--
-- Per SKU: if a newer change arrived meanwhile (version moved on) it stays due now; if
-- Taobao already confirmed the current version nothing is re-added; otherwise the SKU is
-- (re)added with the later time. A plain ZADD, so a SKU whose entry another push's
-- confirm removed is still retried. Returns how many SKUs were rescheduled.

local due = ARGV[1]
local count = 0
for i = 2, #KEYS do
  local sku = ARGV[2 * (i - 1)]
  local read = tonumber(ARGV[2 * (i - 1) + 1])
  local h = redis.call('HMGET', KEYS[i], 'version', 'pushed')
  local version, pushed = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  if h[1] and pushed < version then
    if version == read then
      redis.call('ZADD', KEYS[1], due, sku)
      count = count + 1
    else
      redis.call('ZADD', KEYS[1], 0, sku)
    end
  end
end
return count
