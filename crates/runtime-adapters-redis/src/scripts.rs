//! The Lua scripts that change a queue. Each runs atomically in Redis, touches only keys
//! passed in `KEYS` (all with the queue's hash tag, so they run on Redis Cluster) and
//! costs O(batch · log n): nothing scans a whole list, set or hash.
//!
//! Every script gets the same twelve keys (see [`crate::keys::Keys`]) and shares the
//! prelude below. Times come from the Redis server's clock (`TIME`), so processes with
//! skewed clocks agree on lease deadlines.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// Helpers shared by every script.
const PRELUDE: &str = r#"
local K_READY, K_DELAYED, K_INFLIGHT, K_TASKS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_LEASES, K_ORIGINS, K_DEAD, K_DEADDATA = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_STATS, K_SEQ, K_WAKE, K_CONSUMERS = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
-- Most doorbell tokens kept: enough to wake every idle consumer of a busy deployment,
-- few enough that a drained queue costs only a handful of spurious wake-ups.
local WAKE_CAP = 64

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Rings the doorbell for up to n waiting consumers.
local function ring(n)
  if n <= 0 then return end
  local add = math.min(n, WAKE_CAP - redis.call('LLEN', K_WAKE))
  if add > 0 then
    local t = {}
    for i = 1, add do t[i] = '1' end
    redis.call('RPUSH', K_WAKE, unpack(t))
  end
end

