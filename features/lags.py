"""Lag and rolling features of the demand series, exactly as the series was known at issue time.

What a feature for issue time ``T`` may use
-------------------------------------------
Only intervals that ended at or before ``T`` and only sessions known at ``T``
(``plug_out_at < T``). The series "as known at T" is

    known_T(j) = full(j) - sum of contributions to j of sessions with plug_out_at >= T,

and those in-flight corrections are few (sessions plugged in across ``T``), so the features are
computed on the full series with cumulative sums and gathers, then corrected exactly, pair by
pair ``(T, j)``, without a Python loop over issue times. Intervals before the first plug-in of
any session known at ``T`` are "no history yet": lags there are null and rolling windows are
clipped to the known history (null when empty).

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
class KnownSeries:
    """One site's full series on a dense grid plus the in-flight corrections per issue time.

    Built by :func:`build_known_series`; interval ``k`` starts at ``origin_us + k * step_us``.
    """

    origin_us: int  # start of interval 0 [us since epoch]
    step_us: int
    full: np.ndarray  # energy per interval [kWh], intervals 0..n-1
    issues_us: np.ndarray  # sorted unique issue times [us since epoch]
    ended: np.ndarray  # per issue: number of intervals ended by it (b_T)
    history: np.ndarray  # per issue: first interval of known history (_NO_HISTORY if none)
    last_end_us: np.ndarray  # per issue: latest known plug_out_at [us], -1 if none
    pair_issue: np.ndarray  # correction pairs: issue index
    pair_interval: np.ndarray  # correction pairs: interval index
    pair_energy: np.ndarray  # correction pairs: energy of unknown sessions [kWh]


def _to_us(values: pl.Series) -> np.ndarray:
    return values.dt.epoch("us").to_numpy().astype(np.int64)


def _history(
    interval: np.ndarray, known_us: np.ndarray, arrival: np.ndarray, issues_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per issue time: first interval of the known sessions, latest known plug-out."""
    # each session has exactly one contribution flagged as its arrival: its first interval
    order = np.argsort(known_us[arrival], kind="stable")
    known_us = known_us[arrival][order]
    first = interval[arrival][order]
    running_first = np.minimum.accumulate(first) if first.size else first
    count = np.searchsorted(known_us, issues_us, side="left")  # sessions with known_at < T
    has = count > 0
    history = np.full(issues_us.size, _NO_HISTORY, dtype=np.int64)
    last_end = np.full(issues_us.size, -1, dtype=np.int64)
    history[has] = running_first[count[has] - 1]
    last_end[has] = known_us[count[has] - 1]
    return history, last_end


