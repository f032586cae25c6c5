-- wrk script: POST /v1/recommendations for the user ids in $USERS_FILE, in turn, then a JSON summary.
local users = {}
for line in io.lines(os.getenv("USERS_FILE")) do
  users[#users + 1] = line
end
local i = tonumber(os.getenv("START") or "0")
local k = os.getenv("K") or "10"
local headers = { ["Content-Type"] = "application/json" }

request = function()
  i = i + 1
  local user = users[(i % #users) + 1]
  return wrk.format("POST", "/v1/recommendations", headers, '{"user_id":"' .. user .. '","k":' .. k .. '}')
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,'
      .. '"max_us":%d,"socket_errors":%d,"non_2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
