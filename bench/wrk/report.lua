-- Shared by the novamind wrk scripts: the run's settings file, status counts and the JSON
-- summary that bench/api.py reads (the last line wrk prints).
--
-- The settings file holds one value per line: the bearer token, then one patient id per line.
-- It is a file rather than wrk arguments so the token never shows in the process list.

local report = {}

-- Lines of the file at `path` (the settings file written by bench/api.py).
function report.read_lines(path)
   local lines = {}
   local file = assert(io.open(path, "r"))
   for line in file:lines() do
      if line ~= "" then
         lines[#lines + 1] = line
      end
   end
   file:close()
   return lines
end

local threads = {}

-- Called by wrk in its main state once per thread, just before that thread's init(): numbers
-- the threads (from 0) so each can pick its own patients. (The thread count is not known yet at
-- that point: wrk starts each thread before it sets up the next.)
function report.setup(thread)
   thread:set("thread_index", #threads)
   threads[#threads + 1] = thread
end

local function json_value(value)
   if type(value) == "number" then
      if value ~= value or value == math.huge or value == -math.huge then
         return "null"
      end
      return string.format("%.17g", value)
   end
   return string.format("%q", tostring(value))
end

-- wrk's done(): one JSON object on the last line, with latencies in microseconds.
function report.done(summary, latency, requests)
   local statuses, max_day, duplicates = {}, 0, 0
   for _, t in ipairs(threads) do
      local counts = t:get("statuses") or {}
      for status, n in pairs(counts) do
         statuses[status] = (statuses[status] or 0) + n
      end
      duplicates = duplicates + (t:get("duplicates") or 0)
      local day = t:get("max_day")
      if day ~= nil and day > max_day then
         max_day = day
      end
   end
   local status_parts = {}
   for status, n in pairs(statuses) do
      status_parts[#status_parts + 1] = string.format("%q: %d", tostring(status), n)
   end
   local e = summary.errors
   local fields = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_us": %d', summary.duration),
      string.format('"p50_us": %s', json_value(latency:percentile(50))),
      string.format('"p90_us": %s', json_value(latency:percentile(90))),
      string.format('"p99_us": %s', json_value(latency:percentile(99))),
      string.format('"max_us": %s', json_value(latency.max)),
      string.format('"statuses": {%s}', table.concat(status_parts, ", ")),
      string.format(
         '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}',
         e.connect, e.read, e.write, e.timeout
      ),
      string.format('"max_day": %s', json_value(max_day)),
      string.format('"duplicates": %d', duplicates),
   }
   io.write("{" .. table.concat(fields, ", ") .. "}\n")
end

return report
