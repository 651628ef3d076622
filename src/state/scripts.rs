//! The Lua scripts offergate runs in Redis: each decision is one atomic
//! script, loaded once and called by its SHA (`redis::Script` reloads it on
//! `NOSCRIPT`, after a Redis restart).

/// Claims an idempotency key. KEYS: answer, lock. ARGV: fingerprint (hex),
/// lock value (fingerprint and owner), lock TTL in ms.
/// Returns `{1, answer}` stored, `{0}` lead (the lock is now ours), `{2}` the
/// same request is in flight elsewhere, `{3}` another request holds the key.
pub const CLAIM: &str = r#"
local stored = redis.call('GET', KEYS[1])
if stored then return {1, stored} end
local lock = redis.call('GET', KEYS[2])
if lock then
  if string.sub(lock, 1, #ARGV[1]) == ARGV[1] then return {2} end
  return {3}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {0}
"#;

/// Ends a lead. KEYS: answer, lock. ARGV: our lock value, the answer to keep
/// (empty: none), its TTL in ms. The answer is kept unless one already is;
/// the lock is deleted only if it is still ours (compare-and-delete).
pub const FINISH: &str = r#"
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"#;

/// One GCRA decision on Redis's own clock (`TIME`, so replicas' clocks do not
/// matter). KEYS: bucket, the partner's pause. ARGV: emission interval and
/// burst tolerance, in microseconds. Returns `{pause_ms, wait_us}`: a running
/// pause spends nothing; `wait_us > 0` means no permit until then.
pub const LIMIT: &str = r#"
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {pause, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then return {0, tat - tolerance - now} end
local next_tat = tat + emission
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {0, 0}
"#;

/// The per-thread cap. KEYS: the thread's sorted set of offers. ARGV: the
/// window in ms, the cap, a member naming this reservation, `reserve` or
/// `release`. Reserve: 1 if a slot was free (and is now taken), 0 at the cap.
pub const THREAD: &str = r#"
if ARGV[4] == 'release' then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Sets a partner pause of ARGV[1] ms unless a longer one runs. KEYS: pause.
pub const PAUSE: &str = r#"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"#;
