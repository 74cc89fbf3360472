-- Record where Taobao stands for SKUs after a push: the state and the quantity it was told.
--
-- KEYS[i]        SKU hash of the i-th SKU
-- ARGV[3i - 2]   the ledger version the push read for it
-- ARGV[3i - 1]   the push's state (SYNCED, HAND_DELISTED, PENDING, FAILED, UNMAPPED)
-- ARGV[3i]       the quantity Taobao was told, or '' when none was sent
--
-- Per SKU: written only if no newer push has been recorded (tb_ver <= version), so a slow
-- replica never paints an older picture over a newer one; never on a SKU the ledger does
-- not know. Results read these fields to say where Taobao stood. Returns how many were set.

local count = 0
for i = 1, #KEYS do
  local version = tonumber(ARGV[3 * i - 2])
  local h = redis.call('HMGET', KEYS[i], 'version', 'tb_ver')
  if h[1] and (tonumber(h[2]) or -1) <= version then
    local fields = {'tb_ver', ARGV[3 * i - 2], 'tb_state', ARGV[3 * i - 1]}
    if ARGV[3 * i] ~= '' then
      fields[5], fields[6] = 'tb_qty', ARGV[3 * i]
    end
    redis.call('HSET', KEYS[i], unpack(fields))
    count = count + 1
  end
end
return count
