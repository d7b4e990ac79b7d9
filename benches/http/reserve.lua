-- wrk script: POST /v1/reservations with a unique order id per request and 1-4 lines whose
-- skus follow a Zipf(1.01) law over SKUS skus in warehouse "kol" (qty 1 each).
local SKUS = tonumber(os.getenv("BENCH_SKUS") or "10000")
local S = 1.01
local RUN = os.getenv("BENCH_RUN") or tostring(os.time())

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local cdf = {}
local counter = 0

function init(args)
  local sum = 0
  for i = 1, SKUS do
    sum = sum + 1 / (i ^ S)
    cdf[i] = sum
  end
  for i = 1, SKUS do
    cdf[i] = cdf[i] / sum
  end
  math.randomseed(os.time() + tid * 7919)
end

local function zipf()
  local u = math.random()
  local lo, hi = 1, SKUS
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local n = math.random(1, 4)
  local seen = {}
  local lines = {}
  for _ = 1, n do
    local k = zipf()
    if not seen[k] then
      seen[k] = true
      lines[#lines + 1] = string.format('{"sku":"S%d","warehouse":"kol","qty":1}', k)
    end
  end
  local body = string.format('{"order_id":"%s-%d-%d","lines":[%s]}', RUN, tid, counter,
    table.concat(lines, ","))
  return wrk.format("POST", "/v1/reservations", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("LAT p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
