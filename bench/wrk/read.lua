-- Audited twin reads: GET /v1/patients/{id}/twin, rotating over the seeded patients.
--
-- wrk -s bench/wrk/read.lua URL -- SETTINGS_FILE   (see report.lua for the file)
-- Each thread starts at its own place in the rotation, so connections spread over patients.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "report.lua")

local paths, next_index = {}, 0
statuses = {}

setup = report.setup
done = report.done

function init(args)
   local lines = report.read_lines(args[1])
   wrk.headers["Authorization"] = "Bearer " .. lines[1]
   for i = 2, #lines do
      paths[#paths + 1] = "/v1/patients/" .. lines[i] .. "/twin"
   end
   next_index = thread_index * 7
end

function request()
   next_index = next_index + 1
   return wrk.format("GET", paths[next_index % #paths + 1])
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end
