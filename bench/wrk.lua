-- Replay pre-built requests (one per line of <prefix><thread>.txt: "Name: value<TAB>..."),
-- count answers with the expected status, and print one WRKJSON line at the end.
-- Arguments after "--": file prefix, expected status, method, body file, and optionally a
-- second prefix: each answer with the expected status is then written to <prefix><thread>.txt,
-- one line per answer (the bench reads leases back from a claim's answers).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local expected_status = tonumber(args[2])
  local method = args[3]
  local f = io.open(args[4], "rb")
  local body = f:read("*a")
  f:close()
  if body == "" then body = nil end
  reqs = {}
  for line in io.lines(args[1] .. tid .. ".txt") do
    local headers = {}
    for name, value in string.gmatch(line, "([^\t:]+): ([^\t]*)") do headers[name] = value end
    table.insert(reqs, wrk.format(method, nil, headers, body))
  end
  n, ok, bad, first_bad, expected = 0, 0, 0, "", expected_status
  if args[5] and args[5] ~= "" then record = io.open(args[5] .. tid .. ".txt", "wb") end
end

function request()
  n = n + 1
  return reqs[((n - 1) % #reqs) + 1]
end

function response(status, headers, body)
  if status == expected then
    ok = ok + 1
    if record then
      record:write((string.gsub(body, "\n", " ")), "\n")
      record:flush()
    end
  else
    bad = bad + 1
    if first_bad == "" then first_bad = tostring(status) end
  end
end

function done(summary, latency, requests)
  local ok_total, bad_total, first = 0, 0, ""
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    bad_total = bad_total + t:get("bad")
    if first == "" then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "ok": %d, "bad": %d, "first_bad": "%s", ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f, "socket_errors": %d, "bytes": %d}\n',
    summary.requests, summary.duration, ok_total, bad_total, first,
    latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect + e.read + e.write + e.timeout, summary.bytes))
end
