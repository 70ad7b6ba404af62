-- wrk script for the llmos HTTP API benchmark: every request is
--   POST /v1/embeddings  {"model":"minilm","input":"<one sentence>"}
-- cycling through bench/sentences.txt (override with env SENTENCES; model with env MODEL).
-- Counts non-2xx responses (and 429s separately) across all threads and prints one
-- machine-readable RESULT line from done().
--
-- Usage: wrk -c 64 -t 2 -d 20s --latency -s bench/api/embeddings.lua http://127.0.0.1:PORT

local function json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"'
    elseif c == '\\' then return '\\\\'
    elseif c == '\n' then return '\\n'
    elseif c == '\r' then return '\\r'
    elseif c == '\t' then return '\\t'
    else return string.format('\\u%04x', c:byte()) end
  end)
  return '"' .. s .. '"'
end

local function script_dir()
  local src = debug.getinfo(1, "S").source
  return (src:sub(1, 1) == "@" and src:sub(2):match("(.*/)")) or "./"
end

local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("SENTENCES") or (script_dir() .. "../sentences.txt")
  local model = os.getenv("MODEL") or "minilm"
  bodies = {}
  for line in io.lines(path) do
    line = line:gsub("^%s+", ""):gsub("%s+$", "")
    if line ~= "" then
      bodies[#bodies + 1] = '{"model":' .. json_string(model) .. ',"input":' .. json_string(line) .. '}'
    end
  end
  assert(#bodies > 0, "no sentences in " .. path)
  -- threads start at different offsets so that together they cover the whole mix
  pos = ((id - 1) * math.floor(#bodies / 2)) % #bodies
  responses, non2xx, n429 = 0, 0, 0
  first_bad = ""
  wrk.method = "POST"
  wrk.path = "/v1/embeddings"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  pos = pos % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[pos])
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if status == 429 then n429 = n429 + 1 end
    if first_bad == "" then first_bad = status .. " " .. body:sub(1, 200) end
  end
end

function done(summary, latency, requests)
  local resp, bad, busy, first = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    resp = resp + (t:get("responses") or 0)
    bad = bad + (t:get("non2xx") or 0)
    busy = busy + (t:get("n429") or 0)
    local f = t:get("first_bad") or ""
    if first == "" then first = f end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f " ..
    "responses=%d non2xx=%d n429=%d socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    resp, bad, busy, e.connect + e.read + e.write + e.timeout))
  if first ~= "" then io.write("FIRST_NON2XX " .. first .. "\n") end
end
