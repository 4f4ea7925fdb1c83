-- The wrk script of the scale benchmark (bench/scale/run.ts): POSTs pre-signed Teamwork v2 deliveries
-- to /webhooks/teamwork, each body once.
--
-- Usage: wrk -t1 -c50 -d10s --timeout 10s -s bench/scale/deliveries.lua <url> -- <file> <threads>
-- <file> holds one delivery a line: the hex HMAC-SHA256 signature, a space, the JSON body (written by
-- bench/scale/deliveries.ts before the clock starts). Every request is formatted while the script
-- loads, so during the run wrk only hands out the next one. With several threads (-t), thread k sends
-- deliveries k, k + T, k + 2T, ...; a thread that runs out starts again from its first and counts the
-- repeats (the connector answers a repeat without queueing it, so the runner reports them).
--
-- Prints "ready" once loaded (wrk starts its clock right after) and, at the end, one line
-- "SCALE_JSON {...}": requests, duration, errors, latency percentiles in microseconds, and the number
-- of deliveries sent more than once.

wrk.method = "POST"
wrk.path = "/webhooks/teamwork"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Projects-Event"] = "TASK.UPDATED"

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local next_index = 1
sent = 0
distinct = 0

function init(args)
  local file = args[1]
  local index = thread_index or 0
  local stride = tonumber(args[2]) or 1
  local n = 0
  for line in io.lines(file) do
    if n % stride == index then
      wrk.headers["X-Projects-Signature"] = line:sub(1, 64)
      requests[#requests + 1] = wrk.format(nil, nil, nil, line:sub(66))
    end
    n = n + 1
  end
  wrk.headers["X-Projects-Signature"] = nil
  distinct = #requests
  io.write("ready\n")
  io.stdout:flush()
end

function request()
  local r = requests[next_index]
  next_index = next_index + 1
  if next_index > distinct then next_index = 1 end
  sent = sent + 1
  return r
end

function done(summary, latency, _)
  local repeats = 0
  for _, thread in ipairs(threads) do
    local s = thread:get("sent") or 0
    local d = thread:get("distinct") or 0
    if s > d then repeats = repeats + (s - d) end
  end
  local e = summary.errors
  io.write(string.format(
    'SCALE_JSON {"requests":%d,"durationUs":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%.1f,"repeats":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean, repeats))
end
