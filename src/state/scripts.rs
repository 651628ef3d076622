//! The Lua scripts offergate runs in Redis: each decision is one atomic
//! script, loaded once and called by its SHA (`redis::Script` reloads it on
//! `NOSCRIPT`, after a Redis restart).

/// The claim of an idempotency key, as a Lua function both [`CLAIM`] and
/// [`ADMIT`] start with: `claim(answer, lock, fingerprint, lock value, lock
/// TTL ms)` returns `{1, answer}` stored, `{0}` lead (the lock is now ours,
/// or was already: the same claim sent again), `{2}` the same request is in
/// flight elsewhere, `{3}` another request holds the key.
macro_rules! claim_fn {
    () => {
        r#"
local function claim(answer, lock_key, fp, value, ttl)
  local stored = redis.call('GET', answer)
  if stored then return {1, stored} end
  local lock = redis.call('GET', lock_key)
  if lock then
    if lock == value then return {0} end
    if string.sub(lock, 1, #fp) == fp then return {2} end
    return {3}
  end
  redis.call('SET', lock_key, value, 'PX', ttl)
  return {0}
end
"#
    };
}

/// One or two GCRA decisions on Redis's own clock (`TIME`, so replicas'
/// clocks do not matter), as a Lua function [`LIMIT`] and [`ADMIT`] share:
/// `limit(bucket, pause, quota or nil, emission us, tolerance us, [the same
/// for the quota])` returns `{pause_ms, wait_us, quota_wait_us}`: a running
/// pause spends nothing; `wait_us > 0` means no permit until then (and the
/// quota is not asked); `quota_wait_us` is -1 when not asked, 0 for the
/// quota's permit, taken.
macro_rules! limit_fn {
    () => {
        r#"
local function limit(bucket, pause_key, quota, e, t, qe, qt)
  local pause = redis.call('PTTL', pause_key)
  if pause > 0 then return {pause, 0, -1} end
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local function gcra(key, emission, tolerance)
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    if now < tat - tolerance then return tat - tolerance - now end
    local next_tat = tat + emission
    redis.call('SET', key, next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1)
    return 0
  end
  local wait = gcra(bucket, tonumber(e), tonumber(t))
  if wait > 0 or not quota then return {0, wait, -1} end
  return {0, 0, gcra(quota, tonumber(qe), tonumber(qt))}
end
"#
    };
}

/// A thread's slot taken for a call, as a Lua function [`THREAD`] and
/// [`ADMIT`] share: `reserve(offers, conversation, window ms, cap, slot
/// member)` returns 1 if a slot was free (now taken), 0 at the cap (0: no
/// cap), 2 if the thread opted out (nothing taken).
macro_rules! reserve_fn {
    () => {
        r#"
local function reserve(offers, conversation, window, cap, slot)
  if redis.call('HGET', conversation, 'oo') == '1' then return 2 end
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', offers, '-inf', now - tonumber(window))
  cap = tonumber(cap)
  if cap > 0 and redis.call('ZCARD', offers) >= cap then return 0 end
  redis.call('ZADD', offers, now, slot)
  redis.call('PEXPIRE', offers, window)
  return 1
end
"#
    };
}

/// Claims an idempotency key (`claim` above). KEYS: answer, lock. ARGV:
/// fingerprint (hex), lock value (fingerprint and owner), lock TTL in ms.
pub const CLAIM: &str = concat!(
    claim_fn!(),
    "return claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])\n"
);

/// A forwarded call's admission in one round trip: the claim, and once it
/// leads, the thread's slot, then (a slot taken, or none asked) the
/// caller's bucket, the partner's pause and the first try's quota (given
/// only while the circuit is closed). What each layer would ask in turn, in
/// the order the layers ask it; a part not reached spends nothing. KEYS:
/// answer, lock, [offers, conversation], [bucket, pause, [quota]]. ARGV:
/// fingerprint, lock value, lock TTL ms;
/// '1' if the slot is asked, window ms, cap, slot member; '1' if the
/// limits are asked, emission and tolerance us for the caller, then for the
/// quota. Returns the claim's reply when it does not lead; else `{0, slot,
/// pause_ms, wait_us, quota_wait_us}` (slot: -1 not asked, 0 at the cap, 1
/// taken, 2 opted out; the limit's three -2 when not asked).
pub const ADMIT: &str = concat!(
    claim_fn!(),
    reserve_fn!(),
    limit_fn!(),
    r#"
local c = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if c[1] ~= 0 then return c end
local slot = -1
local k = 3
if ARGV[4] == '1' then
  slot = reserve(KEYS[3], KEYS[4], ARGV[5], ARGV[6], ARGV[7])
  k = 5
  if slot ~= 1 then return {0, slot, -2, -2, -2} end
end
if ARGV[8] ~= '1' then return {0, slot, -2, -2, -2} end
local l = limit(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return {0, slot, l[1], l[2], l[3]}
"#
);

/// An offer shown, as a Lua function [`THREAD`] and [`FINISH`] share:
/// `keep(offers, conversation, slot, link)` turns the call's slot into the
/// offer with the link (one offer per link) and moves the conversation's
/// last activity. Repeatable: a second run finds no slot.
macro_rules! keep_fn {
    () => {
        r#"
local function keep(offers, conversation, slot, link)
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local at = redis.call('ZSCORE', offers, slot)
  if at then
    redis.call('ZREM', offers, slot)
    if not redis.call('ZSCORE', offers, link) then redis.call('ZADD', offers, at, link) end
    local la = redis.call('HGET', conversation, 'la')
    if not la or tonumber(la) < now then redis.call('HSET', conversation, 'la', now) end
  end
  return 1
end
"#
    };
}

/// Ends a lead. KEYS: answer, lock, [a thread's offers, its conversation].
/// ARGV: our lock value, the answer to keep (empty: none), its TTL in ms,
/// the channel replicas waiting for it listen on, [the call's slot, the
/// offer's link]. The answer is kept unless one already is; the lock is
/// deleted only if it is still ours (compare-and-delete); with a thread,
/// its slot becomes the offer shown (`keep`, in the same round trip); the
/// waiters are told (a message, whatever became of the key: they ask
/// again). Returns the answer now stored (ours, or the one that was
/// there), or 0.
pub const FINISH: &str = concat!(
    keep_fn!(),
    r#"
if KEYS[3] then keep(KEYS[3], KEYS[4], ARGV[5], ARGV[6]) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
-- An ACL without PUBLISH (an older one) costs the notice, not the finish.
redis.pcall('PUBLISH', ARGV[4], '1')
return redis.call('GET', KEYS[1]) or 0
"#
);

/// The limits (`limit` above), and with a third key the partner's quota
/// after the caller's bucket, in one round trip. KEYS: bucket, the
/// partner's pause, [the quota]. ARGV: emission interval and burst
/// tolerance in microseconds, [the same for the quota].
pub const LIMIT: &str = concat!(
    limit_fn!(),
    "return limit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"
);

/// A thread's offers. KEYS: the thread's sorted set of offers (members
/// `r:<id>` for a slot whose call is under way, `l:<link>` for an offer
/// shown; scores: Redis's clock, ms), its conversation hash. ARGV: the
/// window in ms, the cap (0: none), a slot member, the mode, a link member.
/// `reserve`: 1 if a slot was free (now taken), 0 at the cap, 2 opted out. `release`:
/// the slot given back. `keep`: the slot becomes the offer with the link
/// (one offer per link), the hash's last activity moves. `unsent`: the
/// offer with the link removed, the offers left; -1 if there was none.
pub const THREAD: &str = concat!(
    reserve_fn!(),
    keep_fn!(),
    r#"
local mode = ARGV[4]
if mode == 'release' then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 1
end
if mode == 'keep' then return keep(KEYS[1], KEYS[2], ARGV[3], ARGV[5]) end
if mode ~= 'unsent' then return reserve(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
if redis.call('ZREM', KEYS[1], ARGV[5]) == 0 then return -1 end
local left = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, 2) == 'l:' then left = left + 1 end
end
return left
"#
);

/// A thread's conversation. KEYS: its hash (`li` last inbound, `la` last
/// activity, `oo` opted out), its sorted set of offers. ARGV: the mode, a
/// value, the retention in ms, the window in ms. An opted-out thread's hash
/// has no expiry, so no `volatile-*` eviction policy can take it.
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
  if oo == '1' then redis.call('PERSIST', KEYS[1])
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
