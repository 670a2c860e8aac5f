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
corrections are built in :mod:`features.known_series`.

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
    NO_HISTORY,
    EarlierSessions,
    KnownSeries,
    SiteContributions,
    build_known_series,
)
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

_US: Final = timedelta(microseconds=1)
EWM_WARMUP_HALF_LIVES: Final = 64
"""Half-lives of data the EWM level sees before the longest window: older data weighs 2^-64."""
LOOKBACK: Final = max(*LAGS.values(), *ROLLING_MEANS.values(), *ROLLING_MAXIMA.values()) + (
    EWM_WARMUP_HALF_LIVES * max(EWM_HALF_LIVES.values())
)
"""How far before an issue time the features look: sessions that ended earlier than this may
be left out of the contributions (see :class:`features.known_series.EarlierSessions`)."""


def _to_us(values: pl.Series) -> np.ndarray:
    return values.dt.epoch("us").to_numpy().astype(np.int64)


def _window_start(known: KnownSeries, width: int) -> np.ndarray:
    return np.maximum(known.ended - width, known.history)


def _rolling_mean(known: KnownSeries, cumulative: np.ndarray, width: int) -> np.ndarray:
    start = np.minimum(_window_start(known, width), known.ended)
    total = cumulative[known.cell_site, known.ended] - cumulative[known.cell_site, start]
    in_window = known.pair_interval >= start[known.pair_cell]
    total -= np.bincount(
        known.pair_cell[in_window],
        weights=known.pair_energy[in_window],
        minlength=known.ended.size,
    )
    count = known.ended - start
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _rolling_max(known: KnownSeries, width: int) -> np.ndarray:
    _sites, n = known.full.shape
    start = np.minimum(_window_start(known, width), known.ended)
    flat = known.full.ravel()
    if flat.size == 0:
        return np.full(start.size, np.nan)
    bounds = np.stack((known.cell_site * n + start, known.cell_site * n + known.ended), axis=1)
    # maximum over [start, ended) of each cell in one C pass; odd slices are ignored. A window
    # that ends the grid is cut one short (reduceat needs indices inside), so add that value
    result = np.maximum.reduceat(flat, np.minimum(bounds.ravel(), flat.size - 1))[::2]
    at_end = bounds[:, 1] == flat.size
    result[at_end] = np.maximum(result[at_end], flat[-1])
    result[known.ended <= start] = np.nan
    in_window = known.pair_interval >= known.ended[known.pair_cell] - width
    corrected = np.unique(known.pair_cell[in_window])
    if corrected.size:  # cells with sessions unknown at T inside the window: exactly
        result[corrected] = _corrected_max(known, width, corrected, in_window)
    return result


def _corrected_max(
    known: KnownSeries, width: int, cells: np.ndarray, in_window: np.ndarray
) -> np.ndarray:
    """Window maxima of ``cells`` after subtracting the energy of sessions unknown at T."""
    base = known.ended[cells] - width
    index = base[:, None] + np.arange(width)[None, :]
    n = known.full.shape[1]
    # positions before the grid are clipped here and excluded by ``valid`` below
    position = known.cell_site[cells][:, None] * n + index
    values = np.take(known.full.ravel(), position, mode="clip")
    row = np.searchsorted(cells, known.pair_cell[in_window])
    column = known.pair_interval[in_window] - base[row]
    np.subtract.at(values, (row, column), known.pair_energy[in_window])
    valid = index >= _window_start(known, width)[cells][:, None]
    result = np.where(valid, values, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isneginf(result), np.nan, result)


def _ewm_level(known: KnownSeries, half_life: int) -> np.ndarray:
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    issues = known.issues_us.size
    level = np.zeros(known.ended.size)
    padded = np.zeros(known.full.shape[1] + 1)
    for site, row in enumerate(known.full):  # per site: faster than one ewm_mean().over()
        padded[1:] = row
        levels = pl.Series(padded).ewm_mean(alpha=alpha, adjust=False).to_numpy()
        cells = slice(site * issues, (site + 1) * issues)  # the cells of a site are consecutive
        level[cells] = levels[known.ended[cells]]
    lag = known.ended[known.pair_cell] - 1 - known.pair_interval
    weights = alpha * (1.0 - alpha) ** lag * known.pair_energy
    level = level - np.bincount(known.pair_cell, weights=weights, minlength=level.size)
    return np.where(known.history == NO_HISTORY, np.nan, level)


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
    features = {name: _rolling_mean(known, cumulative, width[name]) for name in ROLLING_MEANS}
    features |= {name: _rolling_max(known, width[name]) for name in ROLLING_MAXIMA}
    features |= {
        name: _ewm_level(known, max(1, half_life // step))
        for name, half_life in EWM_HALF_LIVES.items()
    }
    issues = np.tile(known.issues_us, known.full.shape[0])
    since = (issues - known.last_end_us) / 3.6e9
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
    """Compute :data:`LAG_FEATURE_COLUMNS` of several sites in one pass over their arrays.

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
    step_us = resolution // _US
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
    """Compute :data:`LAG_FEATURE_COLUMNS` of several sites in one pass over their arrays.

    Parameters and result as for :func:`compute_site_lag_columns`, every column as one array
    per row (NaN marks "no value").
    """
    rows, per_cell, cell = compute_site_lag_columns(
        site, issue, interval_us, issues_us=issues_us, contributions=contributions,
        sites=sites, resolution=resolution, earlier=earlier,
    )  # fmt: skip
    return rows | {name: np.take(values, cell) for name, values in per_cell.items()}
