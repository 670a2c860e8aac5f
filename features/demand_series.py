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

from features.arrays import empty
from features.outages import mark_outages
from features.session_split import (
    Allocation,
    compute_contribution_arrays,
    compute_session_times,
    sum_on_grids,
)
from features.site_numbers import compute_site_codes
from features.time_grid import ONE_US, check_resolution, compute_epoch_us
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
    check_resolution(resolution)
    frame = sessions.collect() if isinstance(sessions, pl.LazyFrame) else sessions
    times = compute_session_times(frame, allocation=allocation, charger_power_kw=charger_power_kw)
    if frame.is_empty():
        return pl.DataFrame(schema=DEMAND_SERIES_SCHEMA)
    names, site = compute_site_codes(frame["site_id"])
    ids = pl.Series("site_id", names, dtype=pl.String)
    step_us = resolution // ONE_US
    # each site's first and last interval [-], numbered from the epoch
    first = times["plug_in"] // step_us
    last = np.maximum(times["plug_out"] - 1, times["plug_in"]) // step_us
    first, last = _site_spans(site, np.arange(site.size), first, last, ids.len())
    first_us, length = _grid_bounds(first * step_us, last * step_us, step_us, start, end)
    sums = sum_on_grids(
        times, site=site, step_us=step_us, origin=first_us // step_us, length=length
    )
    return _series_frame(ids, first_us, length, sums, resolution=resolution)


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
    names, site = compute_site_codes(frame["site_id"])
    ids = pl.Series("site_id", names, dtype=pl.String)
    parts = {
        "row": np.arange(frame.height),
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
def _site_spans(
    site: np.ndarray, row: np.ndarray, low: np.ndarray, high: np.ndarray, sites: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per site: the smallest of ``low`` and the largest of ``high`` (extreme int64 if none).

    Entry ``k`` of ``low`` and ``high`` belongs to site ``site[row[k]]``.
    """
    first = np.full(sites, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(sites, np.iinfo(np.int64).min, dtype=np.int64)
    for k in range(row.size):
        s = site[row[k]]
        first[s] = min(first[s], low[k])
        last[s] = max(last[s], high[k])
    return first, last


@njit(cache=True, nogil=True)
def _sum_contributions(  # noqa: PLR0917 - contribution arrays and the grid, for numba
    site: np.ndarray,
    row: np.ndarray,
    interval: np.ndarray,
    energy: np.ndarray,
    occupied: np.ndarray,
    arrival: np.ndarray,
    first: np.ndarray,
    length: np.ndarray,
    sums: np.ndarray,
) -> None:
    """Add energy, occupancy and arrivals into the zeroed ``sums`` (3 rows), in order.

    Contribution ``k`` belongs to site ``site[row[k]]`` and interval ``interval[k]`` [-]
    (numbered from the epoch); site ``s``'s grid has ``length[s]`` intervals from
    ``first[s]`` and lies after the grids of the sites before it. Contributions off their
    site's grid are left out.
    """
    offset = np.cumsum(length) - length
    for k in range(row.size):
        s = site[row[k]]
        at = interval[k] - first[s]
        if 0 <= at < length[s]:
            sums[0, offset[s] + at] += energy[k]
            sums[1, offset[s] + at] += occupied[k]
            sums[2, offset[s] + at] += arrival[k]


@njit(cache=True, nogil=True)
def _grid_starts(first: np.ndarray, length: np.ndarray, step_us: int, out: np.ndarray) -> None:
    """Write the interval starts [us] of each site's grid, site after site, into ``out``."""
    row = 0
    for s in range(first.size):
        for k in range(length[s]):
            out[row] = first[s] + k * step_us
            row += 1


def _grid_bounds(
    first_us: np.ndarray,
    last_us: np.ndarray,
    step_us: int,
    start: datetime | None,
    end: datetime | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per site: start of its grid [us] and number of intervals.

    From its first to its last interval start (``first_us``, ``last_us``) unless ``start`` (on
    the grid at or before it) or ``end`` (exclusive) bound it.
    """
    if start is not None:
        first_us = np.full(first_us.size, compute_epoch_us(start) // step_us * step_us)
    end_us = np.full(first_us.size, compute_epoch_us(end)) if end is not None else last_us + step_us
    return first_us, np.maximum(0, -(-(end_us - first_us) // step_us))


def _sum_on_grid(
    site: np.ndarray,
    ids: pl.Series,
    parts: dict[str, np.ndarray],
    *,
    resolution: timedelta,
    start: datetime | None,
    end: datetime | None,
) -> pl.DataFrame:
    """Sum contributions (``start`` [us], ``energy``, ``occupied``, ``arrival``) per site.

    Contribution ``k`` belongs to site ``site[parts["row"][k]]`` (its number in ``ids``).
    """
    step_us = resolution // ONE_US
    starts = parts["start"]
    first, last = _site_spans(site, parts["row"], starts, starts, ids.len())
    first, length = _grid_bounds(first, last, step_us, start, end)
    # intervals numbered by numpy, which divides by one number fast (libdivide), numba not
    if (first % step_us == 0).all():  # grids on the epoch's grid: number from the epoch
        interval = np.floor_divide(starts, step_us, out=empty(starts.size, np.int64))
        origin = first // step_us
    else:  # contributions off the epoch's grid: number from each site's first one
        interval = (starts - first[site[parts["row"]]]) // step_us
        origin = np.zeros(first.size, dtype=np.int64)
    sums = empty((3, int(length.sum())))  # energy [kWh], occupied connectors [-], arrivals [-]
    sums.fill(0.0)
    _sum_contributions(
        site, parts["row"], interval, parts["energy"], parts["occupied"], parts["arrival"],
        origin, length, sums,
    )  # fmt: skip
    return _series_frame(ids, first, length, sums, resolution=resolution)


def _series_frame(
    ids: pl.Series,
    first_us: np.ndarray,
    length: np.ndarray,
    sums: np.ndarray,
    *,
    resolution: timedelta,
) -> pl.DataFrame:
    """Build the demand series frame of per-site grids (``sums``: energy, occupancy, arrivals)."""
    energy, occupied, arrivals = sums
    interval_start = empty(energy.size, np.int64)
    _grid_starts(first_us, length, resolution // ONE_US, interval_start)
    site_index = pl.Series(np.repeat(np.arange(ids.len(), dtype=np.uint32), length))
    return pl.DataFrame(
        [
            ids.gather(site_index).alias("site_id"),
            pl.Series("interval_start", interval_start).cast(pl.Datetime("us", "UTC")),
            pl.Series("energy_kwh", energy),
            pl.Series("power_kw", energy / (resolution / timedelta(hours=1))),
            pl.Series("occupied_connectors", occupied),
            pl.Series("arrivals", np.rint(arrivals, out=arrivals).astype(np.uint32)),
            pl.Series("is_missing", np.zeros(energy.size, dtype=bool)),
        ],
        schema=DEMAND_SERIES_SCHEMA,
    )
