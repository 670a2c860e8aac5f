"""Fetch latency and throughput of the API on loopback under concurrent load.

Starts ``evcast serve --workers W`` (a real uvicorn server: uvloop + httptools, W = 1 and 2) on a
free loopback port over a fresh EVCAST_HOME holding one site with a published 48-hour,
15-minute forecast. One httpx fetch checks the body and its signature; the timed load then comes
from a lean asyncio HTTP/1.1 keep-alive client (pre-encoded request bytes, status line and
Content-Length parsed, body read, status checked) in its own process, with uvloop, so that the
load generator takes as little of the 2 cores from the server as it can. Every connection is
opened and used once before timing starts. Modes, per endpoint, against the same server:

- ``1 conn``: one connection, one request at a time: latency without queueing;
- ``100 conns closed``: each of 100 connections sends its next request as soon as the last is
  answered: throughput. Latency there is queueing (about 100 / throughput), whatever the server;
- ``100 conns open R/s``: 100 connections offering R requests/s in aggregate, each connection
  sending every 100 / R s, their start times staggered. Latency is measured from each request's
  SCHEDULED send time, so a stalled server (or client) cannot hide it (no coordinated omission).
  ``lag p99`` is how late the client itself sent (its timers have ~1 ms granularity): latencies
  include it. Rates above the closed-loop throughput are not offered (the queue only grows).

Endpoints: ``/healthz`` (trivial, the baseline of ``cpu x``), the 48-hour net-load forecast,
and in the first two modes the same forecast revalidated with If-None-Match (304) and the OCPP
schedule. ``cpu ms`` is the server's CPU time (all its processes) per request read from /proc,
the steadiest figure on a busy machine; ``gen ms`` the load generator's. Asserts nothing about
time; loopback only; every phase is bounded in time. ``wrk``, when installed, gives an optional
closed-loop cross-check.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from forecasting.api.auth import issue_token
from forecasting.api.signing import SIGNATURE_HEADER, verify_signature
from forecasting.config import load_sites
from forecasting.io.forecast_store import open_store, publish_run
from forecasting.publication.examples import build_example_run
from forecasting.publication.targets import build_publication

CONNECTIONS = 100
GOAL_P99_MS = 10.0
LATE_MS = 5.0  # a load generator sending this late (p99) [ms] says the machine was busy
OPEN_RATES = (100, 250, 500, 1000, 2000, 4000)  # aggregate offered requests/s
SERIAL_S = 1.5
CLOSED_S = 2.0
OPEN_MIN_S = 2.5
OPEN_MIN_REQUESTS = 1000  # so that p99.9 rests on at least a thousand requests
TIMEOUT_S = 30.0
SITE_ID = "bench-site"
SITES_TOML = f"""
[[sites]]
site_id = "{SITE_ID}"
name = "Bench"
latitude = 56.0
longitude = -3.0
timezone = "UTC"
grid_limit_kw = 200
other_load_kw = 20
"""
SIGNING_KEY = "bench-key"
SERIAL, CLOSED, OPEN = "1 conn", f"{CONNECTIONS} conns closed", f"{CONNECTIONS} conns open"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(folder: Path) -> str:
    """Write sites.toml, publish a 48-hour run issued this hour, return a token for it."""
    (folder / "configs").mkdir()
    (folder / "configs" / "sites.toml").write_text(SITES_TOML)
    site = load_sites(folder / "configs" / "sites.toml").sites[0]
    store = open_store(f"sqlite:///{folder / 'home' / 'forecasts.db'}")
    issued = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    run = build_example_run(SITE_ID, issued_at=issued, hours=48)
    publish_run(store, build_publication(run, site=site), created_at=issued)
    _, token = issue_token(store, sites=[SITE_ID], now=issued, expires_at=None)
    store.dispose()
    return token


def _start_server(folder: Path, port: int, *, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EVCAST_HOME": str(folder / "home"),
        "EVCAST_CONFIG_DIR": str(folder / "configs"),
        "EVCAST_SIGNING_KEY": SIGNING_KEY,
        "EVCAST_API_RATE_PER_S": "1000000",
        "EVCAST_API_BURST": "1000000",
    }
    command = [sys.executable, "-m", "forecasting", "serve", "--port", str(port)]
    server = subprocess.Popen([*command, "--workers", str(workers)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                time.sleep(1.0 if workers > 1 else 0.0)  # let every worker finish starting
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    msg = "server did not start within 60 s"
    raise RuntimeError(msg)


def _tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) used so far by process ``root`` and its children [s] (Linux)."""
    total, parents = 0.0, {root}
    for stat in sorted(Path("/proc").glob("[0-9]*/stat")):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.parent.name)
        if pid == root or int(fields[1]) in parents:
            parents.add(pid)
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _run_case(
    request: bytes, *, port: int, server: int, connections: int, rate: float, seconds: float
) -> dict[str, float]:
    """Run one load case in a client process; return latency percentiles [ms] and CPU [ms]."""
    spec = {
        "report": str(Path(tempfile.gettempdir()) / f"evcast-bench-api-{os.getpid()}.json"),
        "port": port,
        "request": request.decode("latin-1"),
        "connections": connections,
        "rate": rate,
        "seconds": seconds,
        "timeout": TIMEOUT_S,
    }
    client = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("loadgen.py")), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None
    assert client.stdout is not None
    if client.stdout.readline().strip() != "ready":
        msg = "the load generator did not connect"
        raise RuntimeError(msg)
    cpu_before = _tree_cpu_seconds(server)
    client.stdin.write("go\n")
    client.stdin.flush()
    if client.stdout.readline().strip() != "done":
        msg = "the load generator failed (its error is above)"
        raise RuntimeError(msg)
    report = json.loads(Path(spec["report"]).read_text())
    Path(spec["report"]).unlink()
    server_cpu = _tree_cpu_seconds(server) - cpu_before
    client.wait(timeout=TIMEOUT_S)
    latencies, lags = sorted(report["latencies"]), sorted(report["lags"])
    return {
        "n": len(latencies),
        "rps": len(latencies) / report["wall"],
        "p50": _percentile(latencies, 0.5) * 1000,
        "p99": _percentile(latencies, 0.99) * 1000,
        "p999": _percentile(latencies, 0.999) * 1000,
        "lag99": _percentile(lags, 0.99) * 1000,
        "cpu": server_cpu * 1000 / len(latencies),
        "gen": report["cpu"] * 1000 / len(latencies),
    }


