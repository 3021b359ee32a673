-- wrk script for benchmarks/throughput.py. Settings come from the environment (done() runs in a Lua state of
-- its own that never sees init()'s arguments):
--   BENCH_RESULT    file to write the run's figures to (JSON)
--   BENCH_MODE      plain (wrk's static request) | capture (GET forms, keep their hidden fields) | post (send tips)
--   BENCH_CAPTURE   capture: file to write one line per served form: its hidden fields, name TAB value TAB ...
--   BENCH_CAPTURE_MAX  capture: keep at most this many forms
--   BENCH_FORMS     post: the file capture wrote; each form's hidden fields are sent once (tokens are single-use)
--   BENCH_BODY      post: the multipart body, NUL-separated into: head, [hidden fields], middle, [counter], tail
--   BENCH_BOUNDARY  post: the multipart boundary used in BENCH_BODY

local mode = os.getenv("BENCH_MODE") or "plain"
local threads = {}

statuses = {}
forms = {}
exhausted = false

function setup(thread)
   threads[#threads + 1] = thread
end

local function split(text, separator)
   local parts, start = {}, 1
   while true do
      local at = string.find(text, separator, start, true)
      if not at then
         parts[#parts + 1] = string.sub(text, start)
         return parts
      end
      parts[#parts + 1] = string.sub(text, start, at - 1)
      start = at + 1
   end
end

local function read_all(path)
   local handle = assert(io.open(path, "rb"))
   local text = handle:read("*a")
   handle:close()
   return text
end

local function unescape(value)
   return (value:gsub("&quot;", '"'):gsub("&#34;", '"'):gsub("&#39;", "'"):gsub("&lt;", "<"):gsub("&gt;", ">")
      :gsub("&amp;", "&"))
end

local capture_max = tonumber(os.getenv("BENCH_CAPTURE_MAX") or "0")
local body_parts, boundary, pending
local next_form, counter = 0, 0

if mode == "capture" then
   function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
      if status ~= 200 or #forms >= capture_max then
         return
      end
      local fields = {}
      for tag in string.gmatch(body, "<input[^>]*>") do
         if string.find(tag, 'type="hidden"', 1, true) then
            local name = string.match(tag, 'name="([^"]*)"')
            if name then
               fields[#fields + 1] = unescape(name)
               fields[#fields + 1] = unescape(string.match(tag, 'value="([^"]*)"') or "")
            end
         end
      end
      forms[#forms + 1] = table.concat(fields, "\t")
   end
elseif mode == "post" then
   -- Each form's hidden fields as multipart parts, built before the clock starts.
   local function hidden_parts(line)
      local items, out = split(line, "\t"), {}  -- "" gives {""}: no pairs
      for i = 1, #items - 1, 2 do
         out[#out + 1] = "--" .. boundary .. '\r\nContent-Disposition: form-data; name="' .. items[i]
            .. '"\r\n\r\n' .. items[i + 1] .. "\r\n"
      end
      return table.concat(out)
   end

   function init(args)
      body_parts = split(read_all(os.getenv("BENCH_BODY")), "\0")
      boundary = os.getenv("BENCH_BOUNDARY")
      pending = {}
      for line in string.gmatch(read_all(os.getenv("BENCH_FORMS")), "([^\n]*)\n") do
         pending[#pending + 1] = hidden_parts(line)
      end
      wrk.method = "POST"
      wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
   end

   function request()
      next_form = next_form + 1
      local hidden = pending[next_form]
      if hidden == nil then
         -- Out of single-use tokens: stop rather than replay one (a replay gets a decoy page, not a delivery).
         exhausted = true
         wrk.thread:stop()
         return wrk.format("GET", "/healthz", nil, "")
      end
      counter = counter + 1
      local body = body_parts[1] .. hidden .. body_parts[2] .. tostring(counter) .. body_parts[3]
      return wrk.format(nil, nil, nil, body)
   end

   function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local codes, captured, ran_out = {}, {}, false
   for _, thread in ipairs(threads) do
      for code, count in pairs(thread:get("statuses") or {}) do
         codes[#codes + 1] = string.format('"%d": %d', code, count)
      end
      for _, line in ipairs(thread:get("forms") or {}) do
         captured[#captured + 1] = line
      end
      ran_out = ran_out or thread:get("exhausted")
   end
   local capture_path = os.getenv("BENCH_CAPTURE")
   if mode == "capture" and capture_path then
      local handle = assert(io.open(capture_path, "wb"))
      for _, line in ipairs(captured) do
         handle:write(line, "\n")
      end
      handle:close()
   end
   local errors = summary.errors
   local handle = assert(io.open(os.getenv("BENCH_RESULT"), "w"))
   handle:write(string.format(
      '{"duration_us": %d, "requests": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
         .. '"mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"statuses": {%s}, "captured": %d, "exhausted": %s}\n',
      summary.duration, summary.requests, summary.bytes, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, errors.connect, errors.read, errors.write, errors.status,
      errors.timeout, table.concat(codes, ", "), #captured, tostring(ran_out)))
   handle:close()
end
