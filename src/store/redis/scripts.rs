//! The Lua scripts that make Redis's invalidation log and fill check atomic on a single
//! Redis. The member forms they read are [`crate::store::Invalidation::log_members`].

/// Bumps the epoch and logs what was invalidated under it (ARGV: members, then how many
/// log entries to keep).
pub(super) const INVALIDATE_SCRIPT: &str = r"
local keep = tonumber(ARGV[#ARGV])
local e = redis.call('INCR', KEYS[1])
for i = 1, #ARGV - 1 do redis.call('ZADD', KEYS[2], e, e .. ':' .. ARGV[i]) end
local n = redis.call('ZCARD', KEYS[2])
if n > keep then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - keep - 1) end
return e
";

/// Writes an entry and indexes its tags only if nothing it carries was invalidated since
/// the fill's epoch. KEYS: entry, epoch, log, then the tag sets. ARGV: epoch, log size,
/// entry bytes, ttl (ms), expiry (ms, the tag score), now (ms), member, url, then the tag
/// ids in hex (in the order of their KEYS). Returns 1 when written.
pub(super) const PUT_SCRIPT: &str = r"
local epoch = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current > epoch + tonumber(ARGV[2]) then return 0 end
if current > epoch then
  local url = ARGV[8]
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. epoch, '+inf')) do
    local kind, rest = string.match(m, '^%d+:(%a):?(.*)$')
    if kind == 'a' then return 0 end
    if kind == 'p' and string.sub(url, 1, #rest) == rest then return 0 end
    if kind == 't' then
      for i = 9, #ARGV do if ARGV[i] == rest then return 0 end end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
for i = 4, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[6])
  redis.call('PEXPIRE', KEYS[i], ARGV[4], 'NX')
  redis.call('PEXPIRE', KEYS[i], ARGV[4], 'GT')
end
return 1
";

pub(super) const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
";
