-- Record increments about to be sent, or take them back: KEYS[i] a SKU hash, ARGV[1] the
-- mode, ARGV[2i] the listing, ARGV[2i+1] the increment.
--   begin   the base moves by the increment now (a base that is gone stays gone), and
--           `i:<listing>` marks it in flight: a push that finds the mark cannot know
--           whether Taobao took it, so it writes absolutely (connector/push/bases.py)
--   undo    Taobao refused it (nothing was applied): the base moves back, the mark goes
for i, key in ipairs(KEYS) do
  local listing, delta = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  local base = 'b:' .. listing
  if ARGV[1] == 'undo' then
    delta = -delta
    redis.call('HDEL', key, 'i:' .. listing)
  else
    redis.call('HSET', key, 'i:' .. listing, ARGV[2 * i + 1])
  end
  if redis.call('HEXISTS', key, base) == 1 then
    redis.call('HINCRBY', key, base, delta)
  end
end
return 0
