"""Factories for small inline session frames and a test site (Perth, Scotland)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from forecasting.config import ChargerGroup, SiteConfig
from forecasting.schemas import SESSIONS_SCHEMA, conform

T0 = datetime(2018, 3, 1, tzinfo=UTC)
"""Origin of the synthetic sessions (a Thursday)."""


def make_sessions(
    rows: list[tuple[datetime, datetime, float]],
    *,
    site_id: str = "broxden",
    max_power_kw: list[float | None] | None = None,
    charging_done_at: list[datetime | None] | None = None,
) -> pl.DataFrame:
    """Sessions in SESSIONS_SCHEMA from (plug_in_at, plug_out_at, energy_kwh) tuples."""
    n = len(rows)
    frame = pl.DataFrame(
        {
            "site_id": [site_id] * n,
            "station_id": ["cp1"] * n,
            "connector_id": ["1"] * n,
            "session_id": [f"s{i}" for i in range(n)],
            "plug_in_at": [r[0] for r in rows],
            "plug_out_at": [r[1] for r in rows],
            "charging_done_at": charging_done_at or [None] * n,
            "energy_kwh": [float(r[2]) for r in rows],
            "max_power_kw": max_power_kw or [None] * n,
            "source": [f"test.csv:{i + 1}" for i in range(n)],
            "ingested_at": [T0] * n,
        },
        schema_overrides={
            "plug_in_at": SESSIONS_SCHEMA["plug_in_at"],
            "plug_out_at": SESSIONS_SCHEMA["plug_out_at"],
            "charging_done_at": SESSIONS_SCHEMA["charging_done_at"],
            "max_power_kw": pl.Float64,
        },
    )
    return conform(frame, SESSIONS_SCHEMA)


def at(hours: float) -> datetime:
    """T0 plus ``hours``."""
    return T0 + timedelta(hours=hours)


@pytest.fixture(scope="session")
def site() -> SiteConfig:
    """A frozen (immutable) site config, so one instance serves every test."""
    return SiteConfig(
        site_id="broxden",
        name="Broxden Park & Ride, Perth",
        latitude=56.38661,
        longitude=-3.4777461,
        altitude_m=40,
        timezone="Europe/London",
        country="GB",
        subdivision="SCT",
        chargers=(
            ChargerGroup(model="rapid", power_kw=50, connectors=2, simultaneous=1),
            ChargerGroup(model="fast", power_kw=22, connectors=2),
        ),
    )
