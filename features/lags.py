"""Lag and rolling features of the demand series, exactly as the series was known at issue time.

What a feature for issue time ``T`` may use
-------------------------------------------
Only intervals that ended at or before ``T`` and only sessions known at ``T``
(``plug_out_at < T``). The series "as known at T" is

    known_T(j) = full(j) - sum of contributions to j of sessions with plug_out_at >= T,

and those in-flight corrections are few (sessions plugged in across ``T``), so the features are
read off the full series (cumulative sums for the means) and corrected exactly with the
sessions in flight at ``T``. Several sites are computed in the same pass, on one dense
(site, interval) grid with a shared origin (the zeros before a site's first session change no
value). The grid and the sessions in flight are built in :mod:`features.known_series`, the
lags and window statistics over it (compiled loops) in :mod:`features.known_windows`.

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

from features.arrays import build_float_series
from features.known_series import (
    EarlierSessions,
    KnownSeries,
    SiteContributions,
    build_known_series,
)
from features.known_windows import compute_cell_statistics, compute_row_features
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
EWM_LEVEL: Final = "ewm_24h"
EWM_HALF_LIFE: Final = timedelta(hours=24)
EWM_HALF_LIVES: Final[dict[str, timedelta]] = {EWM_LEVEL: EWM_HALF_LIFE}
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


def _issue_level_features(known: KnownSeries, step: timedelta) -> dict[str, np.ndarray]:
    """Return the features that are the same on every row of a (site, issue) cell, per cell."""
    statistics = compute_cell_statistics(
        known,
        mean_widths=[window // step for window in ROLLING_MEANS.values()],
        max_widths=[window // step for window in ROLLING_MAXIMA.values()],
        half_life=max(1, EWM_HALF_LIFE // step),
    )
    features = dict(zip((*ROLLING_MEANS, *ROLLING_MAXIMA, EWM_LEVEL), statistics, strict=True))
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
    return frame.with_columns(columns.values())


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
) -> dict[str, pl.Series]:
    """Compute :data:`LAG_FEATURE_COLUMNS` of one site for target rows given as two columns.

    The columns :func:`add_lag_features` adds (same rules and units), in order.
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
        np.zeros(1, dtype=np.int64),
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
    earlier: EarlierSessions | None = None,
) -> dict[str, pl.Series]:
    """Compute :data:`LAG_FEATURE_COLUMNS` of several sites' target rows.

    Parameters
    ----------
    site
        The site numbers (in ``[0, sites)``) of the rows' copies: the target rows are the
        ``issue``/``interval_us`` rows for each site in ``site``, copy after copy.
    issue, interval_us
        Per row of a copy: position of its ``issued_at`` in ``issues_us``, and its
        ``interval_start`` [us since epoch, UTC].
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
    dict
        Per column, a Float64 Series with one value per row (``site.size * issue.size``
        rows) [kWh] (``hours_since_last_session`` [h]), null for "no value".
    """
    if issue.size != interval_us.size or (site.size and not 0 <= site.min() <= site.max() < sites):
        msg = (
            f"issue and interval_us must have one value per row ({issue.size} != "
            f"{interval_us.size}?) and site the site number of each copy in [0, {sites})"
        )
        raise ValueError(msg)
    step_us = resolution // ONE_US
    known = build_known_series(
        contributions, sites=sites, issues_us=issues_us, step_us=step_us, earlier=earlier
    )
    target = (interval_us - known.origin_us) // step_us
    lags = np.array([lag // resolution for lag in LAGS.values()], dtype=np.int64)
    per_cell = _issue_level_features(known, resolution)
    values, valid, has_nan = compute_row_features(
        known, site=site, issue=issue, target=target, lags=lags,
        per_cell=np.stack([per_cell[name] for name in LAG_FEATURE_COLUMNS[len(LAGS):]]),
    )  # fmt: skip
    return {
        name: build_float_series(values[m], name=name, valid=valid[m] if has_nan[m] else None)
        for m, name in enumerate(LAG_FEATURE_COLUMNS)
    }
