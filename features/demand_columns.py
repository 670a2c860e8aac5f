"""Targets and lag features of several sites' training rows, from sessions, in one pass.

The sessions of all sites are split into interval contributions once (only the sessions the
rows need, see :func:`compute_needed_sessions`); the targets (:mod:`features.targets`) and the lag
features as known at each issue time (:mod:`features.lags`) are computed from them as arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple

import numpy as np
import polars as pl
from numba import njit

from features.arrays import empty
from features.known_series import NO_HISTORY, EarlierSessions, SiteContributions
from features.lags import LAG_FEATURE_COLUMNS, LOOKBACK, compute_site_lag_features
from features.session_split import (
    Allocation,
    check_session_times,
    session_time_columns,
    split_at_intervals,
)
from features.site_numbers import compute_site_numbers
from features.targets import TargetGrids, compute_target_grids, compute_targets
from features.time_grid import ONE_US, compute_epoch_us
from forecasting.config import SiteConfig

DEMAND_COLUMNS: Final[tuple[str, ...]] = ("energy_kwh", "is_missing", *LAG_FEATURE_COLUMNS)
"""Columns of :func:`compute_demand_columns`, in order."""


class NeededSessions(NamedTuple):
    """Which sessions the rows need, the targets' grids, what the early sessions tell.

    Returned by :func:`compute_needed_sessions`.
    """

    first: np.ndarray  # per session: its first interval [-], numbered from the epoch
    counts: np.ndarray  # per session: its intervals if the targets or lags need it, else 0
    grids: TargetGrids  # per site: the stretch of its series the targets need
    earlier: EarlierSessions | None  # the sessions left out for ending early; None: no issues


def _session_times(
    sessions: pl.LazyFrame | pl.DataFrame,
    ids: list[str],
    *,
    allocation: Allocation,
    rated_kw: list[float | None],
) -> dict[str, np.ndarray]:
    """Per session of the sites ``ids``: times, energy and site number (``site``).

    Front-loaded: a missing rated power is the site's highest (``rated_kw``, per id).
    """
    schema = sessions.collect_schema()
    rated = None
    if allocation == "front_loaded":
        rated = pl.col("site_id").replace_strict(
            ids, rated_kw, default=None, return_dtype=pl.Float64
        )
    columns = session_time_columns(schema, allocation=allocation, rated_kw=rated)
    selected = sessions.select("site_id", *columns)  # eager on a DataFrame: no planning
    frame = selected.collect() if isinstance(selected, pl.LazyFrame) else selected
    times = {name: frame[name].to_numpy() for name in frame.columns[1:]}
    times["site"] = compute_site_numbers(frame["site_id"], ids=ids)  # other sites: len(ids)
    ours = times["site"] < len(ids)
    check_session_times(sessions, times["plug_in"], times["plug_out"], rows=ours)
    if not ours.all():
        times = {name: values[ours] for name, values in times.items()}
    return times


def compute_needed_sessions(
    times: dict[str, np.ndarray],
    *,
    sites: int,
    issues_us: np.ndarray,
    targets: tuple[int, int],
    step_us: int,
    known_until: datetime | None,
) -> NeededSessions:
    """Find the sessions the targets and lag features need, and the targets' grids.

    A session is left out when its ``plug_out_at`` is at or before both the start of its
    site's target grid and the grid point :data:`features.lags.LOOKBACK` before the first
    issue time (rounded down), or when it plugs in at or after the end of its site's target
    grid, of the target intervals and of the interval holding the last issue time. The
    features are then unchanged but for the EWM level's start (see
    :func:`features.lags.compute_site_lag_features`).

    Parameters
    ----------
    times
        Per session: :func:`features.session_split.compute_session_times` (``plug_in``,
        ``plug_out``, ``charge`` [us since epoch, UTC], ``energy`` [kWh]) plus ``site``, the
        site number in ``[0, sites)``.
    sites
        Number of sites.
    issues_us
        Sorted unique issue times [us since epoch, UTC] (may be empty).
    targets
        First and end (exclusive) of the target intervals [-], numbered from the epoch
        (interval ``k`` starts at ``k * step_us``).
    step_us
        Interval length [us].
    known_until
        End of the known data [UTC]; None for each site's latest ``plug_out_at``.

    Returns
    -------
    NeededSessions
        Per session its ``first`` interval and ``counts`` of intervals (0 for a session left
        out, for :func:`features.session_split.split_at_intervals`), the targets' ``grids``
        (from all sessions, see
        :func:`features.targets.compute_target_grids`) and ``earlier``, what the sessions
        left out for being early tell (None, with every session kept, without issue times).
    """
    site = times["site"]
    first = np.floor_divide(times["plug_in"], step_us, out=empty(site.size, np.int64))
    last = np.subtract(times["plug_out"], 1, out=empty(site.size, np.int64))
    np.maximum(last, times["plug_in"], out=last)
    last //= step_us
    until_us = None if known_until is None else compute_epoch_us(known_until)
    grids = compute_target_grids(
        site,
        first,
        last,
        times["plug_out"],
        sites=sites,
        targets=targets,
        step_us=step_us,
        known_until_us=until_us,
    )
    if issues_us.size == 0:
        return NeededSessions(first, last - first + 1, grids, None)
    lookback = (int(issues_us[0]) - LOOKBACK // ONE_US) // step_us
    low = np.minimum(grids.first, lookback)
    high = np.maximum(grids.stop, max(targets[1], int(issues_us[-1]) // step_us + 1))
    counts, first_us, last_end_us = _split_early(
        site, first, last, times["plug_out"], low, high, sites, step_us
    )
    earlier = EarlierSessions(first_us, last_end_us, lookback_from_us=lookback * step_us)
    return NeededSessions(first, counts, grids, earlier)


@njit(cache=True, nogil=True)
def _split_early(  # noqa: PLR0917 - the session arrays and the sites' bounds, for numba
    site: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    plug_out_us: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    sites: int,
    step_us: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep sessions with ``low <= last`` and ``first < high`` (their site's intervals [-]).

    Returns per session its number of intervals if kept (else 0) and, of the sessions left
    out for ``last < low``, per site: start of the earliest interval [us] (``NO_HISTORY`` if
    none) and latest plug-out [us] (-1 if none).
    """
    counts = np.empty(site.size, dtype=np.int64)
    first_us = np.full(sites, NO_HISTORY, dtype=np.int64)
    last_end_us = np.full(sites, -1, dtype=np.int64)
    for q in range(site.size):
        s = site[q]
        early = last[q] < low[s]
        counts[q] = last[q] - first[q] + 1 if not early and first[q] < high[s] else 0
        if early:
            first_us[s] = min(first_us[s], first[q] * step_us)
            last_end_us[s] = max(last_end_us[s], plug_out_us[q])
    return counts, first_us, last_end_us


