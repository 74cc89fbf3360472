-- Mark the outputs (results, alerts) of applied events as produced.
--
-- KEYS      the events' de-dup ("seen") keys
--
-- ledger_apply.lua writes a seen value as `effect[!]?<attempt>:<figures>`: the part from `?`
-- says the application's outputs are not known to be produced yet. Once the broker acknowledged
-- them, this strips it (keeping the TTL), so a later redelivery is a plain duplicate. A key
-- without the mark, or gone, is left alone. Returns how many keys were marked.

local count = 0
for _, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value then
    local mark = string.find(value, '?', 1, true)
    if mark then
      redis.call('SET', key, string.sub(value, 1, mark - 1), 'KEEPTTL')
      count = count + 1
    end
  end
end
return count
