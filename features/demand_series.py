"""Demand series per site on a complete UTC interval grid, built from charging sessions.

A session contributes to every interval its plug-in window ``[plug_in_at, plug_out_at)``
overlaps. The contributions (one row per session and interval) are the shared building block:
the demand series is their sum, and the lag features subtract the contributions of sessions
not yet known at an issue time (see :mod:`features.lags`).

Energy allocation
-----------------
``uniform``
    The session's energy is spread evenly over ``[plug_in_at, plug_out_at)``, split exactly at
    interval boundaries.
``front_loaded``
    The car draws from plug-in until its energy is delivered: over
    ``[plug_in_at, charging_done_at)`` when ``charging_done_at`` is known (capped at plug-out),
    otherwise at the charging power ``max(rated, energy / plugged-in duration)`` where ``rated``
    is the session's ``max_power_kw`` or else ``charger_power_kw``. Without a rated power this
    falls back to uniform.

A session whose allocation window is empty (zero duration, or energy <= 0) puts all its energy
in the interval of its plug-in, so the sum over the grid always equals the sessions' energy.

Outages (long silences at busy sites) are marked by :func:`mark_outages`, defined in
:mod:`features.outages` and re-exported here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

import numpy as np
import polars as pl

from features.outages import mark_outages
from forecasting.errors import ConfigError, SchemaError
from forecasting.schemas import DEMAND_SERIES_SCHEMA

__all__ = [
    "ALLOCATIONS",
    "CONTRIBUTION_COLUMNS",
    "Allocation",
    "build_demand_series",
    "build_series_from_contributions",
    "build_session_contributions",
    "check_resolution",
    "compute_contribution_arrays",
    "compute_session_times",
    "mark_outages",
    "split_at_intervals",
]

Allocation = Literal["uniform", "front_loaded"]
ALLOCATIONS: Final[tuple[str, ...]] = ("uniform", "front_loaded")

_US_PER_HOUR: Final = 3.6e9
_ONE_US: Final = timedelta(microseconds=1)

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


def check_resolution(resolution: timedelta) -> None:
    """Raise :class:`ConfigError` unless ``resolution`` is positive and divides one day."""
    day_us = 86_400_000_000
    res_us = resolution // _ONE_US
    if res_us <= 0 or day_us % res_us:
        msg = (
            f"resolution {resolution!r} must be positive and divide one day evenly; "
            "use e.g. timedelta(minutes=15) or timedelta(hours=1)"
        )
        raise ConfigError(msg)


def _hours(duration: pl.Expr) -> pl.Expr:
    return duration.dt.total_microseconds().cast(pl.Float64) / _US_PER_HOUR


def _charge_end(
    schema: pl.Schema, *, allocation: Allocation, charger_power_kw: float | None
) -> pl.Expr:
    """End of the window over which a session's energy is spread (within plug-in window)."""
    plug_in, plug_out = pl.col("plug_in_at"), pl.col("plug_out_at")
    if allocation == "uniform":
        return plug_out
    rated = pl.lit(charger_power_kw, dtype=pl.Float64)
    if "max_power_kw" in schema:
        rated = pl.coalesce(pl.col("max_power_kw"), rated)
    energy = pl.col("energy_kwh")
    power = pl.max_horizontal(rated, energy / _hours(plug_out - plug_in))
    charge_us = (energy / power * _US_PER_HOUR).fill_nan(0.0).clip(0.0).round()
    by_power = plug_in + pl.duration(microseconds=charge_us.cast(pl.Int64, strict=False))
    by_power = pl.min_horizontal(pl.coalesce(by_power, plug_out), plug_out)
    if "charging_done_at" not in schema:
        return by_power
    done = pl.col("charging_done_at")
    return pl.when(done > plug_in).then(pl.min_horizontal(done, plug_out)).otherwise(by_power)


