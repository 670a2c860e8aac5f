"""Charging sessions split into their contributions to the intervals of a UTC grid, as arrays.

A session contributes to every interval its plug-in window ``[plug_in_at, plug_out_at)``
overlaps: one contribution per (session, interval), with the energy [kWh] allocated to the
interval, the share of the interval the car was plugged in and whether the session arrived in
it. Intervals are aligned to the epoch (so to UTC midnight) and labelled by their start
(:mod:`features.time_grid`). The frame form of the contributions and the demand series they sum
to are in :mod:`features.demand_series`.

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
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final, Literal

import numpy as np
import polars as pl

from features.time_grid import ONE_US, US_PER_HOUR, check_resolution
from forecasting.errors import ConfigError, SchemaError

Allocation = Literal["uniform", "front_loaded"]
ALLOCATIONS: Final[tuple[str, ...]] = ("uniform", "front_loaded")


def _hours(duration: pl.Expr) -> pl.Expr:
    return duration.dt.total_microseconds().cast(pl.Float64) / US_PER_HOUR


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
    charge_us = (energy / power * US_PER_HOUR).fill_nan(0.0).clip(0.0).round()
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


def compute_contribution_arrays(
    sessions: pl.DataFrame,
    *,
    resolution: timedelta,
    allocation: Allocation = "uniform",
    charger_power_kw: float | None = None,
) -> dict[str, np.ndarray]:
    """Split ``sessions`` into their interval contributions, as arrays.

    The array form of :func:`features.demand_series.build_session_contributions` (same rules
    and checks).

    Parameters
    ----------
    sessions
        Sessions (``SESSIONS_SCHEMA``); needs ``site_id``, ``session_id``, ``plug_in_at``,
        ``plug_out_at``, ``energy_kwh`` [kWh]; uses ``max_power_kw`` [kW] and
        ``charging_done_at`` when present.
    resolution
        Interval length; must divide one day.
    allocation
        ``"uniform"`` or ``"front_loaded"`` (see the module docstring).
    charger_power_kw
        Rated power [kW] for sessions without ``max_power_kw`` (front-loaded only).

    Returns
    -------
    dict
        Per (session, interval), as :func:`split_at_intervals` returns them with occupancy:
        ``row`` of the session in ``sessions``, ``start`` (interval start) and ``known_at``
        (the session's ``plug_out_at``) [us since epoch], ``energy`` [kWh], ``occupied`` [-],
        ``arrival`` (bool).
    """
    check_resolution(resolution)
    times = compute_session_times(
        sessions, allocation=allocation, charger_power_kw=charger_power_kw
    )
    return split_at_intervals(times, step_us=resolution // ONE_US)


def compute_session_times(
    sessions: pl.DataFrame,
    *,
    allocation: Allocation = "uniform",
    charger_power_kw: float | None = None,
) -> dict[str, np.ndarray]:
    """Check ``sessions`` and return, per session, the arrays the interval split needs.

    Parameters
    ----------
    sessions
        Sessions, as for :func:`compute_contribution_arrays`.
    allocation
        ``"uniform"`` or ``"front_loaded"`` (see the module docstring).
    charger_power_kw
        Rated power [kW] for sessions without ``max_power_kw`` (front-loaded only).

    Returns
    -------
    dict
        Per session, in the order of ``sessions``: ``plug_in``, ``plug_out`` and ``charge``
        (end of the allocation window, see the module docstring) [us since epoch, UTC],
        ``energy`` [kWh].

    Raises
    ------
    ConfigError
        If ``allocation`` is unknown.
    SchemaError
        If a needed column is missing or a session ends before it starts.
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
    """Split sessions given as time arrays at the interval boundaries of the grid.

    Parameters
    ----------
    times
        Per session, the arrays of :func:`compute_session_times` (or a subset of its rows):
        ``plug_in``, ``plug_out``, ``charge`` [us since epoch, UTC], ``energy`` [kWh].
    step_us
        Interval length [us]; intervals are aligned to the epoch (so to UTC midnight).
    occupancy
        Whether to compute ``occupied`` (the lag features do not need it).

    Returns
    -------
    dict
        Per (session, interval it overlaps): ``row`` (position of the session in ``times``),
        ``start`` (interval start) and ``known_at`` (the session's ``plug_out``) [us since
        epoch], ``energy`` [kWh] allocated to the interval, ``arrival`` (bool, true in the
        plug-in interval) and, if ``occupancy``, ``occupied`` [-] share of the interval the
        car was plugged in. A session's contributions are consecutive, in time order, its
        arrival first.
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
