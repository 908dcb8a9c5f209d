-- wrk script for the ingest benchmark: every request is the next precomputed, validly signed,
-- distinct delivery from this thread's own pool file, so no two requests of a run (across all
-- threads) carry the same signed payload and every 2xx is a real insert, never a duplicate.
--
-- wrk runs one Lua state per thread (plus a main state for setup/done). Settings come from the
-- environment because wrk's argument passing puts the URL into args[0] and is easy to get wrong:
--   BENCH_POOL_DIR         folder holding thread-<id>.http (records: "<bytes>\n<raw HTTP request>")
--   BENCH_OFFSETS          comma-separated byte offset to start at, per thread id (0-based)
--   BENCH_RATE_PER_THREAD  optional: requests per second per thread (fixed-rate mode, via delay())
--
-- A thread that reaches the end of its pool does not wrap around (a repeat would be a duplicate,
-- not an insert): it flags itself exhausted and stops; the orchestrator then rejects the run.

local threads = {}
local next_id = 0

-- Main state: runs once per thread, before that thread's init().
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Thread state globals, read back by done() through thread:get().
generated = 0    -- request() calls, i.e. deliveries taken from the pool (wrk also takes one to
                 -- validate the script on thread 0, which is never sent)
pos = 0          -- byte offset of the next unread record
exhausted = false

local pool

local function offset_for(thread_id)
  local i = 0
  for value in string.gmatch(os.getenv("BENCH_OFFSETS") or "", "[^,]+") do
    if i == thread_id then return tonumber(value) end
    i = i + 1
  end
  return 0
end

function init(args)
  local dir = assert(os.getenv("BENCH_POOL_DIR"), "BENCH_POOL_DIR is not set")
  pool = assert(io.open(dir .. "/thread-" .. id .. ".http", "rb"))
  pool:setvbuf("full", 1048576)
  pos = offset_for(id)
  pool:seek("set", pos)
end

-- Sent only once a thread has run dry: answered by every server, so the run ends cleanly and
-- the orchestrator, seeing `exhausted`, fails it.
local EXHAUSTED_REQUEST = "GET /bench-pool-exhausted HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

function request()
  local header = pool:read("*l")
  local size = header and tonumber(header)
  if size == nil then
    exhausted = true
    wrk.thread:stop()
    return EXHAUSTED_REQUEST
  end
  local raw = pool:read(size)
  generated = generated + 1
  pos = pos + #header + 1 + size
  return raw
end

local rate = tonumber(os.getenv("BENCH_RATE_PER_THREAD") or "")
if rate ~= nil and rate > 0 then
  -- Fixed-rate mode: one schedule per thread, each request claims the next slot. wrk calls delay()
  -- before each request of each connection and measures latency from the moment it writes, so the
  -- wait is not counted. Needs enough idle connections to keep the schedule (connections x period
  -- must exceed the latency). LuaJIT's ffi gives the monotonic clock wrk does not expose.
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]]
  local CLOCK_MONOTONIC = 1
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local period_ms = 1000 / rate
  local next_slot = nil

  function delay()
    local now = now_ms()
    if next_slot == nil or next_slot < now then next_slot = now end
    local wait = next_slot - now
    next_slot = next_slot + period_ms
    -- wrk's timer resolution is 1 ms; the schedule itself stays exact, so truncation only
    -- jitters individual sends by under a millisecond and the average rate is kept.
    return math.floor(wait)
  end
end

-- Main state, after the run: one machine-readable line for the orchestrator (latencies in µs).
function done(summary, latency, requests)
  local per_thread = {}
  for _, t in ipairs(threads) do
    table.insert(per_thread, string.format('{"id":%d,"generated":%d,"pos":%d,"exhausted":%s}',
      t:get("id"), t:get("generated"), t:get("pos"), tostring(t:get("exhausted"))))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"durationUs":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, table.concat(per_thread, ",")))
end
