"""Demand series per site on a complete UTC interval grid, built from charging sessions.

A session contributes to every interval its plug-in window ``[plug_in_at, plug_out_at)``
overlaps. The contributions (one row per session and interval, split by
:mod:`features.session_split`, which also states the energy allocation rules) are the shared
building block: the demand series is their sum, and the lag features subtract the
contributions of sessions not yet known at an issue time (see :mod:`features.lags`).
Intervals are labelled by their start [UTC] and aligned to the epoch, so to UTC midnight.

Outages (long silences at busy sites) are marked by :func:`mark_outages`, defined in
:mod:`features.outages` and re-exported here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import numpy as np
import polars as pl
from numba import njit

from features.outages import mark_outages
from features.session_split import Allocation, compute_contribution_arrays
from features.time_grid import ONE_US, compute_epoch_us
from forecasting.schemas import DEMAND_SERIES_SCHEMA

__all__ = [
    "CONTRIBUTION_COLUMNS",
    "build_demand_series",
    "build_series_from_contributions",
    "build_session_contributions",
    "mark_outages",
]

CONTRIBUTION_COLUMNS: Final[tuple[str, ...]] = (
    "site_id",
    "session_id",
    "interval_start",
    "energy_kwh",
    "occupied_connectors",
    "arrivals",
    "known_at",
)
"""Columns of :func:`build_session_contributions`."""


def build_session_contributions(
    sessions: pl.LazyFrame | pl.DataFrame,
    *,
    resolution: timedelta,
    allocation: Allocation = "uniform",
    charger_power_kw: float | None = None,
) -> pl.LazyFrame:
    """Split every session into its contributions to the intervals it overlaps.

    Parameters
    ----------
    sessions
        Sessions (``forecasting.schemas.SESSIONS_SCHEMA``); needs ``site_id``, ``session_id``,
        ``plug_in_at``, ``plug_out_at``, ``energy_kwh`` [kWh]; uses ``max_power_kw`` [kW] and
        ``charging_done_at`` when present.
    resolution
        Interval length; must divide one day.
    allocation
        ``"uniform"`` or ``"front_loaded"`` (see :mod:`features.session_split`).
    charger_power_kw
        Rated power [kW] for sessions without ``max_power_kw`` (front-loaded only).

    Returns
    -------
    polars.LazyFrame
        One row per (session, interval): ``site_id``, ``session_id``, ``interval_start``,
        ``energy_kwh`` [kWh] delivered in the interval, ``occupied_connectors`` [-] share of the
        interval the car was plugged in, ``arrivals`` [-] 1 in the plug-in interval, and
        ``known_at`` (the session's ``plug_out_at``: it is known at ``issued_at > known_at``).
    """
    frame = sessions.collect() if isinstance(sessions, pl.LazyFrame) else sessions
    parts = compute_contribution_arrays(
        frame, resolution=resolution, allocation=allocation, charger_power_kw=charger_power_kw
    )
    utc = pl.Datetime("us", "UTC")
    return (
        frame.select("site_id", "session_id")[parts["row"]]
        .with_columns(
            pl.Series("interval_start", parts["start"]).cast(utc),
            pl.Series("energy_kwh", parts["energy"], dtype=pl.Float64),
            pl.Series("occupied_connectors", parts["occupied"], dtype=pl.Float64),
            pl.Series("arrivals", parts["arrival"]).cast(pl.UInt32),
            pl.Series("known_at", parts["known_at"]).cast(utc),
        )
        .lazy()
    )


def build_demand_series(
    sessions: pl.LazyFrame | pl.DataFrame,
    *,
    resolution: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
    allocation: Allocation = "uniform",
    charger_power_kw: float | None = None,
) -> pl.DataFrame:
    """Build the demand series of every site in ``sessions`` on a complete interval grid.

    Parameters
    ----------
    sessions
        Sessions, as for :func:`build_session_contributions`.
    resolution
        Interval length (15 min, 1 h, ...); must divide one day.
    start, end
        Grid bounds [UTC]; intervals start in ``[start, end)``. Default: from the first
        plug-in interval to the last plugged-in interval of each site. Contributions outside
        the bounds are dropped.
    allocation, charger_power_kw
        As for :func:`build_session_contributions`.

    Returns
    -------
    polars.DataFrame
        ``DEMAND_SERIES_SCHEMA``, sorted by site and interval: ``energy_kwh`` [kWh],
        ``power_kw`` [kW] average over the interval, ``occupied_connectors`` [-] time-weighted,
        ``arrivals`` [-], ``is_missing`` (all false; see :func:`mark_outages`).
    """
    frame = sessions.collect() if isinstance(sessions, pl.LazyFrame) else sessions
    parts = compute_contribution_arrays(
        frame, resolution=resolution, allocation=allocation, charger_power_kw=charger_power_kw
    )
    if parts["row"].size == 0:
        return pl.DataFrame(schema=DEMAND_SERIES_SCHEMA)
    # site numbers per session, then per contribution: no per-contribution strings
    ids = frame["site_id"].unique().sort()
    site = frame["site_id"].cast(pl.Enum(ids)).to_physical().to_numpy().astype(np.int64)
    parts["arrival"] = parts["arrival"].astype(np.float64)
    return _sum_on_grid(
        np.take(site, parts["row"]), ids, parts, resolution=resolution, start=start, end=end
    )


def build_series_from_contributions(
    contributions: pl.LazyFrame | pl.DataFrame,
    *,
    resolution: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Sum :func:`build_session_contributions` onto a complete grid per site.

    Parameters and result as for :func:`build_demand_series`. Sums are dense, all sites laid
    end to end in one ``numpy.bincount``, which is several times faster than a polars group-by
    and join here.
    """
    frame = contributions.collect() if isinstance(contributions, pl.LazyFrame) else contributions
    if frame.is_empty():
        return pl.DataFrame(schema=DEMAND_SERIES_SCHEMA)
    ids = frame["site_id"].unique().sort()
    site = frame["site_id"].cast(pl.Enum(ids)).to_physical().to_numpy().astype(np.int64)
    parts = {
        "start": frame["interval_start"].dt.epoch("us").to_numpy(),
        **{
            key: frame[column].cast(pl.Float64).to_numpy()
            for key, column in (
                ("energy", "energy_kwh"),
                ("occupied", "occupied_connectors"),
                ("arrival", "arrivals"),
            )
        },
    }
    return _sum_on_grid(site, ids, parts, resolution=resolution, start=start, end=end)


@njit(cache=True, nogil=True)
def _site_spans(site: np.ndarray, starts: np.ndarray, sites: int) -> tuple[np.ndarray, np.ndarray]:
    """Per site: the earliest and latest contribution start [us] (extreme int64 if none)."""
    first = np.full(sites, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(sites, np.iinfo(np.int64).min, dtype=np.int64)
    for k in range(site.size):
        first[site[k]] = min(first[site[k]], starts[k])
        last[site[k]] = max(last[site[k]], starts[k])
    return first, last


def _sum_on_grid(
    site: np.ndarray,
    ids: pl.Series,
    parts: dict[str, np.ndarray],
    *,
    resolution: timedelta,
    start: datetime | None,
    end: datetime | None,
) -> pl.DataFrame:
    """Sum contributions (``start`` [us], ``energy``, ``occupied``, ``arrival``) per site."""
    step_us = resolution // ONE_US
    starts = parts["start"]
    first, last = _site_spans(site, starts, ids.len())
    if start is not None:
        first[:] = compute_epoch_us(start) // step_us * step_us
    end_us = np.full(ids.len(), compute_epoch_us(end)) if end is not None else last + step_us
    length = np.maximum(0, -(-(end_us - first) // step_us))
    offset = np.cumsum(length) - length
    index = (starts - first[site]) // step_us
    keep = (index >= 0) & (index < length[site])
    flat = (offset[site] + index)[keep]

    def total(key: str) -> np.ndarray:
        return np.bincount(flat, weights=parts[key][keep], minlength=int(length.sum()))

    row_site = np.repeat(np.arange(ids.len()), length)
    energy = total("energy")
    return pl.DataFrame(
        {
            "site_id": ids.gather(row_site),
            "interval_start": pl.Series(
                first[row_site] + (np.arange(row_site.size) - offset[row_site]) * step_us
            ).cast(pl.Datetime("us", "UTC")),
            "energy_kwh": energy,
            "power_kw": energy / (resolution / timedelta(hours=1)),
            "occupied_connectors": total("occupied"),
            "arrivals": total("arrival").round().astype(np.uint32),
            "is_missing": np.zeros(row_site.size, dtype=bool),
        },
        schema=DEMAND_SERIES_SCHEMA,
    )
