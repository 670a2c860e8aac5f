"""A synthetic but plausible forecast run, for demos, benchmarks and tests (pure).

Demand follows a daytime bump (peak mid-afternoon UTC), PV a clear-sky-like half sine from
06:00 to 18:00 UTC; quantiles are a fixed spread around the median. Nothing here is a model.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl

from forecasting.publication.contract import ForecastRun, ModelIdentity, TargetForecast
from forecasting.schemas import UTC_DATETIME


def _frame(starts: list[datetime], medians: list[float], spread: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "interval_start": starts,
            "p10": [max(m * (1 - spread), 0.0) for m in medians],
            "p50": medians,
            "p90": [m * (1 + spread) for m in medians],
        },
        schema={
            "interval_start": UTC_DATETIME,
            "p10": pl.Float64(),
            "p50": pl.Float64(),
            "p90": pl.Float64(),
        },
    )


def build_example_run(
    site_id: str,
    *,
    issued_at: datetime,
    hours: int = 48,
    resolution: timedelta = timedelta(minutes=15),
    pv_peak_kw: float | None = 40.0,
    demand_peak_kw: float = 60.0,
    scale: float = 1.0,
) -> ForecastRun:
    """Return a run of ``hours`` [h] starting at ``issued_at`` [UTC] on a ``resolution`` grid.

    ``pv_peak_kw`` [kW] (None: no PV target) and ``demand_peak_kw`` [kW] set the shapes;
    ``scale`` [-] multiplies demand, so two runs with different scales differ in content.
    """
    count = int(timedelta(hours=hours) / resolution)
    hours_per = resolution / timedelta(hours=1)
    starts = [issued_at + i * resolution for i in range(count)]
    day = [(s.hour + s.minute / 60) / 24 for s in starts]
    demand = [
        scale * demand_peak_kw * hours_per * (0.2 + 0.8 * math.exp(-(((d - 0.6) / 0.15) ** 2)))
        for d in day
    ]
    targets = {
        "demand": TargetForecast(
            _frame(starts, demand, 0.5), ModelIdentity("demand-lgbm", "3", "champion")
        )
    }
    if pv_peak_kw is not None:
        pv = [pv_peak_kw * hours_per * max(math.sin(math.pi * (d - 0.25) / 0.5), 0.0) for d in day]
        targets["pv"] = TargetForecast(
            _frame(starts, pv, 0.4), ModelIdentity("pv-pvwatts", "1", "champion")
        )
    return ForecastRun(
        site_id=site_id,
        issued_at=issued_at,
        data_cutoff=issued_at - resolution,
        resolution=resolution,
        targets=targets,
    )
