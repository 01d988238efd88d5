-- wrk script for bench/http_load.sh: POSTs one photo as the raw body, prints one JSON line.
-- The photo path comes as the first script argument (wrk ... URL -- PHOTO).

local body

-- init runs in every thread's own Lua state, so each reads the file once, before the load starts.
function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s post_photo.lua URL -- PHOTO")
  end
  local f = assert(io.open(path, "rb"))
  body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "image/jpeg"
  wrk.body = body
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local non2xx = summary.errors.status
  -- connect/read/write/timeout errors are not responses; count them apart so ok is only 2xx.
  local sockerr = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local ok = summary.requests - non2xx
  -- wrk keeps one latency histogram for all responses, so under overload the percentiles mix
  -- fast 503 rejections with full inferences: read them together with non_2xx.
  io.write(string.format(
    '{"requests":%d,"non_2xx":%d,"socket_errors":%d,"duration_s":%.3f,'
      .. '"photos_per_second":%.2f,"latency_p50_ms":%.2f,"latency_p99_ms":%.2f}\n',
    summary.requests, non2xx, sockerr, secs, ok / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
