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

/// One round trip for an upstream's fleet-wide limits: its back-off, its daily budget
/// (units, `INCRBY`), its rate (GCRA: the theoretical arrival time in KEYS[1]).
/// KEYS: tat, today's budget counter, back-off. ARGV: now (µs), the rate's emission
/// interval (µs, 0: none), its burst tolerance (µs), cost, the budget (0: none), ms to the
/// next UTC midnight. Returns {status, wait, remaining}: status 0 granted, 1 rate (µs to
/// wait), 2 budget (ms to its reset), 3 backing off (ms left); remaining -1 without a
/// budget.
pub(super) const BUDGET_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[3])
if left > 0 then return {3, left, -1} end
local interval, tol = tonumber(ARGV[2]), tonumber(ARGV[3])
local cost, limit, reset = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local spent = 0
if limit > 0 then
  spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent + cost > limit then return {2, reset, limit - spent} end
end
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  if now < tat - tol then
    local rest = -1
    if limit > 0 then rest = limit - spent end
    return {1, tat - tol - now, rest}
  end
  local next_tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.floor((next_tat - now + tol) / 1000) + 1000)
end
if limit > 0 then
  spent = redis.call('INCRBY', KEYS[2], cost)
  redis.call('PEXPIRE', KEYS[2], reset + 60000)
  return {0, 0, limit - spent}
end
return {0, 0, -1}
";