def _check_forecast(base: str, token: str) -> dict[str, Any]:
    """One httpx fetch of the forecast: its size, intervals, ETag and a verified signature."""
    response = httpx.get(
        f"{base}/v1/sites/{SITE_ID}/forecast?target=net",
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    signed = verify_signature(
        response.content, response.headers.get(SIGNATURE_HEADER), key=SIGNING_KEY.encode()
    )
    if not signed:
        msg = "the forecast's signature does not verify"
        raise RuntimeError(msg)
    return {
        "kib": len(response.content) / 1024,
        "intervals": len(response.json()["intervals"]),
        "etag": response.headers["etag"],
    }


def _requests(port: int, token: str, etag: str) -> dict[str, bytes]:
    def get(path: str, *headers: str) -> bytes:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers, "", ""]
        return "\r\n".join(lines).encode("latin-1")

    auth = f"Authorization: Bearer {token}"
    forecast = f"/v1/sites/{SITE_ID}/forecast?target=net"
    return {
        "/healthz": get("/healthz"),
        "forecast 48 h": get(forecast, auth),
        "forecast 304": get(forecast, auth, f"If-None-Match: {etag}"),
        "schedule": get(f"/v1/sites/{SITE_ID}/schedule", auth),
    }


def _cases(requests: dict[str, bytes], run: Any) -> list[tuple[str, str, float, dict]]:
    """Measure every mode: (endpoint, mode, offered rate or 0, figures), in order."""
    rows = []
    for mode, connections, seconds in ((SERIAL, 1, SERIAL_S), (CLOSED, CONNECTIONS, CLOSED_S)):
        for label, request in requests.items():
            figures = run(request, connections=connections, rate=0.0, seconds=seconds)
            rows.append((label, mode, 0.0, figures))
    capacity = {label: f["rps"] for label, mode, _, f in rows if mode == CLOSED}
    for rate in OPEN_RATES:
        for label in ("/healthz", "forecast 48 h"):
            if rate > capacity[label]:  # beyond throughput the queue only grows
                continue
            seconds = max(OPEN_MIN_S, OPEN_MIN_REQUESTS / rate)
            figures = run(requests[label], connections=CONNECTIONS, rate=rate, seconds=seconds)
            rows.append((label, OPEN, float(rate), figures))
    return rows


