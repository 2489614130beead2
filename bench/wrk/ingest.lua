-- Acknowledged ingests: POST /v1/patients/{id}/observations, one new EMA rating per request.
--
-- wrk -t N -c N -s bench/wrk/ingest.lua URL -- SETTINGS_FILE N RUN_ID DAY0 DAY_STEP ENROLLED
--
-- Events are placed by instant (`effective`): ENROLLED (Unix seconds, the patients'
-- enrolment) plus the event's day, in UTC to the millisecond.
--
-- Every request is a new durable event: its idempotency key is unique (run, thread, counter),
-- and each patient's days only increase. For that, run one connection per thread (-t = -c):
-- a thread then has one request in flight, and owns the patients whose place in the file
-- modulo the thread count is its own, so no two requests for one patient ever overlap. Days
-- start after DAY0 (the max_day a previous run reported) and step by DAY_STEP per request.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")

local owned, thread_count, run_id, day0, day_step, enrolled, sent = {}, 1, "", 0, 0, 0, 0
statuses = {}
max_day = 0
duplicates = 0

setup = report.setup
done = report.done

function init(args)
   local lines = report.read_lines(args[1])
   thread_count, run_id = tonumber(args[2]), args[3]
   day0, day_step, enrolled = tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
   wrk.headers["Authorization"] = "Bearer " .. lines[1]
   wrk.headers["Content-Type"] = "application/json"
   for i = 2, #lines do
      if (i - 2) % thread_count == thread_index then
         owned[#owned + 1] = "/v1/patients/" .. lines[i] .. "/observations"
      end
   end
   assert(#owned > 0, "more threads than patients")
end

function request()
   local patient = sent % #owned
   local day = day0 + (math.floor(sent / #owned) + 1) * day_step
   local ms = math.floor((enrolled + day * 86400) * 1000 + 0.5)
   local effective = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000))
      .. string.format(".%03dZ", ms % 1000)
   local body = string.format(
      '{"items": [{"idempotency_key": "%s-%d-%d", "effective": "%s", '
         .. '"payload": {"type": "ema_affect", "rating": %d}}]}',
      run_id, thread_index, sent, effective, 1 + sent % 7
   )
   sent = sent + 1
   if day > max_day then
      max_day = day
   end
   return wrk.format("POST", owned[patient + 1], nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   -- An acknowledgement of an event the log already held would not be a new durable event.
   if status < 300 and body:find('"duplicate":true', 1, true) then
      duplicates = duplicates + 1
   end
end
