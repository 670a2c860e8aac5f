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
first session change no value), so there is no Python loop over sites either.

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

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import numpy as np
import polars as pl

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
_NO_HISTORY: Final = np.iinfo(np.int64).max


@dataclass(frozen=True)
class SiteContributions:
    """Session contributions of several sites as arrays (one entry per session and interval).

    ``site`` numbers the sites from 0; times are [us since epoch].
    """

    site: np.ndarray  # site number [-]
    start_us: np.ndarray  # interval start [us]
    known_us: np.ndarray  # the session's plug_out_at [us]
    energy: np.ndarray  # [kWh]
    arrival: np.ndarray  # True in the session's plug-in interval


@dataclass(frozen=True)
class KnownSeries:
    """Full series of every site on one dense grid plus the in-flight corrections per issue.

    Built by :func:`build_known_series`; interval ``k`` starts at ``origin_us + k * step_us``
    for every site. A cell is a (site, issue) pair, numbered ``site * issues + issue``.
    """

    origin_us: int  # start of interval 0 [us since epoch]
    step_us: int
    full: np.ndarray  # energy per site and interval [kWh], shape (sites, n)
    issues_us: np.ndarray  # sorted unique issue times [us since epoch]
    ended: np.ndarray  # per cell: number of intervals ended by its issue time (b_T)
    cell_site: np.ndarray  # per cell: site number
    history: np.ndarray  # per cell: first interval of known history (_NO_HISTORY if none)
    last_end_us: np.ndarray  # per cell: latest known plug_out_at [us], -1 if none
    pair_cell: np.ndarray  # correction pairs: cell
    pair_interval: np.ndarray  # correction pairs: interval index
    pair_energy: np.ndarray  # correction pairs: energy of unknown sessions [kWh]


_FIELDS: Final = ("site", "start_us", "known_us", "energy", "arrival")


def _to_us(values: pl.Series) -> np.ndarray:
    return values.dt.epoch("us").to_numpy().astype(np.int64)


