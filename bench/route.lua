-- wrk script for one llmos route, one sentence per request (bench/soak/run.sh runs one wrk
-- per route in parallel; bench/plugins/run.sh one route at a time). Configured by the
-- environment:
--   ROUTE    path, default /v1/embeddings (a KServe path /v2/... sends a BYTES tensor)
--   MODEL    the "model" of an OpenAI body, default minilm
--   INPUT    send this text in every request instead of cycling through the sentences
--   EXPECT   the status the route is designed to answer, default 200 (e.g. 502 for the
--            hostile plugin's route); any other status except 429 is an error
--   SENTENCES  the sentence file, default bench/sentences.txt
-- Prints one machine-readable RESULT line from done(); 429s (the designed back-pressure)
-- are counted apart from errors.
--
-- Usage: ROUTE=/v1/entities MODEL=pii-ner wrk -c 16 -t 1 -d 60s --latency -s bench/route.lua URL

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

local function body_for(route, model, text)
  if route:sub(1, 4) == "/v2/" then
    return '{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":[' ..
      json_string(text) .. ']}]}'
  end
  return '{"model":' .. json_string(model) .. ',"input":' .. json_string(text) .. '}'
end

function init(args)
  local route = os.getenv("ROUTE") or "/v1/embeddings"
  local model = os.getenv("MODEL") or "minilm"
  local fixed = os.getenv("INPUT")
  expect = tonumber(os.getenv("EXPECT") or "200")
  bodies = {}
  if fixed and fixed ~= "" then
    bodies[1] = body_for(route, model, fixed)
  else
    local path = os.getenv("SENTENCES") or (script_dir() .. "sentences.txt")
    for line in io.lines(path) do
      line = line:gsub("^%s+", ""):gsub("%s+$", "")
      if line ~= "" then bodies[#bodies + 1] = body_for(route, model, line) end
    end
  end
  assert(#bodies > 0, "no request bodies")
  pos = ((id - 1) * math.floor(#bodies / 2)) % #bodies
  responses, expected, n429, errors = 0, 0, 0, 0
  first_bad, first_expected = "", ""
  wrk.method = "POST"
  wrk.path = route
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  pos = pos % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[pos])
end

function response(status, headers, body)
  responses = responses + 1
  if status == expect then
    expected = expected + 1
    if expect ~= 200 and first_expected == "" then first_expected = status .. " " .. (body:sub(1, 300):gsub("%s+", " ")) end
  elseif status == 429 then
    n429 = n429 + 1
  else
    errors = errors + 1
    if first_bad == "" then first_bad = status .. " " .. (body:sub(1, 300):gsub("%s+", " ")) end
  end
end

function done(summary, latency, requests)
  local resp, ok, busy, bad, first, first_ok = 0, 0, 0, 0, "", ""
  for _, t in ipairs(threads) do
    resp = resp + (t:get("responses") or 0)
    ok = ok + (t:get("expected") or 0)
    busy = busy + (t:get("n429") or 0)
    bad = bad + (t:get("errors") or 0)
    local f = t:get("first_bad") or ""
    if first == "" then first = f end
    local g = t:get("first_expected") or ""
    if first_ok == "" then first_ok = g end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f " ..
    "responses=%d expected=%d n429=%d errors=%d socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    resp, ok, busy, bad, e.connect + e.read + e.write + e.timeout))
  if first ~= "" then io.write("FIRST_ERROR " .. first .. "\n") end
  if first_ok ~= "" then io.write("FIRST_DESIGNED " .. first_ok .. "\n") end
end
