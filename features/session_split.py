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
from numba import njit

from features.arrays import empty
from features.time_grid import ONE_US, US_PER_HOUR, check_resolution
from forecasting.errors import ConfigError, SchemaError

Allocation = Literal["uniform", "front_loaded"]
ALLOCATIONS: Final[tuple[str, ...]] = ("uniform", "front_loaded")


def _hours(duration: pl.Expr) -> pl.Expr:
    return duration.dt.total_microseconds().cast(pl.Float64) / US_PER_HOUR


def _charge_end(schema: pl.Schema, *, allocation: Allocation, rated: pl.Expr) -> pl.Expr:
    """End of the window over which a session's energy is spread (within plug-in window).

    ``rated`` is the charger power [kW] of sessions without ``max_power_kw``.
    """
    plug_in, plug_out = pl.col("plug_in_at"), pl.col("plug_out_at")
    if allocation == "uniform":
        return plug_out
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


def _check_columns(schema: pl.Schema) -> None:
    needed = ["site_id", "session_id", "plug_in_at", "plug_out_at", "energy_kwh"]
    missing = [c for c in needed if c not in schema]
    if missing:
        msg = (
            f"sessions frame is missing columns {missing!r}; available: {schema.names()!r}. "
            "read sessions with forecasting.ingest.sessions.read_sessions"
        )
        raise SchemaError(msg)


def check_session_times(
    sessions: pl.DataFrame | pl.LazyFrame,
    plug_in: np.ndarray,
    plug_out: np.ndarray,
    *,
    rows: np.ndarray | None = None,
) -> None:
    """Raise :class:`SchemaError` naming the first session that ends before it starts.

    ``plug_in`` and ``plug_out`` [us since epoch] are per row of ``sessions``; only the rows
    where ``rows`` (bool) is true are checked (default: all).
    """
    wrong = plug_out < plug_in
    if rows is not None:
        wrong &= rows
    backwards = np.flatnonzero(wrong)
    if backwards.size:
        row = sessions.lazy().slice(int(backwards[0]), 1).collect().row(0, named=True)
        msg = (
            f"session {row['session_id']!r} of site {row['site_id']!r} ends before it starts: "
            f"plug_in_at={row['plug_in_at']!r}, plug_out_at={row['plug_out_at']!r} "
            f"({backwards.size} such rows); ingest quarantines these, read sessions through it"
        )
        raise SchemaError(msg)


def session_time_columns(
    schema: pl.Schema, *, allocation: Allocation = "uniform", rated_kw: pl.Expr | None = None
) -> list[pl.Expr]:
    """Expressions of the columns :func:`compute_session_times` returns, for a select.

    ``plug_in``, ``plug_out``, ``charge`` [us since epoch, UTC] and ``energy`` [kWh] per
    session; ``rated_kw`` is the charger power [kW] of sessions without ``max_power_kw``
    (front-loaded only; default none). Raises :class:`ConfigError` for an unknown
    ``allocation`` and :class:`SchemaError` for a missing column.
    """
    if allocation not in ALLOCATIONS:
        msg = f"allocation {allocation!r} is not one of {ALLOCATIONS!r}"
        raise ConfigError(msg)
    _check_columns(schema)
    rated = pl.lit(None, dtype=pl.Float64) if rated_kw is None else rated_kw
    charge_end = _charge_end(schema, allocation=allocation, rated=rated)
    return [
        pl.col("plug_in_at").dt.epoch("us").alias("plug_in"),
        pl.col("plug_out_at").dt.epoch("us").alias("plug_out"),
        charge_end.dt.epoch("us").alias("charge"),
        pl.col("energy_kwh").cast(pl.Float64).alias("energy"),
    ]


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
    rated = pl.lit(charger_power_kw, dtype=pl.Float64)
    columns = session_time_columns(sessions.schema, allocation=allocation, rated_kw=rated)
    times = sessions.select(columns)
    arrays = {name: times[name].to_numpy() for name in times.columns}
    check_session_times(sessions, arrays["plug_in"], arrays["plug_out"])
    return arrays


