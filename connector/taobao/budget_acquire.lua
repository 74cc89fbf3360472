-- Reserve one call from the app's shared call budget (GCRA, one bucket per key).
--
-- KEYS[1]      the ban key (present while the platform bans the app: code 7)
-- KEYS[2..n]   one GCRA key per budget (the app's, then optional per-method ones)
-- ARGV[1]      max_wait_ms: do not reserve if the caller would have to wait longer
-- ARGV[2k]     interval_ms of budget k (1000 / qps)
-- ARGV[2k+1]   burst of budget k (calls allowed back to back)
--
-- Returns {status, wait_ms}:
--   {0, w}  reserved; the caller sleeps w ms, then calls
--   {1, w}  banned for w more ms; nothing reserved
--   {2, w}  the budget needs w ms, more than max_wait_ms; nothing reserved
--
-- Redis' own clock is used so that every replica agrees on "now".
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ban_ms = redis.call('PTTL', KEYS[1])
if ban_ms > 0 then
  return {1, ban_ms}
end

local max_wait = tonumber(ARGV[1])
local worst = 0
local new_tats = {}
for i = 2, #KEYS do
  local interval = tonumber(ARGV[2 * (i - 1)])
  local burst = tonumber(ARGV[2 * (i - 1) + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - burst * interval - now
  if wait > worst then worst = wait end
  new_tats[i] = {new_tat, interval * burst}
end

if worst > max_wait then
  return {2, worst}
end
for i = 2, #KEYS do
  local new_tat, horizon = new_tats[i][1], new_tats[i][2]
  redis.call('SET', KEYS[i], new_tat, 'PX', math.ceil(new_tat - now + horizon))
end
return {0, worst}
