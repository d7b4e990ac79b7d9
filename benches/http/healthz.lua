-- wrk script for GET /healthz: only reports latency percentiles in the same format.
function done(summary, latency, requests)
  io.write(string.format("LAT p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
