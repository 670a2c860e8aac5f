"""Lag and rolling features of the demand series, exactly as the series was known at issue time.

What a feature for issue time ``T`` may use
-------------------------------------------
Only intervals that ended at or before ``T`` and only sessions known at ``T``
(``plug_out_at < T``). The series "as known at T" is

    known_T(j) = full(j) - sum of contributions to j of sessions with plug_out_at >= T,

and those in-flight corrections are few (sessions plugged in across ``T``), so the features are
computed on the full series with cumulative sums and gathers, then corrected exactly, pair by
pair ``(T, j)``, without a Python loop over issue times. Several sites are computed in the
same pass, on one dense (site, interval) grid with a shared origin (the zeros before a site's
first session change no value), so there is no Python loop over sites either. The grid and the
corrections are built in :mod:`features.known_series`, the rolling and EWM statistics over it
in :mod:`features.known_windows`.

No feature looks further back than :data:`LOOKBACK` (the longest window plus 64 half-lives of
the EWM level), so sessions that ended earlier may be left out (``earlier``): the features are
then the same but for the rounding of sums and the EWM level's start (weight 2^-64).

Intervals before the first plug-in of any session known at ``T`` are "no history yet": lags
there are null and rolling windows are clipped to the known history (null when empty).

Features (all [kWh] per interval unless stated)
-----------------------------------------------
``lag_1d``, ``lag_2d``, ``lag_7d``
    The same interval 1, 2 and 7 days before the target interval, when it ended by ``T``.
``mean_24h``, ``mean_7d``, ``mean_28d``, ``max_24h``, ``max_7d``
    Mean and maximum over the window that ends at ``T``.
``ewm_24h``
    Exponentially weighted level with a half-life of 24 h, zero before the first session.
``hours_since_last_session`` [h]
    ``T`` minus the latest ``plug_out_at`` known at ``T`` (a long value hints at an outage).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import polars as pl

from features.known_series import (
    EarlierSessions,
    KnownSeries,
    SiteContributions,
    build_known_series,
)
from features.known_windows import compute_ewm_levels, compute_window_maxima, compute_window_means
from features.time_grid import ONE_US, US_PER_HOUR
from forecasting.errors import SchemaError

LAGS: Final[dict[str, timedelta]] = {
    "lag_1d": timedelta(days=1),
    "lag_2d": timedelta(days=2),
    "lag_7d": timedelta(days=7),
}
ROLLING_MEANS: Final[dict[str, timedelta]] = {
    "mean_24h": timedelta(hours=24),
    "mean_7d": timedelta(days=7),
    "mean_28d": timedelta(days=28),
}
ROLLING_MAXIMA: Final[dict[str, timedelta]] = {
    "max_24h": timedelta(hours=24),
    "max_7d": timedelta(days=7),
}
EWM_HALF_LIVES: Final[dict[str, timedelta]] = {"ewm_24h": timedelta(hours=24)}
SINCE_LAST: Final = "hours_since_last_session"

LAG_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    *LAGS,
    *ROLLING_MEANS,
    *ROLLING_MAXIMA,
    *EWM_HALF_LIVES,
    SINCE_LAST,
)
"""Columns added by :func:`add_lag_features`, in order."""

EWM_WARMUP_HALF_LIVES: Final = 64
"""Half-lives of data the EWM level sees before the longest window: older data weighs 2^-64."""
LOOKBACK: Final = max(*LAGS.values(), *ROLLING_MEANS.values(), *ROLLING_MAXIMA.values()) + (
    EWM_WARMUP_HALF_LIVES * max(EWM_HALF_LIVES.values())
)
"""How far before an issue time the features look: sessions that ended earlier than this may
be left out of the contributions (see :class:`features.known_series.EarlierSessions`)."""


def _to_us(values: pl.Series) -> np.ndarray:
    return values.dt.epoch("us").to_numpy().astype(np.int64)


_PairSums = tuple[np.ndarray, np.ndarray, int, np.ndarray]


def _pair_sums(known: KnownSeries) -> _PairSums:
    """Return the unique (cell, interval) keys of the corrections, their energy, the modulus.

    And per cell whether it has any correction.
    """
    modulus = known.full.shape[1] + 1
    keys, inverse = np.unique(known.pair_cell * modulus + known.pair_interval, return_inverse=True)
    corrected = np.zeros(known.ended.size, dtype=bool)
    corrected[known.pair_cell] = True
    sums = np.bincount(inverse, weights=known.pair_energy, minlength=keys.size)
    return keys, sums, modulus, corrected


def _lag_values(
    known: KnownSeries, rows: dict[str, np.ndarray], *, lag: int, pairs: _PairSums
) -> np.ndarray:
    """One lag column: ``full`` at ``target - lag`` where known, minus unknown sessions' energy.

    ``rows`` holds per row its ``cell``, ``target`` interval, ``flat`` position of the target
    in ``known.full``, its cell's ``history`` and ``ended`` and ``corrected`` flag; ``buffer``
    is scratch space of one int64 per row (few fresh arrays: page faults cost more than work).
    """
    # the interval target - lag is known when it ended by T and lies in the known history
    interval = np.subtract(rows["target"], lag, out=rows["buffer"])
    invalid = interval < rows["history"]
    invalid |= interval >= rows["ended"]
    if known.full.size == 0:
        return np.full(invalid.size, np.nan)
    position = np.subtract(rows["flat"], lag, out=rows["buffer"])
    # out-of-range positions are clipped (and then masked): no bounds check per row
    values = np.take(known.full.ravel(), position, mode="clip")
    values[invalid] = np.nan
    keys, sums, modulus, _corrected = pairs
    hit_rows = np.flatnonzero(~invalid & rows["corrected"])  # rows whose cell has corrections
    if hit_rows.size == 0:
        return values
    query = rows["cell"][hit_rows] * modulus + rows["target"][hit_rows] - lag
    position = np.clip(np.searchsorted(keys, query), 0, keys.size - 1)
    hit = keys[position] == query
    values[hit_rows[hit]] -= sums[position[hit]]
    return values


def _issue_level_features(known: KnownSeries, step: timedelta) -> dict[str, np.ndarray]:
    width = {name: window // step for name, window in {**ROLLING_MEANS, **ROLLING_MAXIMA}.items()}
    sites, n = known.full.shape
    cumulative = np.zeros((sites, n + 1))
    np.cumsum(known.full, axis=1, out=cumulative[:, 1:])
    features = {
        name: compute_window_means(known, cumulative=cumulative, width=width[name])
        for name in ROLLING_MEANS
    }
    features |= {name: compute_window_maxima(known, width=width[name]) for name in ROLLING_MAXIMA}
    features |= {
        name: compute_ewm_levels(known, half_life=max(1, half_life // step))
        for name, half_life in EWM_HALF_LIVES.items()
    }
    issues = np.tile(known.issues_us, known.full.shape[0])
    since = (issues - known.last_end_us) / US_PER_HOUR
    features[SINCE_LAST] = np.where(known.last_end_us < 0, np.nan, since)
    return features


def add_lag_features(
    frame: pl.DataFrame, *, contributions: pl.DataFrame, resolution: timedelta
) -> pl.DataFrame:
    """Add lag and rolling features of one site's demand as known at each row's ``issued_at``.

    Parameters
    ----------
    frame
        Target rows of one site: ``issued_at`` and ``interval_start`` (UTC, on the grid of
        ``resolution``).
    contributions
        That site's :func:`features.demand_series.build_session_contributions`, built from
        any sessions, including ones not known at some issue times: each row uses only
        intervals that ended at or before its ``issued_at`` and only sessions with
        ``plug_out_at < issued_at``.
    resolution
        Interval length of the grid.

    Returns
    -------
    polars.DataFrame
        ``frame`` plus :data:`LAG_FEATURE_COLUMNS` (Float64, null where there is no history),
        [kWh] per interval except ``hours_since_last_session`` [h].
    """
    columns = compute_lag_features(
        frame["issued_at"],
        frame["interval_start"],
        contributions=contributions,
        resolution=resolution,
    )
    return frame.with_columns(
        pl.Series(name, columns[name], dtype=pl.Float64, nan_to_null=True)
        for name in LAG_FEATURE_COLUMNS
    )


def _in_session_order(contributions: pl.DataFrame) -> pl.DataFrame:
    """Return contributions with each session's rows together, its arrival row first.

    :class:`SiteContributions` relies on that order (as the splitter produces it) to tell
    sessions apart; a frame in another order is sorted by session and interval start.
    """
    session = contributions["session_id"]
    starts = session.ne_missing(session.shift(1)).fill_null(True)
    arrival = contributions["arrivals"] == 1
    if (starts == arrival).all() and starts.sum() == session.n_unique():
        return contributions
    ordered = contributions.sort("session_id", "interval_start", maintain_order=True)
    first = ordered["session_id"].ne_missing(ordered["session_id"].shift(1)).fill_null(True)
    wrong = (first != (ordered["arrivals"] == 1)).arg_true()
    if wrong.len():
        row = ordered.row(int(wrong[0]), named=True)
        msg = (
            f"contributions of session {row['session_id']!r} do not start with exactly one "
            f"arrival row (interval_start {row['interval_start']}, arrivals "
            f"{row['arrivals']}); pass the output of build_session_contributions unchanged"
        )
        raise SchemaError(msg)
    return ordered


def compute_lag_features(
    issued_at: pl.Series,
    interval_start: pl.Series,
    *,
    contributions: pl.DataFrame,
    resolution: timedelta,
) -> dict[str, np.ndarray]:
    """Compute :data:`LAG_FEATURE_COLUMNS` of one site for target rows given as two columns.

    The array form of :func:`add_lag_features` (same rules and units); NaN marks "no value".
    """
    contributions = _in_session_order(contributions)
    parts = SiteContributions(
        site=np.zeros(contributions.height, dtype=np.int64),
        start_us=_to_us(contributions["interval_start"]),
        known_us=_to_us(contributions["known_at"]),
        energy=contributions["energy_kwh"].cast(pl.Float64).to_numpy(),
        arrival=contributions["arrivals"].to_numpy() == 1,
    )
    issued_us = _to_us(issued_at)
    issues_us = np.unique(issued_us)
    return compute_site_lag_features(
        np.zeros(issued_at.len(), dtype=np.int64),
        np.searchsorted(issues_us, issued_us),
        _to_us(interval_start),
        issues_us=issues_us,
        contributions=parts,
        sites=1,
        resolution=resolution,
    )


def compute_site_lag_columns(
    site: np.ndarray,
    issue: np.ndarray,
    interval_us: np.ndarray,
    *,
    issues_us: np.ndarray,
    contributions: SiteContributions,
    sites: int,
    resolution: timedelta,
    earlier: EarlierSessions | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Compute :data:`LAG_FEATURE_COLUMNS` of several sites: lags per row, the rest per cell.

    The other columns are the same for every row of a (site, issue) cell, so they are
    returned once per cell with each row's cell, to be gathered late.

    Parameters
    ----------
    site, issue, interval_us
        Per target row: site number in ``[0, sites)``, position of its ``issued_at`` in
        ``issues_us``, and ``interval_start`` [us since epoch, UTC].
    issues_us
        The sorted unique issue times [us since epoch, UTC].
    contributions
        Contributions of those sites (numbered alike), from any sessions: each row uses only
        those of its site known at its issue time.
    sites
        Number of sites.
    resolution
        Interval length of the grid.
    earlier
        Sessions left out of ``contributions`` because they ended at least :data:`LOOKBACK`
        before the first issue time (default: none were). The EWM level then starts from zero
        at that point instead of at the first session: a difference below 2^-64 of the level.

    Returns
    -------
    tuple
        The lags (:data:`LAGS`), one value per row; the other columns one value per
        (site, issue) cell; each row's cell (so a column's rows are ``values[cell]``). NaN
        marks "no value". Gathering the cell columns late (e.g. in polars) saves memory.
    """
    step_us = resolution // ONE_US
    known = build_known_series(
        contributions, sites=sites, issues_us=issues_us, step_us=step_us, earlier=earlier
    )
    cell = site * issues_us.size + issue
    target = (interval_us - known.origin_us) // step_us
    pairs = _pair_sums(known)
    flat = site * known.full.shape[1] + target
    rows = {
        "cell": cell,
        "target": target,
        "flat": flat,
        "history": np.take(known.history, cell),
        "ended": np.take(known.ended, cell),
        "corrected": np.take(pairs[3], cell),
        "buffer": np.empty_like(flat),
    }
    columns = {
        name: _lag_values(known, rows, lag=lag // resolution, pairs=pairs)
        for name, lag in LAGS.items()
    }
    per_cell = _issue_level_features(known, resolution)
    return columns, per_cell, cell


def compute_site_lag_features(
    site: np.ndarray,
    issue: np.ndarray,
    interval_us: np.ndarray,
    *,
    issues_us: np.ndarray,
    contributions: SiteContributions,
    sites: int,
    resolution: timedelta,
    earlier: EarlierSessions | None = None,
) -> dict[str, np.ndarray]:
    """Compute :data:`LAG_FEATURE_COLUMNS` of several sites, every column one value per row.

    :func:`compute_site_lag_columns` with its per-cell columns gathered to the rows: same
    parameters; returns per column one array over the rows [kWh] (``hours_since_last_session``
    [h]), NaN for "no value".
    """
    rows, per_cell, cell = compute_site_lag_columns(
        site,
        issue,
        interval_us,
        issues_us=issues_us,
        contributions=contributions,
        sites=sites,
        resolution=resolution,
        earlier=earlier,
    )
    return rows | {name: np.take(values, cell) for name, values in per_cell.items()}
