-- wrk script for the model-server benchmark: POST the JSON body read from the file
-- named by KANARIA_BENCH_BODY, and print one machine-readable result line at the end.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local fh = assert(io.open(os.getenv("KANARIA_BENCH_BODY"), "rb"))
wrk.body = fh:read("*a")
fh:close()

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("KANARIA_RESULT requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99)))
end
