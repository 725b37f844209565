"""Load generation: `wrk` for throughput, a one-connection Python client for latency.

Throughput comes from `wrk` (C, one event-loop thread): at the few thousand requests per second
one uvicorn worker serves, it needs a small fraction of a core, so it does not starve the server
the way a Python load generator on the same 2 cores would. A generated Lua script cycles through
a list of prepared requests (ids, ETags, bodies) and reports percentiles and status counts as
JSON. Latency comes from sequential requests on one keep-alive connection (stdlib http.client),
which is as close to server time as a client gets: no queueing behind other requests.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(frozen=True)
class Throughput:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    statuses: dict[str, int]
    errors: int


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    count: int
    batch_p99_ms: list[float]  # the p99 of each batch: how much other load moved the tail


LUA = r"""
local specs = %(specs)s
local prepared = {}
local counter = 0
local threads = {}
statuses = {}

function setup(thread) table.insert(threads, thread) end

function init(args)
  for i, s in ipairs(specs) do prepared[i] = wrk.format(s[1], s[2], s[3], s[4]) end
end

function request()
  counter = counter + 1
  return prepared[(counter - 1) %% #prepared + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local codes = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do codes[tostring(k)] = (codes[tostring(k)] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(codes) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%.1f, "p99_us": %%.1f, ' ..
    '"errors": %%d, "statuses": {%%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def _lua_specs(requests: list[Request]) -> str:
    rows = []
    for r in requests:
        headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in r.headers.items())
        body = _lua_string(r.body) if r.body is not None else "nil"
        rows.append(f"{{{_lua_string(r.method)}, {_lua_string(r.path)}, {{{headers}}}, {body}}}")
    return "{\n" + ",\n".join(rows) + "\n}"


def run_wrk(port: int, requests: list[Request], seconds: int, connections: int) -> Throughput:
    """Drive `requests` round-robin for `seconds` over `connections` keep-alive connections."""
    with tempfile.TemporaryDirectory(prefix="tp-wrk-") as tmp:
        script = Path(tmp) / "scenario.lua"
        script.write_text(LUA % {"specs": _lua_specs(requests)})
        command = [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(script), f"http://127.0.0.1:{port}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return Throughput(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        statuses=data["statuses"],
        errors=data["errors"],
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def sequential(
    port: int, requests: list[Request], count: int, batches: int = 1, expect: int = 200
) -> Latency:
    """`batches` x `count` requests one after another on one connection; percentiles of all."""
    timings = [_timed(port, requests, count, expect) for _ in range(batches)]
    pooled = [t for batch in timings for t in batch]
    return Latency(
        percentile(pooled, 50),
        percentile(pooled, 99),
        len(pooled),
        [percentile(batch, 99) for batch in timings],
    )


def _timed(port: int, requests: list[Request], count: int, expect: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings: list[float] = []
    try:
        for i in range(count):
            r = requests[i % len(requests)]
            started = time.perf_counter()
            conn.request(r.method, r.path, body=r.body, headers=r.headers)
            response = conn.getresponse()
            response.read()
            timings.append((time.perf_counter() - started) * 1000)
            if response.status != expect:
                raise RuntimeError(f"{r.method} {r.path} answered {response.status}, not {expect}")
    finally:
        conn.close()
    return timings
