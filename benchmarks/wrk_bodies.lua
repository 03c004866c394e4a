-- wrk script: POST pre-generated EventList bodies round-robin, one body per line of a file.
--
--   wrk -t1 -c8 -d10s --latency --timeout 30s -s benchmarks/wrk_bodies.lua \
--       'http://127.0.0.1:8080/?timeout=30s' -- BODIES_FILE EVENTS_PER_BODY THREADS
--
-- Each wrk thread keeps only its share of the lines (line i goes to thread i % threads), and
-- formats every request once, in init(), so request() only hands out a prepared string.
-- A body is never sent twice unless the file runs out ("wraps" in the result says so).
-- done() prints one line "WRK_RESULT {json}" for benchmarks/run_http.py to parse.

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("id", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

function init(args)
   -- wrk passes the arguments after "--" as args[1], args[2], ... (args[0] is the script)
   local path = args[1]
   local per_body = tonumber(args[2]) or 1
   local nthreads = tonumber(args[3]) or 1
   events_per_body = per_body
   requests_ = {}
   -- the headers kube-apiserver's webhook client sends (fixtures/batch-requests.jsonl)
   local headers = {
      ["User-Agent"] = "Go-http-client/1.1",
      ["Accept"] = "application/json, */*",
      ["Content-Type"] = "application/json",
      ["Accept-Encoding"] = "gzip",
   }
   local i = 0
   for line in io.lines(path) do
      if i % nthreads == id then
         requests_[#requests_ + 1] = wrk.format("POST", nil, headers, line .. "\n")
      end
      i = i + 1
   end
   count_ = #requests_
   if count_ == 0 then
      error("no bodies for thread " .. id .. " in " .. path)
   end
   next_ = 0
   wraps = 0
   sent = 0
   bad_status = 0
end

function request()
   next_ = next_ + 1
   if next_ > count_ then
      next_ = 1
      wraps = wraps + 1
   end
   sent = sent + 1
   return requests_[next_]
end

function response(status, headers, body)
   if status < 200 or status > 206 then
      bad_status = bad_status + 1
   end
end

function done(summary, latency, requests)
   local wr, st, bad, bodies = 0, 0, 0, 0
   for _, t in ipairs(threads) do
      wr = wr + (t:get("wraps") or 0)
      st = st + (t:get("sent") or 0)
      bad = bad + (t:get("bad_status") or 0)
      bodies = bodies + (t:get("count_") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
      '"bodies":%d,"sent":%d,"wraps":%d,"non2xx":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, bodies, st, wr, bad))
end