def _check_sessions(frame: pl.DataFrame) -> None:
    needed = ["site_id", "session_id", "plug_in_at", "plug_out_at", "energy_kwh"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        msg = (
            f"sessions frame is missing columns {missing!r}; available: {frame.columns!r}. "
            "read sessions with forecasting.ingest.sessions.read_sessions"
        )
        raise SchemaError(msg)
    backwards = frame.filter(pl.col("plug_out_at") < pl.col("plug_in_at"))
    if backwards.height:
        row = backwards.row(0, named=True)
        msg = (
            f"session {row['session_id']!r} of site {row['site_id']!r} ends before it starts: "
            f"plug_in_at={row['plug_in_at']!r}, plug_out_at={row['plug_out_at']!r} "
            f"({backwards.height} such rows); ingest quarantines these, read sessions through it"
        )
        raise SchemaError(msg)


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
        ``"uniform"`` or ``"front_loaded"`` (see the module docstring).
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


def compute_contribution_arrays(
    sessions: pl.DataFrame,
    *,
    resolution: timedelta,
    allocation: Allocation = "uniform",
    charger_power_kw: float | None = None,
) -> dict[str, np.ndarray]:
    """Array form of :func:`build_session_contributions` (same rules and checks).

    Returns
    -------
    dict
        Per (session, interval): ``row`` of the session in ``sessions``, ``start`` and
        ``known_at`` [us since epoch], ``energy`` [kWh], ``occupied`` [-], ``arrival`` (bool).
    """
    check_resolution(resolution)
    times = compute_session_times(
        sessions, allocation=allocation, charger_power_kw=charger_power_kw
    )
    return split_at_intervals(times, step_us=resolution // _ONE_US)


def compute_session_times(
    sessions: pl.DataFrame,
    *,
    allocation: Allocation = "uniform",
    charger_power_kw: float | None = None,
) -> dict[str, np.ndarray]:
    """Check ``sessions`` and return, per session, the arrays the interval split needs.

    Returns
    -------
    dict
        ``plug_in``, ``plug_out`` and ``charge`` (end of the allocation window, see the
        module docstring) [us since epoch], ``energy`` [kWh].
    """
    if allocation not in ALLOCATIONS:
        msg = f"allocation {allocation!r} is not one of {ALLOCATIONS!r}"
        raise ConfigError(msg)
    _check_sessions(sessions)
    charge_end = _charge_end(
        sessions.schema, allocation=allocation, charger_power_kw=charger_power_kw
    )
    times = sessions.select(
        pl.col("plug_in_at", "plug_out_at").dt.epoch("us"),
        charge_end.dt.epoch("us").alias("charge_end"),
        pl.col("energy_kwh").cast(pl.Float64),
    )
    names = ("plug_in", "plug_out", "charge", "energy")
    return {name: times[c].to_numpy() for name, c in zip(names, times.columns, strict=True)}


def split_at_intervals(
    times: dict[str, np.ndarray], *, step_us: int, occupancy: bool = True
) -> dict[str, np.ndarray]:
    """Per (session, interval): session row, interval start, energy, occupancy, arrival flag.

    ``times`` are :func:`compute_session_times` (or a subset of its rows); ``step_us`` is the
    interval length [us]. Intervals are aligned to the epoch (so to UTC midnight). Result as
    for :func:`compute_contribution_arrays`; without ``occupied`` unless ``occupancy``. A
    session's contributions are consecutive, in time order, its arrival first.
    """
    plug_in, plug_out, charge, energy = (
        times[key] for key in ("plug_in", "plug_out", "charge", "energy")
    )
    first = plug_in // step_us
    counts = np.maximum(plug_out - 1, plug_in) // step_us - first + 1
    row = np.repeat(np.arange(plug_in.size), counts)
    # in place where possible: fresh pages (page faults) cost more than the arithmetic here;
    # np.take is several times faster than np.repeat(values, counts) per session array
    offset = np.arange(row.size)
    offset -= np.take(np.cumsum(counts) - counts, row)
    arrival = offset == 0
    start = np.take(first, row)
    start += offset
    start *= step_us
    del offset
    begin = np.maximum(np.take(plug_in, row), start)
    end = start + step_us
    known_at = np.take(plug_out, row)
    occupied = None
    if occupancy:
        occupied = np.minimum(known_at, end) - begin
        occupied = np.maximum(occupied, 0, out=occupied) / step_us
    overlap = np.minimum(np.take(charge, row), end, out=end)
    overlap -= begin
    np.maximum(overlap, 0, out=overlap)
    charge_us = np.take(charge - plug_in, row).astype(np.float64)
    spread = np.take(energy, row)
    spread *= overlap
    del overlap, begin
    zero = charge_us <= 0  # no allocation window: all energy in the plug-in interval
    with np.errstate(invalid="ignore", divide="ignore"):
        spread /= charge_us
    spread[zero] = np.where(arrival[zero], np.take(energy, row[zero]), 0.0)
    parts = {"row": row, "start": start, "energy": spread, "arrival": arrival}
    parts["known_at"] = known_at
    if occupied is not None:
        parts["occupied"] = occupied
    return parts


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


def _epoch_us(value: datetime) -> int:
    return int(pl.Series([value]).cast(pl.Datetime("us", "UTC")).dt.epoch("us").item())


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
    step_us = resolution // _ONE_US
    starts = parts["start"]
    first = np.full(ids.len(), np.iinfo(np.int64).max)
    np.minimum.at(first, site, starts)
    last = np.full(ids.len(), np.iinfo(np.int64).min)
    np.maximum.at(last, site, starts)
    if start is not None:
        first[:] = _epoch_us(start) // step_us * step_us
    end_us = np.full(ids.len(), _epoch_us(end)) if end is not None else last + step_us
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
