-- Extend a lease only if we still hold it.
-- KEYS[1] the lease key; ARGV[1] the owner id; ARGV[2] the new time to live in ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
