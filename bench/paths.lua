-- wrk script: each thread cycles through the request paths listed in a file (one per line),
-- starting at its own offset, and prints one JSON line of results when the run is done.
-- Usage: [WRK_AUTHORIZATION='Basic ...'] wrk -s paths.lua URL -- PATHS_FILE [ENCODING]
-- (ENCODING: sent as Accept-Encoding)
local counter = 0
local threads = {}

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   requests = {}
   -- an Authorization header from the environment, never from argv (where ps shows it)
   local authorization = os.getenv("WRK_AUTHORIZATION")
   local headers = {}
   if authorization then
      headers["Authorization"] = authorization
   end
   if args[2] and #args[2] > 0 then
      headers["Accept-Encoding"] = args[2]
   end
   for line in io.lines(args[1]) do
      if #line > 0 then
         table.insert(requests, wrk.format("GET", line, headers))
      end
   end
   position = ((id or 1) - 1) * 7919 % #requests
end

function request()
   position = position % #requests + 1
   return requests[position]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
      '"p50_us": %d, "p99_us": %d, "mean_us": %f, "max_us": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
