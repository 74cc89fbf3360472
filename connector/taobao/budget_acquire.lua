-- Reserve one call from the app's shared call budget (GCRA, one bucket per key) and, with a
-- daily quota, count it against the China-time day.
--
-- KEYS[1]      the app's ban key (present while the platform bans the app: code 7)
-- KEYS[2]      this API's ban key (present while the platform bans this API only:
--              accesscontrol.limited-by-api-access-count, …-by-app-api-access-count)
-- KEYS[3]      the budget's epoch key (no TTL): set at the first reservation ever
-- KEYS[4]      today's call count (China-time day), when there is a daily quota
-- KEYS[5..n]   one GCRA key per budget (the app's, then optional per-method ones)
-- ARGV[1]      max_wait_ms: do not reserve if the caller would have to wait longer
-- ARGV[2]      resume_ms: 0 from a caller that never called before; otherwise how far
--              ahead a reservation may reach. A missing epoch then means the budget's
--              state was lost under running replicas (a wipe, a failover to an empty
--              server): the calls they had reserved are unknown, so none is granted for
--              that long (plus a burst's span).
-- ARGV[3]      the count at which this call is refused (0: no daily quota): the quota,
--              or less for a read that yields to stock updates when the quota runs low
-- ARGV[4]      ms until the China-time day ends (the count's wait and its expiry)
-- ARGV[5]      the day's count as this replica last saw it (restores a lost count)
-- ARGV[2k+4]   interval_ms of budget k (1000 / qps), k = 1 for KEYS[5]
-- ARGV[2k+5]   burst of budget k (calls allowed back to back)
--
-- Returns {status, wait_ms, calls counted today (with this one, if reserved)}:
--   {0, w}  reserved (and counted); the caller sleeps w ms, then calls
--   {1, w}  banned for w more ms; nothing reserved
--   {2, w}  the budget needs w ms, more than max_wait_ms; nothing reserved
--   {3, w}  today's quota is spent (for this call): w ms to the day's end
--   {4, w}  this API (only) is banned for w more ms; nothing reserved
--
-- Redis' own clock is used so that every replica agrees on "now".
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ban_ms = redis.call('PTTL', KEYS[1])
if ban_ms > 0 then
  return {1, ban_ms, 0}
end
ban_ms = redis.call('PTTL', KEYS[2])
if ban_ms > 0 then
  return {4, ban_ms, 0}
end

local limit, day_left = tonumber(ARGV[3]), tonumber(ARGV[4])
if limit > 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  -- The budget's state was lost (see resume_ms): the day's count with it. It is at least
  -- what this replica last saw of it today.
  local seen = tonumber(ARGV[5])
  if seen > tonumber(redis.call('GET', KEYS[4]) or 0) then
    redis.call('SET', KEYS[4], seen, 'PX', day_left + 86400000)
  end
end
local used = tonumber(redis.call('GET', KEYS[4]) or 0)
if limit > 0 and used >= limit then
  return {3, day_left, used}
end

local max_wait = tonumber(ARGV[1])
local first = 5
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], now)
  local resume = tonumber(ARGV[2])
  if resume > 0 then
    -- A lost bucket may have reached now + resume + its burst's span: start it there,
    -- in Redis, so it holds for every replica whatever this call returns.
    for i = first, #KEYS do
      local k = i - first + 1
      local span = tonumber(ARGV[2 * k + 4]) * tonumber(ARGV[2 * k + 5])
      redis.call('SET', KEYS[i], now + resume + span, 'PX', math.ceil(resume + 2 * span))
    end
  end
end
local worst = 0
local new_tats = {}
for i = first, #KEYS do
  local k = i - first + 1
  local interval = tonumber(ARGV[2 * k + 4])
  local burst = tonumber(ARGV[2 * k + 5])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - burst * interval - now
  if wait > worst then worst = wait end
  new_tats[i] = {new_tat, interval * burst}
end

if worst > max_wait then
  return {2, worst, used}
end
for i = first, #KEYS do
  local new_tat, horizon = new_tats[i][1], new_tats[i][2]
  redis.call('SET', KEYS[i], new_tat, 'PX', math.ceil(new_tat - now + horizon))
end
if limit > 0 then
  -- Kept a day past its own: replicas whose clocks straddle midnight still agree.
  used = redis.call('INCR', KEYS[4])
  if used == 1 then
    redis.call('PEXPIRE', KEYS[4], day_left + 86400000)
  end
end
return {0, worst, used}
