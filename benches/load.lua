-- wrk script for benches/load.sh. Two modes (arguments after `--`):
--   search QUERIES.jsonl : POST /v1/search with each query in turn (hybrid recall, no rerank, 10 hits with documents)
--   rerank BODY.json     : POST /v1/rerank with one fixed body (a query and its documents)
-- Prints one JSON line at the end: throughput, latency percentiles, errors by kind.
local bodies = {}
local path
local i = 0

function init(args)
  if args[1] == "search" then
    path = "/v1/search"
    for line in io.lines(args[2]) do
      local q = line:match('"text":%s*"(.-)"%s*[,}]')
      if q then table.insert(bodies, '{"query": "' .. q .. '", "rerank": false, "limit": 10}') end
    end
    i = math.random(#bodies)
  elseif args[1] == "rerank" then
    path = "/v1/rerank"
    local f = assert(io.open(args[2]))
    bodies[1] = f:read("*a")
    f:close()
  else
    error("mode: search QUERIES.jsonl | rerank BODY.json")
  end
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.2f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, ' ..
    '"non_2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.status, e.connect, e.read, e.write, e.timeout))
end
