"""The load generator of ``bench/bench_api.py``: one load case, in its own process.

A lean asyncio HTTP/1.1 keep-alive client: each connection sends pre-encoded request bytes,
reads the status line and a Content-Length body, and checks the status (200 or 304). Closed
loop when the spec's ``rate`` is 0 (each connection sends again as soon as it is answered);
else open loop at ``rate`` requests/s in aggregate, start times staggered, and latency counted
from each request's *scheduled* send time, so a stall is not hidden (no coordinated omission).
It runs apart from the benchmark so that its own CPU is measured apart (it shares the cores
with the server), under uvloop when installed.

Protocol with the parent: ``python bench/loadgen.py SPEC_JSON`` opens and uses every
connection once, prints ``ready``, waits for a line on stdin, runs the case, writes the
latencies, send lags [s], wall and CPU time [s] to ``spec["report"]`` and prints ``done``.
Spec keys: port, request (latin-1 text), connections, rate [req/s], seconds, timeout [s],
report (path).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    writer.write(request)
    status = await _read_response(reader)
    if status not in (200, 304):
        msg = f"the server answered {status}"
        raise RuntimeError(msg)


class _Start:
    """Connections report when open; the timed phase starts for all of them at once."""

    def __init__(self, connections: int) -> None:
        self.waiting = connections
        self.all_open = asyncio.Event()
        self.go = asyncio.Event()
        self.t0 = 0.0

    async def opened(self) -> float:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_open.set()
        await self.go.wait()
        return self.t0


async def _connection(spec: dict[str, Any], index: int, start: _Start) -> tuple[list, list]:
    """Drive one keep-alive connection; return (latencies [s], send lags [s])."""
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
    request = spec["request"].encode("latin-1")
    await _exchange(reader, writer, request)  # opened and used before timing starts
    t0 = await start.opened()
    latencies, lags = [], []
    end = t0 + spec["seconds"]
    period = spec["connections"] / spec["rate"] if spec["rate"] else 0.0
    scheduled = t0 + index * period / spec["connections"]  # staggered start times
    while scheduled < end:
        if period:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent = time.perf_counter()
        await _exchange(reader, writer, request)
        done = time.perf_counter()
        latencies.append(done - (scheduled if period else sent))
        lags.append(sent - scheduled if period else 0.0)
        scheduled = scheduled + period if period else done
    writer.close()
    return latencies, lags


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    start = _Start(spec["connections"])
    tasks = [asyncio.create_task(_connection(spec, i, start)) for i in range(spec["connections"])]
    await asyncio.wait_for(start.all_open.wait(), timeout=spec["timeout"])
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time()
    start.t0 = time.perf_counter() + 0.02
    start.go.set()
    results = await asyncio.wait_for(
        asyncio.gather(*tasks), timeout=spec["seconds"] + spec["timeout"]
    )
    return {
        "latencies": [x for lat, _ in results for x in lat],
        "lags": [x for _, lag in results for x in lag],
        "wall": time.perf_counter() - start.t0,
        "cpu": time.process_time() - cpu,
    }


def client_main(spec_json: str) -> None:
    """Run one load case described by ``spec_json``: print ``ready``, wait for a line, run it,
    write the latencies to the report file and print ``done``.
    """
    spec = json.loads(spec_json)
    try:
        import uvloop  # optional: the plain asyncio loop works too

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    Path(spec["report"]).write_text(json.dumps(runner(_drive(spec))))
    print("done", flush=True)


if __name__ == "__main__":
    client_main(sys.argv[1])
