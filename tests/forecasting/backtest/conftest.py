"""Factories of the backtest tests: a London site and synthetic sessions in the canonical schema."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from forecasting.config import ChargerGroup, SiteConfig
from forecasting.schemas import SESSIONS_SCHEMA, conform

SessionsFactory = Callable[..., pl.DataFrame]


def build_sessions(
    site_id: str, rows: list[tuple[datetime, datetime, float]], *, prefix: str = "s"
) -> pl.DataFrame:
    """Sessions of one site from (plug_in_at, plug_out_at, energy_kwh) tuples."""
    return conform(
        pl.DataFrame(
            {
                "site_id": site_id,
                "station_id": "st",
                "connector_id": "1",
                "session_id": [f"{prefix}{i}" for i in range(len(rows))],
                "plug_in_at": [r[0] for r in rows],
                "plug_out_at": [r[1] for r in rows],
                "energy_kwh": [r[2] for r in rows],
                "source": "test",
                "ingested_at": datetime(2020, 1, 1, tzinfo=UTC),
            },
            schema_overrides={
                "plug_in_at": SESSIONS_SCHEMA["plug_in_at"],
                "plug_out_at": SESSIONS_SCHEMA["plug_out_at"],
            },
        ),
        SESSIONS_SCHEMA,
    )


def synthetic_rows(
    start: datetime, *, days: int, seed: int = 0
) -> list[tuple[datetime, datetime, float]]:
    """A busy day shape: 3-6 sessions a day around 08:00, 13:00 and 18:00 UTC, 1-3 h long."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        for hour in (8, 13, 18):
            for _ in range(int(rng.integers(1, 3))):
                plug_in = start + timedelta(days=day, hours=hour, minutes=int(rng.integers(0, 60)))
                duration = timedelta(minutes=int(rng.integers(60, 180)))
                rows.append((plug_in, plug_in + duration, float(rng.uniform(5.0, 25.0))))
    return rows


@pytest.fixture
def london_site() -> SiteConfig:
    """A configured-like Europe/London site with 2 x 22 kW connectors."""
    return SiteConfig(
        site_id="test-site",
        name="Test site",
        latitude=56.4,
        longitude=-3.5,
        timezone="Europe/London",
        country="GB",
        chargers=(ChargerGroup(model="AC", power_kw=22, connectors=2),),
    )


@pytest.fixture
def make_sessions() -> SessionsFactory:
    """``make_sessions(site_id, start, days, seed=0)``: synthetic sessions of one site."""

    def make(site_id: str, start: datetime, days: int, seed: int = 0) -> pl.DataFrame:
        return build_sessions(site_id, synthetic_rows(start, days=days, seed=seed))

    return make


@pytest.fixture
def sessions_from_rows() -> Callable[..., pl.DataFrame]:
    """``sessions_from_rows(site_id, [(plug_in_at, plug_out_at, energy_kwh), ...])``."""
    return build_sessions
