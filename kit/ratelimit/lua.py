"""The Lua scripts behind the Redis limiters, one per algorithm.

Every script checks a *batch*: ``KEYS`` are the keys of the checks, in order, and the last
``#KEYS`` entries of ``ARGV`` their costs; each check sees the writes of the ones before it,
so a batch behaves exactly like the same checks sent one by one. A single check is a batch
of one. The reply is one string of space-separated integers, ``allowed (0|1) remaining
retry_after_us (-1: never)`` per check: a single bulk reply is much cheaper for a Python
client to parse than an array of 3 integers per check.

Time: ``ARGV[1]`` is empty and the script reads the Redis server's clock (``TIME``), so every
gateway replica measures windows and refills on one clock whatever their own clocks say; a
client clock (epoch microseconds in ``ARGV[1]``) is accepted for tests only. Times are whole
microseconds, written with ``%.0f`` (Lua's default number format keeps 14 digits, too few
for an epoch in microseconds).

Memory: every write sets a TTL of the time after which the key is equivalent to an absent
one (a full bucket, a past window), so idle keys disappear by themselves.
"""

from __future__ import annotations

from typing import Final

_NOW: Final = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local function fmt(n) return string.format('%.0f', n) end
local out = {}
local function answer(allowed, remaining, retry)
  out[#out + 1] = string.format('%d %d %d', allowed, remaining, retry)
end
"""

TOKEN_BUCKET: Final = (
    _NOW
    + """
-- ARGV: now, rate (units per second), capacity, costs...
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[3 + i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = capacity, now
  if state[1] then
    ts = math.max(tonumber(state[2]), now)
    tokens = math.min(capacity, tonumber(state[1]) + (ts - tonumber(state[2])) * rate / 1e6)
  end
  local allowed, retry = 0, 0
  if tokens + 1e-9 >= cost then
    allowed = 1
    tokens = math.max(0, tokens - cost)
    redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', fmt(ts))
    redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / rate * 1000) + 1)
  elseif cost > capacity then
    retry = -1
  else
    retry = math.ceil((cost - tokens) / rate * 1e6)
  end
  answer(allowed, math.floor(tokens + 1e-9), retry)
end
return table.concat(out, ' ')
"""
)

LEAKY_BUCKET: Final = (
    _NOW
    + """
-- ARGV: now, interval (microseconds per unit), capacity, costs...
-- State: the theoretical arrival time (GCRA), when the bucket will have drained.
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[3 + i])
  local stored = tonumber(redis.call('GET', key)) or now
  local tat = math.max(stored, now) + cost * interval
  local excess = (tat - now) - capacity * interval
  local allowed, remaining, retry = 0, 0, 0
  -- One microsecond of slack, as the in-process limiter allows.
  if excess <= 1 then
    allowed = 1
    remaining = math.floor((1 - excess) / interval)
    redis.call('SET', key, fmt(tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  else
    local level = (math.max(stored - now, 0) - 1) / interval
    remaining = math.max(0, math.floor(capacity - level))
    if cost > capacity then retry = -1 else retry = math.ceil(excess) end
  end
  answer(allowed, remaining, retry)
end
return table.concat(out, ' ')
"""
)

FIXED_WINDOW: Final = (
    _NOW
    + """
-- ARGV: now, limit, period (microseconds), costs...
-- State: the window's index and count; a stale index reads as an empty window.
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local window = math.floor(now / period)
local window_end = (window + 1) * period
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[3 + i])
  local state = redis.call('HMGET', key, 'w', 'c')
  local count = 0
  if tonumber(state[1]) == window then count = tonumber(state[2]) end
  local allowed, retry = 0, 0
  if count + cost <= limit then
    allowed = 1
    count = count + cost
    redis.call('HSET', key, 'w', fmt(window), 'c', fmt(count))
    redis.call('PEXPIRE', key, math.ceil((window_end - now) / 1000) + 1)
  elseif cost > limit then
    retry = -1
  else
    retry = window_end - now
  end
  answer(allowed, limit - count, retry)
end
return table.concat(out, ' ')
"""
)

SLIDING_WINDOW_LOG: Final = (
    _NOW
    + """
-- ARGV: now, limit, period (microseconds), nonce (unique per call), costs...
-- State: a sorted set with one member per admitted unit, scored by its time.
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local nonce = ARGV[4]
local score = fmt(now)
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[4 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - period))
  local total = redis.call('ZCARD', key)
  local allowed, remaining, retry = 0, limit - total, 0
  if total + cost <= limit then
    allowed = 1
    remaining = limit - total - cost
    local members = {}
    for j = 1, cost do
      members[#members + 1] = score
      members[#members + 1] = nonce .. ':' .. i .. ':' .. j
      -- unpack() is bounded by Lua's stack: add at most 1000 members per call.
      if #members >= 2000 or j == cost then
        redis.call('ZADD', key, unpack(members))
        members = {}
      end
    end
    if cost > 0 then redis.call('PEXPIRE', key, math.ceil(period / 1000) + 1) end
  elseif cost > limit then
    retry = -1
  else
    -- Admissible once the (total + cost - limit) oldest units have aged out.
    local rank = total + cost - limit - 1
    local oldest = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
    retry = tonumber(oldest[2]) + period - now
  end
  answer(allowed, remaining, retry)
end
return table.concat(out, ' ')
"""
)

SLIDING_WINDOW_COUNTER: Final = (
    _NOW
    + """
-- ARGV: now, limit, period (microseconds), costs...
-- State: the current window's index and count, and the previous window's count.
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local window = math.floor(now / period)
local window_start = window * period
local weight = 1 - (now - window_start) / period
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[3 + i])
  local state = redis.call('HMGET', key, 'w', 'c', 'p')
  local stored = tonumber(state[1])
  local count, previous = 0, 0
  if stored == window then
    count, previous = tonumber(state[2]), tonumber(state[3])
  elseif stored == window - 1 then
    previous = tonumber(state[2])
  end
  local estimate = previous * weight + count
  local allowed, remaining, retry = 0, 0, 0
  if estimate + cost <= limit + 1e-9 then
    allowed = 1
    count = count + cost
    remaining = math.max(0, math.floor(limit - estimate - cost + 1e-9))
    redis.call('HSET', key, 'w', fmt(window), 'c', fmt(count), 'p', fmt(previous))
    redis.call('PEXPIRE', key, math.ceil((window_start + 2 * period - now) / 1000) + 1)
  else
    remaining = math.max(0, math.floor(limit - estimate + 1e-9))
    if cost > limit then
      retry = -1
    elseif count + cost <= limit then
      local fits_at = period * (1 - (limit - count - cost) / previous)
      retry = math.ceil(window_start + fits_at - now)
    else
      local fits_at = 0
      if count > 0 then fits_at = math.max(0, period * (1 - (limit - cost) / count)) end
      retry = math.ceil(window_start + period + fits_at - now)
    end
  end
  answer(allowed, remaining, retry)
end
return table.concat(out, ' ')
"""
)
