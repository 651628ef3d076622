//! The Lua scripts offergate runs in Redis: each decision is one atomic
//! script, loaded once and called by its SHA (`redis::Script` reloads it on
//! `NOSCRIPT`, after a Redis restart).

/// Claims an idempotency key. KEYS: answer, lock. ARGV: fingerprint (hex),
/// lock value (fingerprint and owner), lock TTL in ms.
/// Returns `{1, answer}` stored, `{0}` lead (the lock is now ours, or was
/// already: the same claim sent again), `{2}` the same request is in flight
/// elsewhere, `{3}` another request holds the key.
pub const CLAIM: &str = r#"
local stored = redis.call('GET', KEYS[1])
if stored then return {1, stored} end
local lock = redis.call('GET', KEYS[2])
if lock then
  if lock == ARGV[2] then return {0} end
  if string.sub(lock, 1, #ARGV[1]) == ARGV[1] then return {2} end
  return {3}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {0}
"#;

/// Ends a lead. KEYS: answer, lock. ARGV: our lock value, the answer to keep
/// (empty: none), its TTL in ms, the channel replicas waiting for it listen
/// on. The answer is kept unless one already is; the lock is deleted only
/// if it is still ours (compare-and-delete); the waiters are told (a
/// message, whatever became of the key: they ask again). Returns the answer
/// now stored (ours, or the one that was there), or 0.
pub const FINISH: &str = r#"
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
-- An ACL without PUBLISH (an older one) costs the notice, not the finish.
redis.pcall('PUBLISH', ARGV[4], '1')
return redis.call('GET', KEYS[1]) or 0
"#;

/// One GCRA decision on Redis's own clock (`TIME`, so replicas' clocks do not
/// matter), and with a third key a second one after it: a caller's bucket,
/// then the partner's quota for the call's first try, in one round trip.
/// KEYS: bucket, the partner's pause, [the quota]. ARGV: emission interval
/// and burst tolerance in microseconds, [the same for the quota]. Returns
/// `{pause_ms, wait_us, quota_wait_us}`: a running pause spends nothing;
/// `wait_us > 0` means no permit until then (and the quota is not asked);
/// `quota_wait_us` is -1 when not asked, 0 for the quota's permit, taken.
pub const LIMIT: &str = r#"
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {pause, 0, -1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function gcra(key, emission, tolerance)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  if now < tat - tolerance then return tat - tolerance - now end
  local next_tat = tat + emission
  redis.call('SET', key, next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1)
  return 0
end
local wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait > 0 or #KEYS < 3 then return {0, wait, -1} end
return {0, 0, gcra(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]))}
"#;

/// A thread's offers. KEYS: the thread's sorted set of offers (members
/// `r:<id>` for a slot whose call is under way, `l:<link>` for an offer
/// shown; scores: Redis's clock, ms), its conversation hash. ARGV: the
/// window in ms, the cap (0: none), a slot member, the mode, a link member.
/// `reserve`: 1 if a slot was free (now taken), 0 at the cap. `release`:
/// the slot given back. `keep`: the slot becomes the offer with the link
/// (one offer per link), the hash's last activity moves. `unsent`: the
/// offer with the link removed, the offers left; -1 if there was none.
pub const THREAD: &str = r#"
local mode = ARGV[4]
if mode == 'release' then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if mode == 'keep' then
  local at = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if at then
    redis.call('ZREM', KEYS[1], ARGV[3])
    if not redis.call('ZSCORE', KEYS[1], ARGV[5]) then
      redis.call('ZADD', KEYS[1], at, ARGV[5])
    end
    local la = redis.call('HGET', KEYS[2], 'la')
    if not la or tonumber(la) < now then redis.call('HSET', KEYS[2], 'la', now) end
  end
  return 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
if mode == 'unsent' then
  if redis.call('ZREM', KEYS[1], ARGV[5]) == 0 then return -1 end
  local left = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(m, 1, 2) == 'l:' then left = left + 1 end
  end
  return left
end
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// A thread's conversation. KEYS: its hash (`li` last inbound, `la` last
/// activity, `oo` opted out), its sorted set of offers. ARGV: the mode, a
/// value, the retention in ms, the window in ms, an opt-out's retention.
/// `message` (value: the message's time) moves the times forward; `known`
/// changes nothing; `opt` (value: 1 or 0) sets the opt-out. Returns
/// `{li, la, oo, {member, score, ...}}` as they were before, with the
/// offers in the window (`''` for a time never set).
pub const CONVERSATION: &str = r#"
local mode = ARGV[1]
local li = redis.call('HGET', KEYS[1], 'li')
local la = redis.call('HGET', KEYS[1], 'la')
local oo = redis.call('HGET', KEYS[1], 'oo') or '0'
if mode == 'opt' then
  redis.call('HSET', KEYS[1], 'oo', ARGV[2])
  oo = ARGV[2]
end
if mode == 'message' then
  local at = tonumber(ARGV[2])
  if not li or tonumber(li) < at then redis.call('HSET', KEYS[1], 'li', ARGV[2]) end
  if not la or tonumber(la) < at then redis.call('HSET', KEYS[1], 'la', ARGV[2]) end
end
if mode ~= 'known' then
  if oo == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[5])
  else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
local offers = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
return {li or '', la or '', oo, offers}
"#;

/// Sets a partner pause of ARGV[1] ms unless a longer one runs. KEYS: pause.
pub const PAUSE: &str = r#"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"#;
