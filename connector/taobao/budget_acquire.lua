-- Reserve one call from the app's shared call budget (GCRA, one bucket per key).
--
-- KEYS[1]      the ban key (present while the platform bans the app: code 7)
-- KEYS[2]      the budget's epoch key (no TTL): set at the first reservation ever
-- KEYS[3..n]   one GCRA key per budget (the app's, then optional per-method ones)
-- ARGV[1]      max_wait_ms: do not reserve if the caller would have to wait longer
-- ARGV[2]      resume_ms: 0 from a caller that never called before; otherwise how far
--              ahead a reservation may reach. A missing epoch then means the budget's
--              state was lost under running replicas (a wipe, a failover to an empty
--              server): the calls they had reserved are unknown, so none is granted for
--              that long (plus a burst's span).
-- ARGV[2k+1]   interval_ms of budget k (1000 / qps), k = 1 for KEYS[3]
-- ARGV[2k+2]   burst of budget k (calls allowed back to back)
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
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], now)
  local resume = tonumber(ARGV[2])
  if resume > 0 then
    -- A lost bucket may have reached now + resume + its burst's span: start it there,
    -- in Redis, so it holds for every replica whatever this call returns.
    for i = 3, #KEYS do
      local span = tonumber(ARGV[2 * (i - 2) + 1]) * tonumber(ARGV[2 * (i - 2) + 2])
      redis.call('SET', KEYS[i], now + resume + span, 'PX', math.ceil(resume + 2 * span))
    end
  end
end
local worst = 0
local new_tats = {}
for i = 3, #KEYS do
  local interval = tonumber(ARGV[2 * (i - 2) + 1])
  local burst = tonumber(ARGV[2 * (i - 2) + 2])
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
for i = 3, #KEYS do
  local new_tat, horizon = new_tats[i][1], new_tats[i][2]
  redis.call('SET', KEYS[i], new_tat, 'PX', math.ceil(new_tat - now + horizon))
end
return {0, worst}