def _correction_pairs(
    interval: np.ndarray,
    known_us: np.ndarray,
    energy: np.ndarray,
    *,
    ends_us: np.ndarray,
    issues_us: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (issue, interval, energy) of contributions ended by T but of sessions unknown at T."""
    low = np.searchsorted(issues_us, ends_us, side="left")  # first T >= interval end
    high = np.searchsorted(issues_us, known_us, side="right")  # T <= known_at
    counts = np.clip(high - low, 0, None)
    rows = np.repeat(np.arange(counts.size), counts)
    offsets = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return low[rows] + offsets, interval[rows], energy[rows]


def build_known_series(
    contributions: pl.DataFrame, *, issue_times: pl.Series, resolution: timedelta
) -> KnownSeries:
    """Prepare the full series and the exact in-flight corrections for each issue time.

    ``contributions`` are one site's rows of
    :func:`features.demand_series.build_session_contributions`; ``issue_times`` must be sorted,
    unique and UTC.
    """
    step_us = resolution // _US
    issues_us = _to_us(issue_times)
    if contributions.is_empty() or issues_us.size == 0:
        origin = int(issues_us[0]) // step_us * step_us if issues_us.size else 0
        contributions = contributions.clear()
    else:
        origin = int(_to_us(contributions["interval_start"]).min())
    ended = np.clip((issues_us - origin) // step_us, 0, None)
    n = int(ended.max()) if ended.size else 0
    interval = (_to_us(contributions["interval_start"]) - origin) // step_us
    known_us = _to_us(contributions["known_at"])
    energy = contributions["energy_kwh"].to_numpy()
    inside = interval < n
    full = np.bincount(interval[inside], weights=energy[inside], minlength=n)
    arrival = contributions["arrivals"].to_numpy() == 1
    history, last_end = _history(interval, known_us, arrival, issues_us)
    pair_issue, pair_interval, pair_energy = _correction_pairs(
        interval[inside],
        known_us[inside],
        energy[inside],
        ends_us=origin + (interval[inside] + 1) * step_us,
        issues_us=issues_us,
    )
    return KnownSeries(
        origin, step_us, full, issues_us, ended, history, last_end,
        pair_issue, pair_interval, pair_energy,
    )  # fmt: skip


def _window_start(known: KnownSeries, width: int) -> np.ndarray:
    return np.maximum(known.ended - width, known.history)


def _rolling_mean(known: KnownSeries, width: int) -> np.ndarray:
    cumulative = np.concatenate(([0.0], np.cumsum(known.full)))
    start = np.minimum(_window_start(known, width), known.ended)
    total = cumulative[known.ended] - cumulative[start]
    in_window = known.pair_interval >= start[known.pair_issue]
    total -= np.bincount(
        known.pair_issue[in_window],
        weights=known.pair_energy[in_window],
        minlength=known.issues_us.size,
    )
    count = known.ended - start
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _rolling_max(known: KnownSeries, width: int) -> np.ndarray:
    base = known.ended - width
    index = base[:, None] + np.arange(width)[None, :]
    values = np.append(known.full, 0.0)[np.clip(index, 0, known.full.size)]
    in_window = known.pair_interval >= base[known.pair_issue]
    issue = known.pair_issue[in_window]
    column = known.pair_interval[in_window] - base[issue]
    np.subtract.at(values, (issue, column), known.pair_energy[in_window])
    valid = index >= _window_start(known, width)[:, None]
    result = np.where(valid, values, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isneginf(result), np.nan, result)


def _ewm_level(known: KnownSeries, half_life: int) -> np.ndarray:
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    padded = pl.Series(np.concatenate(([0.0], known.full)))
    level = padded.ewm_mean(alpha=alpha, adjust=False).to_numpy()[known.ended]
    lag = known.ended[known.pair_issue] - 1 - known.pair_interval
    weights = alpha * (1.0 - alpha) ** lag * known.pair_energy
    level = level - np.bincount(known.pair_issue, weights=weights, minlength=level.size)
    return np.where(known.history == _NO_HISTORY, np.nan, level)


def _lag_values(
    known: KnownSeries, *, issue_index: np.ndarray, target: np.ndarray, lag: int
) -> np.ndarray:
    interval = target - lag
    valid = (interval >= known.history[issue_index]) & (interval < known.ended[issue_index])
    if known.full.size == 0:
        return np.full(interval.size, np.nan)
    values = np.where(valid, known.full[np.clip(interval, 0, known.full.size - 1)], np.nan)
    if known.pair_issue.size == 0:
        return values
    modulus = known.full.size + 1
    keys, inverse = np.unique(known.pair_issue * modulus + known.pair_interval, return_inverse=True)
    sums = np.bincount(inverse, weights=known.pair_energy, minlength=keys.size)
    query = issue_index * modulus + interval
    position = np.clip(np.searchsorted(keys, query), 0, keys.size - 1)
    hit = valid & (keys[position] == query)
    values[hit] -= sums[position[hit]]
    return values


def _issue_level_features(known: KnownSeries, step: timedelta) -> dict[str, np.ndarray]:
    width = {name: window // step for name, window in {**ROLLING_MEANS, **ROLLING_MAXIMA}.items()}
    features = {name: _rolling_mean(known, width[name]) for name in ROLLING_MEANS}
    features |= {name: _rolling_max(known, width[name]) for name in ROLLING_MAXIMA}
    features |= {
        name: _ewm_level(known, max(1, half_life // step))
        for name, half_life in EWM_HALF_LIVES.items()
    }
    since = (known.issues_us - known.last_end_us) / 3.6e9
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
    """Compute :data:`LAG_FEATURE_COLUMNS` for target rows given as two aligned columns.

    The array form of :func:`add_lag_features` (same rules and units); NaN marks "no value".
    """
    issues = issued_at.unique().sort()
    known = build_known_series(contributions, issue_times=issues, resolution=resolution)
    issue_index = np.searchsorted(known.issues_us, _to_us(issued_at))
    target = (_to_us(interval_start) - known.origin_us) // known.step_us
    columns = {
        name: _lag_values(known, issue_index=issue_index, target=target, lag=lag // resolution)
        for name, lag in LAGS.items()
    }
    per_issue = _issue_level_features(known, resolution)
    columns |= {name: values[issue_index] for name, values in per_issue.items()}
    return columns
