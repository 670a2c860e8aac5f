"""Small real pieces the registry, training, tracking and backtest tests share.

Import them as ``from tests.support import ...``; the MLflow store fixtures are in
``tests/conftest.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Self

import polars as pl

from forecasting.config import SiteConfig
from forecasting.schemas import SESSIONS_SCHEMA, conform

LAB_SITE = SiteConfig(site_id="lab", name="Lab", latitude=56.4, longitude=-3.4, timezone="UTC")
"""A site in UTC, so that site-local days are UTC days."""


def weekly_sessions(
    days: int, *, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
) -> pl.DataFrame:
    """Sessions of site ``lab``: two one-hour sessions a day whose energy repeats weekly [kWh]."""
    rows: list[dict[str, object]] = []
    for day in range(days):
        for hour, base in ((8, 10.0), (17, 4.0)):
            plug_in = start + timedelta(days=day, hours=hour)
            rows.append(
                {
                    "site_id": "lab",
                    "station_id": "s1",
                    "connector_id": "1",
                    "session_id": f"{day}-{hour}",
                    "plug_in_at": plug_in,
                    "plug_out_at": plug_in + timedelta(hours=1),
                    "energy_kwh": base + day % 7,
                    "source": f"synthetic.csv:{len(rows) + 1}",
                    "ingested_at": start,
                }
            )
    return conform(pl.DataFrame(rows), SESSIONS_SCHEMA)


class FlatForecaster:
    """A small real forecaster: one level for every interval.

    p50 is the mean hourly energy of the sessions plugged in during the 28 days before
    ``issued_at``, times ``scale`` [kWh]; p10 is 0 and p90 is three times p50.
    """

    name = "flat"
    window = timedelta(days=28)

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        weather: pl.DataFrame | None = None,
    ) -> Self:
        """Learn the level from the sessions of the last 28 days [kWh]."""
        recent = sessions.filter(pl.col("plug_in_at") >= issued_at - self.window)
        hours = self.window / timedelta(hours=1)
        self.level_ = float(recent["energy_kwh"].sum()) / hours * self.scale
        return self

    def predict(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        interval_starts: pl.Series,
        weather: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Return the level for every interval start [kWh]."""
        return pl.DataFrame({"interval_start": interval_starts}).with_columns(
            p10=pl.lit(0.0),
            p50=pl.lit(self.level_),
            p90=pl.lit(3 * self.level_),
            note=pl.lit(None, pl.String),
        )