-- A lease is held while the leases hash maps the task to '<token>|<consumer>'.
local function held(v, tok)
  return v and string.sub(v, 1, #tok + 1) == tok .. '|'
end

-- Drops the origin claim of a task that leaves the live set.
local function release_origin(id, origin)
  if origin ~= '' and redis.call('HGET', K_ORIGINS, origin) == id then
    redis.call('HDEL', K_ORIGINS, origin)
  end
end

-- Moves up to `limit` delayed tasks whose time has come to the back of the ready list.
local function promote(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, limit)
  if #due > 0 then
    redis.call('ZREM', K_DELAYED, unpack(due))
    redis.call('LPUSH', K_READY, unpack(due))
  end
  return #due
end

-- Takes back up to `limit` deliveries whose lease ran out; they go to the front of the
-- ready list and their old leases stop working. No attempt is counted.
local function reclaim(now, limit)
  local gone = redis.call('ZRANGEBYSCORE', K_INFLIGHT, '-inf', '(' .. now, 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('ZREM', K_INFLIGHT, unpack(gone))
    redis.call('HDEL', K_LEASES, unpack(gone))
    redis.call('RPUSH', K_READY, unpack(gone))
    redis.call('HINCRBY', K_STATS, 'expired_total', #gone)
  end
  return #gone
end
"#;

/// ARGV: n, then n × (id, json, origin or '', not_before_ms or 0).
/// Returns one string per task: '' enqueued, else the id of the live task it duplicates
/// (same id or same live origin).
const PUBLISH: &str = r#"
local now = now_ms()
local n = tonumber(ARGV[1])
local ids = {}
for i = 1, n do ids[i] = ARGV[4 * i - 2] end
local live = redis.call('HMGET', K_TASKS, unpack(ids))
local seen, out, ready, pairs_, enq = {}, {}, {}, {}, 0
for i = 1, n do
  local id, json, origin = ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]
  local nb = tonumber(ARGV[4 * i + 1])
  local ok = ''
  if live[i] or seen[id] then
    ok = id
  elseif origin ~= '' then
    local holder = redis.call('HGET', K_ORIGINS, origin)
    if holder and (seen[holder] or redis.call('HEXISTS', K_TASKS, holder) == 1) then
      ok = holder
    else
      redis.call('HSET', K_ORIGINS, origin, id)
    end
  end
  if ok == '' then
    seen[id] = true
    pairs_[#pairs_ + 1] = id
    pairs_[#pairs_ + 1] = json
    if nb > now then
      redis.call('ZADD', K_DELAYED, nb, id)
    else
      ready[#ready + 1] = id
    end
    enq = enq + 1
  end
  out[i] = ok
end
if enq > 0 then
  redis.call('HSET', K_TASKS, unpack(pairs_))
  redis.call('HINCRBY', K_STATS, 'published_total', enq)
end
if #ready > 0 then
  redis.call('LPUSH', K_READY, unpack(ready))
  ring(#ready)
end
return out
"#;

/// ARGV: max, visibility_ms, consumer.
/// Returns {hint_ms, id1, json1, token1, id2, ...}. hint_ms (only meaningful when no task
/// came back) is how long until a delayed task or an expired lease may be ready: -1 when
/// nothing is scheduled, 0 when the caller should ask again at once.
const CONSUME: &str = r#"
local now = now_ms()
local max, vt, consumer = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local limit = math.max(max, 100)
local moved = promote(now, limit) + reclaim(now, limit)
redis.call('ZADD', K_CONSUMERS, now, consumer)
local out = {-1}
local ids = redis.call('RPOP', K_READY, max)
if ids then
  local jsons = redis.call('HMGET', K_TASKS, unpack(ids))
  local base = redis.call('INCRBY', K_SEQ, #ids) - #ids
  local deadline = now + vt
  local z, l = {}, {}
  for i, id in ipairs(ids) do
    local json = jsons[i]
    if json then
      local tok = string.format('%d', base + i)
      z[#z + 1] = deadline
      z[#z + 1] = id
      l[#l + 1] = id
      l[#l + 1] = tok .. '|' .. consumer
      out[#out + 1] = id
      out[#out + 1] = json
      out[#out + 1] = tok
    end
  end
  if #z > 0 then
    redis.call('ZADD', K_INFLIGHT, unpack(z))
    redis.call('HSET', K_LEASES, unpack(l))
  end
end
if redis.call('LLEN', K_READY) == 0 then
  -- Nothing is ready: every doorbell token left is stale.
  redis.call('DEL', K_WAKE)
  if #out == 1 then
    local hint = -1
    local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
    if d[2] then hint = math.max(0, tonumber(d[2]) - now) end
    local f = redis.call('ZRANGE', K_INFLIGHT, 0, 0, 'WITHSCORES')
    if f[2] then
      local h = math.max(1, tonumber(f[2]) + 1 - now)
      if hint < 0 or h < hint then hint = h end
    end
    out[1] = hint
  end
elseif moved > 0 then
  ring(moved)
  out[1] = 0
else
  out[1] = 0
end
return out
"#;

/// ARGV: n, then n × (id, token, origin or ''). Acks every delivery whose lease is held.
/// Returns the ids whose lease was lost.
const ACK: &str = r#"
local n = tonumber(ARGV[1])
local ids = {}
for i = 1, n do ids[i] = ARGV[3 * i - 1] end
local leases = redis.call('HMGET', K_LEASES, unpack(ids))
local done, lost = {}, {}
for i = 1, n do
  local id = ids[i]
  if held(leases[i], ARGV[3 * i]) then
    done[#done + 1] = id
    release_origin(id, ARGV[3 * i + 1])
  else
    lost[#lost + 1] = id
  end
end
if #done > 0 then
  redis.call('ZREM', K_INFLIGHT, unpack(done))
  redis.call('HDEL', K_LEASES, unpack(done))
  redis.call('HDEL', K_TASKS, unpack(done))
  redis.call('HINCRBY', K_STATS, 'acked_total', #done)
end
return lost
"#;

/// Settles one delivery other than by ack. ARGV: op, id, token, then per op:
/// * `requeue`: json ('' keeps the stored task), delay_ms, counter, front ('1' / '0');
/// * `dead`: origin, dead-letter json, counted_nack ('1' / '0');
/// * `extend`: by_ms.
///
/// Returns 1 when done, 0 when the lease is no longer held.
const SETTLE: &str = r#"
local op, id, tok = ARGV[1], ARGV[2], ARGV[3]
if not held(redis.call('HGET', K_LEASES, id), tok) then return 0 end
local now = now_ms()
if op == 'extend' then
  redis.call('ZADD', K_INFLIGHT, 'XX', now + tonumber(ARGV[4]), id)
  return 1
end
redis.call('ZREM', K_INFLIGHT, id)
redis.call('HDEL', K_LEASES, id)
if op == 'requeue' then
  local json, delay, counter, front = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
  if json ~= '' then redis.call('HSET', K_TASKS, id, json) end
  if delay > 0 then
    redis.call('ZADD', K_DELAYED, now + delay, id)
  elseif front == '1' then
    redis.call('RPUSH', K_READY, id)
    ring(1)
  else
    redis.call('LPUSH', K_READY, id)
    ring(1)
  end
  redis.call('HINCRBY', K_STATS, counter, 1)
else
  local origin, json, nacked = ARGV[4], ARGV[5], ARGV[6]
  redis.call('HDEL', K_TASKS, id)
  release_origin(id, origin)
  -- Scored by a queue-wide sequence, not the time: two dead letters in the same
  -- millisecond still list oldest first.
  redis.call('ZADD', K_DEAD, redis.call('INCR', K_SEQ), id)
  redis.call('HSET', K_DEADDATA, id, json)
  redis.call('HINCRBY', K_STATS, 'dead_lettered_total', 1)
  if nacked == '1' then redis.call('HINCRBY', K_STATS, 'nacked_total', 1) end
end
return 1
"#;

/// ARGV: op, then per op:
/// * `list`: limit. Returns dead-letter json, oldest first.
/// * `retry`: id, task json (attempts reset), origin. Returns 1, or 0 when unknown.
/// * `delete`: id. Returns 1, or 0 when unknown.
/// * `purge`. Returns how many were deleted.
const DEAD: &str = r#"
local op = ARGV[1]
if op == 'list' then
  local ids = redis.call('ZRANGE', K_DEAD, 0, tonumber(ARGV[2]) - 1)
  if #ids == 0 then return {} end
  return redis.call('HMGET', K_DEADDATA, unpack(ids))
elseif op == 'retry' then
  local id, json, origin = ARGV[2], ARGV[3], ARGV[4]
  if redis.call('ZREM', K_DEAD, id) == 0 then return 0 end
  redis.call('HDEL', K_DEADDATA, id)
  redis.call('HSET', K_TASKS, id, json)
  if origin ~= '' then
    local holder = redis.call('HGET', K_ORIGINS, origin)
    if not holder or redis.call('HEXISTS', K_TASKS, holder) == 0 then
      redis.call('HSET', K_ORIGINS, origin, id)
    end
  end
  redis.call('LPUSH', K_READY, id)
  ring(1)
  return 1
elseif op == 'delete' then
  local n = redis.call('ZREM', K_DEAD, ARGV[2])
  redis.call('HDEL', K_DEADDATA, ARGV[2])
  return n
else
  local n = redis.call('ZCARD', K_DEAD)
  redis.call('DEL', K_DEAD, K_DEADDATA)
  return n
end
"#;

/// Read-only snapshot. Returns {ready, in_flight, delayed, delayed_due, dead, field1,
/// value1, ...} with the counters of the stats hash.
const STATS: &str = r#"
local now = now_ms()
local out = {
  redis.call('LLEN', K_READY),
  redis.call('ZCARD', K_INFLIGHT),
  redis.call('ZCARD', K_DELAYED),
  redis.call('ZCOUNT', K_DELAYED, '-inf', now),
  redis.call('ZCARD', K_DEAD),
}
for _, v in ipairs(redis.call('HGETALL', K_STATS)) do out[#out + 1] = v end
return out
"#;

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

pub(crate) static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_prelude(PUBLISH));
pub(crate) static CONSUME_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_prelude(CONSUME));
pub(crate) static ACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_prelude(ACK));
pub(crate) static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_prelude(SETTLE));
pub(crate) static DEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_prelude(DEAD));
pub(crate) static STATS_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_prelude(STATS));