def split_at_intervals(
    times: dict[str, np.ndarray],
    *,
    step_us: int,
    occupancy: bool = True,
    spans: tuple[np.ndarray, np.ndarray] | None = None,
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
    spans
        Per session, its first interval [-] (numbered from the epoch) and how many intervals
        to split it into (0 leaves it out), when already known; default: every interval its
        plug-in window overlaps.

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
    if spans is not None:
        first, counts = spans
    else:
        first = plug_in // step_us
        counts = np.maximum(plug_out - 1, plug_in) // step_us - first + 1
    size = int(counts.sum())
    parts = {
        "row": empty(size, np.int64),
        "start": empty(size, np.int64),
        "energy": empty(size),
        "arrival": empty(size, np.bool_),
        "known_at": empty(size, np.int64),
        "occupied": empty(size if occupancy else 0),
    }
    _split(
        plug_in, plug_out, charge, energy, first, counts, step_us,
        parts["row"], parts["start"], parts["known_at"], parts["energy"], parts["arrival"],
        parts["occupied"],
    )  # fmt: skip
    if not occupancy:
        del parts["occupied"]
    return parts


@njit(cache=True, nogil=True, inline="always")
def _energy_share(  # noqa: PLR0917 - one session and one interval, for numba
    plug_in: int, charge: int, energy: float, start: int, step_us: int, first: bool
) -> float:
    """Energy [kWh] a session puts in the interval from ``start`` [us] (see module docstring).

    ``first``: the interval is the session's plug-in interval.
    """
    window_us = float(charge - plug_in)  # allocation window
    if window_us <= 0:  # no allocation window: all energy in the plug-in interval
        return energy if first else 0.0
    begin = max(plug_in, start)
    return energy * float(max(min(charge, start + step_us) - begin, 0)) / window_us


@njit(cache=True, nogil=True, inline="always")
def _plugged_share(plug_in: int, plug_out: int, start: int, step_us: int) -> float:
    """Share [-] of the interval from ``start`` [us] that the car was plugged in."""
    return max(min(plug_out, start + step_us) - max(plug_in, start), 0) / step_us


@njit(cache=True, nogil=True)
def _split(  # noqa: PLR0917 - the session arrays and the outputs, for numba
    plug_in: np.ndarray,
    plug_out: np.ndarray,
    charge: np.ndarray,
    energy: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    step_us: int,
    row: np.ndarray,
    start: np.ndarray,
    known_at: np.ndarray,
    spread: np.ndarray,
    arrival: np.ndarray,
    occupied: np.ndarray,
) -> None:
    """Split the sessions into the outputs: the loop of :func:`split_at_intervals`.

    Session ``q`` has ``counts[q]`` contributions (0: left out) from interval ``first[q]``;
    per contribution its session row, interval start [us], the session's plug-out [us],
    energy [kWh], arrival flag and (if ``occupied`` is not empty) plugged-in share [-].
    """
    occupancy = occupied.size > 0
    k = 0
    for q in range(plug_in.size):
        for m in range(counts[q]):
            row[k] = q
            start[k] = (first[q] + m) * step_us
            known_at[k] = plug_out[q]
            arrival[k] = m == 0
            if occupancy:
                occupied[k] = _plugged_share(plug_in[q], plug_out[q], start[k], step_us)
            spread[k] = _energy_share(plug_in[q], charge[q], energy[q], start[k], step_us, m == 0)
            k += 1


def sum_on_grids(
    times: dict[str, np.ndarray],
    *,
    site: np.ndarray,
    step_us: int,
    origin: np.ndarray,
    length: np.ndarray,
) -> np.ndarray:
    """Sum the sessions' contributions per site and interval, without listing them.

    What :func:`split_at_intervals` lists, summed: the same values added in the same order
    (session after session, each in time order).

    Parameters
    ----------
    times
        Per session, the arrays of :func:`compute_session_times`.
    site
        Per session, its site number.
    step_us
        Interval length [us].
    origin, length
        Per site, the first interval of its grid [-] (numbered from the epoch) and the
        number of intervals; the grids are laid end to end in site order. Contributions off
        their site's grid are left out.

    Returns
    -------
    numpy.ndarray
        Shape ``(3, length.sum())``: energy [kWh], occupied connectors [-] and arrivals [-]
        per interval.
    """
    plug_in = times["plug_in"]
    first = plug_in // step_us  # numpy divides by one number fast (libdivide), numba does not
    counts = np.maximum(times["plug_out"] - 1, plug_in) // step_us - first + 1
    sums = empty((3, int(length.sum())))
    sums.fill(0.0)
    _sum_sessions(
        plug_in, times["plug_out"], times["charge"], times["energy"], first, counts,
        step_us, site, origin, length, sums,
    )  # fmt: skip
    return sums


@njit(cache=True, nogil=True)
def _sum_sessions(  # noqa: PLR0917 - the session arrays, the grids and the output, for numba
    plug_in: np.ndarray,
    plug_out: np.ndarray,
    charge: np.ndarray,
    energy: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    step_us: int,
    site: np.ndarray,
    origin: np.ndarray,
    length: np.ndarray,
    sums: np.ndarray,
) -> None:
    """Add each session's contributions into ``sums``: the loop of :func:`sum_on_grids`."""
    offset = np.cumsum(length) - length
    for q in range(plug_in.size):
        s = site[q]
        for m in range(counts[q]):
            at = first[q] + m - origin[s]
            if 0 <= at < length[s]:
                start = (first[q] + m) * step_us
                cell = offset[s] + at
                sums[0, cell] += _energy_share(
                    plug_in[q], charge[q], energy[q], start, step_us, m == 0
                )
                sums[1, cell] += _plugged_share(plug_in[q], plug_out[q], start, step_us)
                sums[2, cell] += m == 0
