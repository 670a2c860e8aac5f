"""Helpers of the API tests: sites, example runs, tokens, a live uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from forecasting.config import SiteConfig
from forecasting.io.forecast_store import publish_run
from forecasting.publication.contract import ForecastRun, TargetForecast
from forecasting.publication.examples import build_example_run
from forecasting.publication.targets import build_publication
from forecasting.settings import Settings

T0 = datetime(2024, 6, 1, tzinfo=UTC)
AppFactory = Callable[..., FastAPI]
SIGNING_KEY = "test-signing-key"
SITES = (
    SiteConfig(
        site_id="site-a",
        name="A",
        latitude=56.0,
        longitude=-3.0,
        timezone="UTC",
        grid_limit_kw=200.0,
        other_load_kw=20.0,
    ),
    SiteConfig(site_id="site-b", name="B", latitude=56.0, longitude=-3.0, timezone="UTC"),
    SiteConfig(
        site_id="site-c",
        name="C",
        latitude=56.0,
        longitude=-3.0,
        timezone="UTC",
        grid_limit_kw=50.0,
    ),
)


@dataclass
class Clock:
    """A settable clock [UTC] for the app."""

    now: datetime = field(default=T0 + timedelta(hours=1))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    """Everything a test needs: store, settings, tokens, clock."""

    store: Engine
    settings: Settings
    clock: Clock
    token_ab: str
    token_c: str
    token_expired: str
    run_a: str


def example_run(site_id: str, *, issued_at: datetime = T0, pv: bool = True) -> ForecastRun:
    run = build_example_run(site_id, issued_at=issued_at, hours=48, pv_peak_kw=40.0 if pv else None)
    if site_id == "site-c":  # a run whose PV forecast is a fallback
        pv_target = run.targets["pv"]
        targets = {
            **run.targets,
            "pv": TargetForecast(
                pv_target.frame, pv_target.model, "weather forecast missing: clear sky"
            ),
        }
        return ForecastRun(run.site_id, run.issued_at, run.data_cutoff, run.resolution, targets)
    return run


def publish_example(store: Engine, site_id: str, *, issued_at: datetime = T0) -> str:
    site = next(s for s in SITES if s.site_id == site_id)
    publication = build_publication(example_run(site_id, issued_at=issued_at), site=site)
    publish_run(store, publication, created_at=issued_at)
    return publication.run_id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_server(config: uvicorn.Config) -> Iterator[str]:
    """Run a real uvicorn server in a thread; yield its base URL; stop it on exit."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            msg = "uvicorn did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    scheme = "https" if config.ssl_certfile else "http"
    try:
        yield f"{scheme}://{config.host}:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