def compute_demand_columns(
    sessions: pl.LazyFrame | pl.DataFrame,
    *,
    issue: np.ndarray,
    interval_us: np.ndarray,
    issues_us: np.ndarray,
    sites: Sequence[SiteConfig],
    allocation: Allocation,
    resolution: timedelta,
    known_until: datetime | None,
) -> dict[str, pl.Series]:
    """Compute :data:`DEMAND_COLUMNS` for the target rows of each site, site after site.

    Parameters
    ----------
    sessions
        Sessions (``SESSIONS_SCHEMA``); rows of other sites are ignored.
    issue, interval_us
        Per target row of one site: position of its issue time in ``issues_us`` (sorted) and
        its ``interval_start`` [us since epoch, UTC] (:func:`features.matrix.compute_target_rows`).
    issues_us
        Sorted unique issue times [us since epoch, UTC].
    sites, allocation, resolution, known_until
        As for :func:`features.matrix.build_feature_matrices`.

    Returns
    -------
    dict
        Per column, ``len(sites) * issue.size`` values: ``energy_kwh`` [kWh] target (null
        where unknown or missing), ``is_missing``, the lag features (null for "no value").
    """
    ids = list(dict.fromkeys(site.site_id for site in sites))
    rated = {s.site_id: max((g.power_kw for g in s.chargers), default=None) for s in sites}
    times = _session_times(sessions, ids, allocation=allocation, rated_kw=[rated[i] for i in ids])
    site = np.array([ids.index(site.site_id) for site in sites], dtype=np.int64)
    if np.any(np.diff(issues_us) <= 0) or (
        issue.size and not 0 <= issue.min() <= issue.max() < issues_us.size
    ):
        msg = (
            "issues_us must be increasing and issue positions in it "
            f"(0..{issues_us.size - 1}); build them with features.matrix.compute_target_rows"
        )
        raise ValueError(msg)
    present = np.zeros(issues_us.size, dtype=bool)
    present[issue] = True
    if not present.all():  # only issue times with target rows count
        issues_us, issue = issues_us[present], np.cumsum(present)[issue] - 1
    energy, is_missing, known, earlier = _targets_and_contributions(
        times,
        site,
        interval_us,
        sites=len(ids),
        issues_us=issues_us,
        resolution=resolution,
        known_until=known_until,
    )
    del times
    lags = compute_site_lag_features(
        site,
        issue,
        interval_us,
        issues_us=issues_us,
        contributions=known,
        sites=len(ids),
        resolution=resolution,
        earlier=earlier,
    )
    return _to_series(energy, is_missing, lags)


def _targets_and_contributions(
    times: dict[str, np.ndarray],
    site: np.ndarray,
    interval_us: np.ndarray,
    *,
    sites: int,
    issues_us: np.ndarray,
    resolution: timedelta,
    known_until: datetime | None,
) -> tuple[np.ndarray, np.ndarray, SiteContributions, EarlierSessions | None]:
    """Return the rows' targets (``energy_kwh`` [kWh], ``is_missing``) and the contributions.

    ``times`` and ``issues_us`` as for :func:`compute_needed_sessions`; the target rows are
    the intervals starting at ``interval_us`` [us since epoch] for each site number in
    ``site``, site after site. Only the needed sessions are split; the contributions (for the
    lag features) come with what the others tell (``earlier``).
    """
    step_us = resolution // ONE_US
    interval = interval_us // step_us
    targets = (int(interval.min()), int(interval.max()) + 1) if interval.size else (0, 0)
    first, counts, grids, earlier = compute_needed_sessions(
        times,
        sites=sites,
        issues_us=issues_us,
        targets=targets,
        step_us=step_us,
        known_until=known_until,
    )
    parts = split_at_intervals(times, step_us=step_us, occupancy=False, spans=(first, counts))
    parts["site"] = times["site"][parts["row"]]
    energy, is_missing = compute_targets(
        site, interval, parts=parts, grids=grids, resolution=resolution
    )
    known = SiteContributions(
        parts["site"], parts["start"], parts["known_at"], parts["energy"], parts["arrival"]
    )
    return energy, is_missing, known, earlier


def _to_series(
    energy: np.ndarray, is_missing: np.ndarray, lags: dict[str, pl.Series]
) -> dict[str, pl.Series]:
    """Return the columns as polars Series, NaN energy as null."""
    return {
        "energy_kwh": pl.Series("energy_kwh", energy, nan_to_null=True),
        "is_missing": pl.Series("is_missing", is_missing, dtype=pl.Boolean),
        **lags,
    }
