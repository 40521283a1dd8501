-- post_image.lua: wrk script that POSTs one real image as multipart/form-data to /classify
-- (the same body for vitd and for the peer) and prints one machine-readable result line.
--   wrk -t2 -c32 -d10s --latency -s loadtest/post_image.lua http://127.0.0.1:8080/classify -- photo.jpg [images]
-- args: image path, images per request (default 1; each is one `image` part).

local images = 1

function init(args)
  local path = args[1] or "tests/data/server/photo.jpg"
  images = tonumber(args[2] or "1")
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local boundary = "----vitdloadtest7d3f1c"
  local parts = {}
  for i = 1, images do
    parts[#parts + 1] = "--" .. boundary .. "\r\n" ..
      "Content-Disposition: form-data; name=\"image\"; filename=\"img" .. i .. ".jpg\"\r\n" ..
      "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n"
  end
  wrk.method = "POST"
  wrk.body = table.concat(parts) .. "--" .. boundary .. "--\r\n"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.2f images_per_s=%.2f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, secs, summary.requests / secs, summary.requests * images / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.status,
    e.connect + e.read + e.write + e.timeout))
end
