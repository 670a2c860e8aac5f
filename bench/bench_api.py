"""Fetch latency and throughput of the API on loopback under concurrent load.

Starts ``evcast serve`` (a real uvicorn server, one process) on a free loopback port over a
fresh EVCAST_HOME holding one site with a published 48-hour, 15-minute forecast, then drives it
with an asyncio + httpx load generator in this process, in three modes (MODES), each bounded by
TIME_LIMIT_S and after a warm-up: one connection, one request at a time (latency without
queueing); CONCURRENCY connections in a closed loop (throughput; latency then is mostly
queueing, connections / throughput); CONCURRENCY connections each fetching once a second, as a
fleet of load balancers polling would (latency under concurrency below saturation). Each
connection is opened (one untimed request) before its timed requests, so latencies are of
fetches over kept-alive connections. Endpoints, in the same run against the same server:
``/healthz`` (trivial), the 48-hour forecast (net load), the same forecast revalidated with
If-None-Match (304), and the OCPP schedule.

Prints p50/p99 latency [ms], throughput [req/s] and the server's CPU time per request [ms]
(from /proc, so it does not depend on how busy the machine is) per endpoint, and each figure's
ratio to /healthz at the same concurrency.
Asserts nothing about time. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from forecasting.api.auth import issue_token
from forecasting.config import SiteConfig
from forecasting.io.forecast_store import open_store, publish_run
from forecasting.publication.examples import build_example_run
from forecasting.publication.targets import build_publication

CONCURRENCY = 100
REQUESTS = 2000
WARMUP = 200
SERIAL_REQUESTS = 200
PACED_REQUESTS = 800
TIME_LIMIT_S = 15.0
MODES = (  # label, connections, seconds between a connection's requests (None: closed loop), n
    ("1 conn", 1, None, SERIAL_REQUESTS),
    (f"{CONCURRENCY} conns, closed", CONCURRENCY, None, REQUESTS),
    (f"{CONCURRENCY} conns, 1/s each", CONCURRENCY, 1.0, PACED_REQUESTS),
)
SITE = SiteConfig(
    site_id="bench-site",
    name="Bench",
    latitude=56.0,
    longitude=-3.0,
    timezone="UTC",
    grid_limit_kw=200.0,
    other_load_kw=20.0,
)
SITES_TOML = """
[[sites]]
site_id = "bench-site"
name = "Bench"
latitude = 56.0
longitude = -3.0
timezone = "UTC"
grid_limit_kw = 200
other_load_kw = 20
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(folder: Path) -> str:
    (folder / "configs").mkdir()
    (folder / "configs" / "sites.toml").write_text(SITES_TOML)
    store = open_store(f"sqlite:///{folder / 'home' / 'forecasts.db'}")
    issued = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    run = build_example_run(SITE.site_id, issued_at=issued, hours=48)
    publish_run(store, build_publication(run, site=SITE), created_at=issued)
    _, token = issue_token(store, sites=[SITE.site_id], now=issued, expires_at=None)
    store.dispose()
    return token


def _start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EVCAST_HOME": str(folder / "home"),
        "EVCAST_CONFIG_DIR": str(folder / "configs"),
        "EVCAST_SIGNING_KEY": "bench-key",
        "EVCAST_API_RATE_PER_S": "1000000",
        "EVCAST_API_BURST": "1000000",
    }
    command = [sys.executable, "-m", "forecasting", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    msg = "server did not start within 60 s"
    raise RuntimeError(msg)


async def _load(
    url: str, headers: dict[str, str], count: int, *, concurrency: int, pace_s: float | None
) -> tuple[list[float], float]:
    """Send ``count`` GETs over ``concurrency`` connections; return latencies [s], wall [s].

    Closed loop when ``pace_s`` is None (each connection sends its next request as soon as the
    last is answered); else each connection starts a request every ``pace_s`` [s].
    """
    latencies: list[float] = []
    remaining = [count]
    started = time.perf_counter()

    async def worker(index: int) -> None:
        # one client per connection, as independent load balancers would each hold one
        async with httpx.AsyncClient(timeout=30) as client:
            await client.get(url, headers=headers)  # connect first: time fetches, not handshakes
            next_at = time.perf_counter() + (pace_s or 0.0) * index / concurrency
            while remaining[0] > 0 and time.perf_counter() - started < TIME_LIMIT_S:
                remaining[0] -= 1
                if pace_s is not None:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += pace_s
                sent = time.perf_counter()
                response = await client.get(url, headers=headers)
                latencies.append(time.perf_counter() - sent)
                if response.status_code not in (200, 304):
                    msg = f"{url} answered {response.status_code}: {response.text[:200]}"
                    raise RuntimeError(msg)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` [s], from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    url: str, headers: dict[str, str], *, mode: tuple[str, int, float | None, int], server_pid: int
) -> dict[str, float]:
    _, concurrency, pace_s, count = mode
    asyncio.run(_load(url, headers, WARMUP, concurrency=concurrency, pace_s=None))
    cpu_before = _cpu_seconds(server_pid)
    latencies, wall = asyncio.run(
        _load(url, headers, count, concurrency=concurrency, pace_s=pace_s)
    )
    server_cpu = _cpu_seconds(server_pid) - cpu_before
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        "rps": len(ordered) / wall,
        # includes the untimed connect request of each connection: at most 1 in 20 here
        "cpu_ms": server_cpu * 1000 / (len(ordered) + concurrency),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="evcast-bench-api-") as name:
        folder = Path(name)
        token = _prepare(folder)
        port = _free_port()
        server = _start_server(folder, port)
        try:
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {token}"}
            forecast = f"{base}/v1/sites/{SITE.site_id}/forecast?target=net"
            first = httpx.get(forecast, headers=auth)
            body_kb = len(first.content) / 1024
            intervals = len(first.json()["intervals"])
            cases = {
                "/healthz": (f"{base}/healthz", {}),
                "forecast 48 h (net)": (forecast, auth),
                "forecast, If-None-Match (304)": (
                    forecast,
                    {**auth, "If-None-Match": first.headers["etag"]},
                ),
                "schedule (OCPP)": (f"{base}/v1/sites/{SITE.site_id}/schedule", auth),
            }
            results = {
                (label, mode[0]): _measure(url, headers, mode=mode, server_pid=server.pid)
                for mode in MODES
                for label, (url, headers) in cases.items()
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        f"API on loopback: 1 uvicorn process; forecast body {body_kb:.1f} KiB "
        f"({intervals} intervals); {os.cpu_count()} CPUs shared with the load generator "
        f"(and, here, with other jobs: load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"{'endpoint':30} {'load':>20} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} "
        f"{'cpu ms':>7} {'p50 x':>6} {'p99 x':>6} {'rps x':>6} {'cpu x':>6}"
    )
    for (label, mode), r in results.items():
        base = results[("/healthz", mode)]
        print(
            f"{label:30} {mode:>20} {r['n']:5.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['rps']:7.0f} {r['cpu_ms']:7.3f} {r['p50_ms'] / base['p50_ms']:6.2f} "
            f"{r['p99_ms'] / base['p99_ms']:6.2f} {r['rps'] / base['rps']:6.2f} "
            f"{r['cpu_ms'] / base['cpu_ms']:6.2f}"
        )


if __name__ == "__main__":
    main()