def _history(
    parts: SiteContributions, interval: np.ndarray, *, sites: int, issues_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: first interval of the known sessions, latest known plug-out."""
    # each session has exactly one contribution flagged as its arrival: its first interval
    site, known_us = parts.site[parts.arrival], parts.known_us[parts.arrival]
    count = issues_us.size + 1
    # a session is known from the first issue time after its plug-out on: bin it there
    cell = site * count + np.searchsorted(issues_us, known_us, side="right")
    first = np.full(sites * count, _NO_HISTORY, dtype=np.int64)
    np.minimum.at(first, cell, interval[parts.arrival])
    last = np.full(sites * count, -1, dtype=np.int64)
    np.maximum.at(last, cell, known_us)
    # then carry the earliest start and latest plug-out forward over the issue times
    history = np.minimum.accumulate(first.reshape(sites, count), axis=1)[:, :-1]
    last_end = np.maximum.accumulate(last.reshape(sites, count), axis=1)[:, :-1]
    return history.ravel(), last_end.ravel()


def _correction_pairs(
    parts: SiteContributions, interval: np.ndarray, *, step_us: int, origin_us: int,
    issues_us: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Pairs (cell, interval, energy) of contributions ended by T but of sessions unknown at T."""
    ends_us = origin_us + (interval + 1) * step_us
    low = np.searchsorted(issues_us, ends_us, side="left")  # first T >= interval end
    high = np.searchsorted(issues_us, parts.known_us, side="right")  # T <= known_at
    counts = np.clip(high - low, 0, None)
    rows = np.repeat(np.arange(counts.size), counts)
    offsets = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    cell = parts.site[rows] * issues_us.size + low[rows] + offsets
    return cell, interval[rows], parts.energy[rows]


def build_known_series(
    parts: SiteContributions, *, sites: int, issues_us: np.ndarray, step_us: int
) -> KnownSeries:
    """Prepare the full series of ``sites`` sites and the exact in-flight corrections.

    ``issues_us`` are the sorted unique issue times [us since epoch], shared by all sites.
    """
    if parts.site.size == 0 or issues_us.size == 0:
        origin = int(issues_us[0]) // step_us * step_us if issues_us.size else 0
        keep = np.zeros(parts.site.size, dtype=bool)
        parts = SiteContributions(*(getattr(parts, f)[keep] for f in _FIELDS))
    else:
        origin = int(parts.start_us.min())
    ended = np.clip((issues_us - origin) // step_us, 0, None)
    n = int(ended.max()) if ended.size else 0
    interval = (parts.start_us - origin) // step_us
    inside = interval < n
    full = np.bincount(
        parts.site[inside] * n + interval[inside], weights=parts.energy[inside],
        minlength=sites * n,
    ).reshape(sites, n)  # fmt: skip
    history, last_end = _history(parts, interval, sites=sites, issues_us=issues_us)
    kept = SiteContributions(*(getattr(parts, f)[inside] for f in _FIELDS))
    pair_cell, pair_interval, pair_energy = _correction_pairs(
        kept, interval[inside], step_us=step_us, origin_us=origin, issues_us=issues_us
    )
    return KnownSeries(
        origin, step_us, full, issues_us, np.tile(ended, sites),
        np.repeat(np.arange(sites), issues_us.size), history, last_end,
        pair_cell, pair_interval, pair_energy,
    )  # fmt: skip


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
    flat = np.append(known.full.ravel(), 0.0)
    bounds = np.stack((known.cell_site * n + start, known.cell_site * n + known.ended), axis=1)
    # maximum over [start, ended) of each cell in one C pass; odd slices are ignored
    result = np.maximum.reduceat(flat, bounds.ravel())[::2] if flat.size > 1 else start * 0.0
    result = np.where(known.ended > start, result, np.nan)
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
    padded = np.concatenate((known.full, np.zeros((known.full.shape[0], 1))), axis=1)
    values = padded[known.cell_site[cells][:, None], np.clip(index, 0, known.full.shape[1])]
    row = np.searchsorted(cells, known.pair_cell[in_window])
    column = known.pair_interval[in_window] - base[row]
    np.subtract.at(values, (row, column), known.pair_energy[in_window])
    valid = index >= _window_start(known, width)[cells][:, None]
    result = np.where(valid, values, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isneginf(result), np.nan, result)


def _ewm_level(known: KnownSeries, half_life: int) -> np.ndarray:
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    sites, n = known.full.shape
    padded = np.concatenate((np.zeros((sites, 1)), known.full), axis=1)
    levels = np.stack(  # per site: faster here than one ewm_mean(...).over("site")
        [pl.Series(row).ewm_mean(alpha=alpha, adjust=False).to_numpy() for row in padded]
    ).reshape(sites, n + 1)
    level = levels[known.cell_site, known.ended]
    lag = known.ended[known.pair_cell] - 1 - known.pair_interval
    weights = alpha * (1.0 - alpha) ** lag * known.pair_energy
    level = level - np.bincount(known.pair_cell, weights=weights, minlength=level.size)
    return np.where(known.history == _NO_HISTORY, np.nan, level)


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
    known: KnownSeries,
    *,
    cell: np.ndarray,
    target: np.ndarray,
    lag: int,
    pairs: _PairSums,
) -> np.ndarray:
    interval = target - lag
    valid = (interval >= known.history[cell]) & (interval < known.ended[cell])
    n = known.full.shape[1]
    if n == 0:
        return np.full(interval.size, np.nan)
    values = np.where(valid, known.full[known.cell_site[cell], np.clip(interval, 0, n - 1)], np.nan)
    keys, sums, modulus, corrected = pairs
    rows = np.flatnonzero(valid & corrected[cell])  # rows whose cell has corrections
    if rows.size == 0:
        return values
    query = cell[rows] * modulus + interval[rows]
    position = np.clip(np.searchsorted(keys, query), 0, keys.size - 1)
    hit = keys[position] == query
    values[rows[hit]] -= sums[position[hit]]
    return values


def _issue_level_features(known: KnownSeries, step: timedelta) -> dict[str, np.ndarray]:
    width = {name: window // step for name, window in {**ROLLING_MEANS, **ROLLING_MAXIMA}.items()}
    sites = known.full.shape[0]
    cumulative = np.concatenate((np.zeros((sites, 1)), np.cumsum(known.full, axis=1)), axis=1)
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


def compute_site_lag_features(
    site: np.ndarray,
    issue: np.ndarray,
    interval_us: np.ndarray,
    *,
    issues_us: np.ndarray,
    contributions: SiteContributions,
    sites: int,
    resolution: timedelta,
) -> dict[str, np.ndarray]:
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

    Returns
    -------
    dict
        Per column of :data:`LAG_FEATURE_COLUMNS`, one value per row (NaN marks "no value").
    """
    step_us = resolution // _US
    known = build_known_series(contributions, sites=sites, issues_us=issues_us, step_us=step_us)
    cell = site * issues_us.size + issue
    target = (interval_us - known.origin_us) // step_us
    pairs = _pair_sums(known)
    columns = {
        name: _lag_values(known, cell=cell, target=target, lag=lag // resolution, pairs=pairs)
        for name, lag in LAGS.items()
    }
    per_cell = _issue_level_features(known, resolution)
    columns |= {name: values[cell] for name, values in per_cell.items()}
    return columns
