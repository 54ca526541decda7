-- wrk script for the celeris benchmark harness.
-- Usage: wrk -s bench.lua URL -- DEPTH
-- DEPTH > 1 sends DEPTH requests per write (HTTP/1.1 pipelining); wrk then counts every
-- response as a request but records one latency sample per batch (send to last response).
-- done() prints one machine-readable line so the harness never parses wrk's human text.

local depth = 1

function init(args)
   depth = tonumber(args[1]) or 1
   if depth > 1 then
      local one = wrk.format(nil, wrk.path)
      local batch = string.rep(one, depth)
      request = function()
         return batch
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d},"depth":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(95), latency:percentile(99), depth))
end