def _wrk(port: int, token: str) -> str:
    """Closed-loop cross-check of the forecast with wrk (100 connections), when installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return "wrk not installed: no cross-check (apt-get install wrk)"
    url = f"http://127.0.0.1:{port}/v1/sites/{SITE_ID}/forecast?target=net"
    command = [wrk, "-t1", f"-c{CONNECTIONS}", "-d2s", "--latency"]
    output = subprocess.run(
        [*command, "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    ).stdout
    keep = ("Requests/sec", "50%", "99%", "Non-2xx")
    return "wrk, forecast, 100 conns closed: " + "; ".join(
        " ".join(line.split()) for line in output.splitlines() if line.strip().startswith(keep)
    )


def _measure(folder: Path, token: str, *, workers: int) -> tuple[list, dict[str, Any], str]:
    port = _free_port()
    server = _start_server(folder, port, workers=workers)
    try:
        check = _check_forecast(f"http://127.0.0.1:{port}", token)

        def run(request: bytes, **case: Any) -> dict[str, float]:
            return _run_case(request, port=port, server=server.pid, **case)

        rows = _cases(_requests(port, token, check["etag"]), run)
        cross_check = _wrk(port, token)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows, check, cross_check


def _stack() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("uvicorn", "uvloop", "httptools", "fastapi"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} missing")
    return ", ".join(parts)


def _print_rows(workers: int, rows: list[tuple[str, str, float, dict]]) -> None:
    base = {(mode, rate): f for label, mode, rate, f in rows if label == "/healthz"}
    for label, mode, rate, f in rows:
        offered = f"{rate:.0f}" if rate else "-"
        ratio = f["cpu"] / base[(mode, rate)]["cpu"] if (mode, rate) in base else float("nan")
        p999 = f"{f['p999']:8.2f}" if f["n"] >= OPEN_MIN_REQUESTS else f"{'-':>8}"
        lag = f"{f['lag99']:7.2f}" if mode == OPEN else f"{'-':>7}"
        print(
            f"{workers:>2} {label:14} {mode:>19} {offered:>7} {f['n']:6.0f} {f['rps']:7.0f} "
            f"{f['p50']:7.2f} {f['p99']:7.2f} {p999} {lag} {f['cpu']:7.3f} "
            f"{ratio:6.2f} {f['gen']:7.3f}"
        )


def _verdict(workers: int, rows: list[tuple[str, str, float, dict]]) -> str:
    """Say at which offered rates the goal (forecast p99 < 10 ms at 100 connections) was met."""
    forecast = [(mode, rate, f) for label, mode, rate, f in rows if label == "forecast 48 h"]
    closed = next(f for mode, _, f in forecast if mode == CLOSED)
    opened = [(rate, f) for mode, rate, f in forecast if mode == OPEN]
    met = [rate for rate, f in opened if f["p99"] < GOAL_P99_MS]
    missed = [
        f"{rate:.0f}" + (" (client late: machine busy)" if f["lag99"] > LATE_MS else "")
        for rate, f in opened
        if f["p99"] >= GOAL_P99_MS
    ]
    needed = CONNECTIONS / (GOAL_P99_MS / 1000)
    return (
        f"{workers} worker(s), open loop, {CONNECTIONS} connections: forecast p99 < "
        f"{GOAL_P99_MS:g} ms at {', '.join(f'{r:.0f}' for r in met) or 'no'} req/s offered "
        f"(largest {max(met, default=0):.0f}); not at {', '.join(missed) or 'none'}.\n"
        f"  closed loop: {closed['rps']:.0f} req/s, p99 {closed['p99']:.0f} ms: queueing "
        f"({CONNECTIONS} / {closed['rps']:.0f} req/s = {CONNECTIONS / closed['rps'] * 1000:.0f} ms)"
        f"; p99 < {GOAL_P99_MS:g} ms there needs more than {needed:,.0f} req/s."
    )


LEGEND = """\
columns: w worker processes; offered = aggregate open-loop rate [req/s]; n requests timed;
  req/s achieved; p50/p99/p99.9 latency [ms] (open loop: from each request's scheduled send
  time; p99.9 only where n >= 1000); lag p99 = how late the load generator itself sent [ms]
  (included in the latencies); cpu ms = server CPU time per request, all its processes;
  cpu x = cpu ms / that of /healthz in the same mode (what the forecast path costs);
  gen ms = the load generator's own CPU time per request (it shares the 2 cores)."""


def main() -> None:
    """Measure 1 and 2 workers and print one table and one verdict per worker count."""
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory(prefix="evcast-bench-api-") as name:
        token = _prepare(Path(name))
        for workers in (1, 2):
            results[workers] = _measure(Path(name), token, workers=workers)
    check = results[1][1]
    print(
        f"API on loopback, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} CPUs shared by "
        f"server and load generator; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other jobs raise it); {_stack()}; forecast body "
        f"{check['kib']:.1f} KiB ({check['intervals']} intervals), signature verified; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(
        f"{'w':>2} {'endpoint':14} {'load':>19} {'offered':>7} {'n':>6} {'req/s':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'lag p99':>7} {'cpu ms':>7} {'cpu x':>6} "
        f"{'gen ms':>7}"
    )
    for workers, (rows, _, _) in results.items():
        _print_rows(workers, rows)
    print(LEGEND)
    for workers, (rows, _, cross_check) in results.items():
        print(_verdict(workers, rows))
        print(f"  {cross_check}")


if __name__ == "__main__":
    main()
