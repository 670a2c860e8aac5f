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

from features.known_series import NO_HISTORY, EarlierSessions, SiteContributions
from features.lags import LAG_FEATURE_COLUMNS, LAGS, LOOKBACK, compute_site_lag_columns
from features.session_split import Allocation, compute_session_times, split_at_intervals
from features.targets import TargetGrids, compute_target_grids, compute_targets, reduce_per_site
from features.time_grid import ONE_US, compute_epoch_us
from forecasting.config import SiteConfig
from forecasting.schemas import UTC_DATETIME

DEMAND_COLUMNS: Final[tuple[str, ...]] = ("energy_kwh", "is_missing", *LAG_FEATURE_COLUMNS)
"""Columns of :func:`compute_demand_columns`, in order."""


class NeededSessions(NamedTuple):
    """Which sessions the rows need, the targets' grids, what the early sessions tell.

    Returned by :func:`compute_needed_sessions`.
    """

    keep: np.ndarray  # per session: whether the targets or lags need it (bool)
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
    wanted = ("site_id", "session_id", "plug_in_at", "plug_out_at", "energy_kwh")
    optional = ("max_power_kw", "charging_done_at")
    # the site number comes with the filter: one pass over the site names
    site = pl.col("site_id").cast(pl.Enum(ids), strict=False).to_physical().alias("_site")
    frame = (
        sessions.lazy()
        .select(site, *(c for c in (*wanted, *optional) if c in schema))
        .filter(pl.col("_site").is_not_null())
        .with_columns(pl.col("plug_in_at", "plug_out_at").cast(UTC_DATETIME))
    )
    if allocation == "front_loaded":
        rated = pl.col("site_id").replace_strict(
            ids, rated_kw, default=None, return_dtype=pl.Float64
        )
        if "max_power_kw" in schema:
            rated = pl.coalesce(pl.col("max_power_kw"), rated)
        frame = frame.with_columns(rated.alias("max_power_kw"))
    collected = frame.collect()
    times = compute_session_times(collected, allocation=allocation)
    times["site"] = collected["_site"].to_numpy().astype(np.int64)
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
    :func:`features.lags.compute_site_lag_columns`).

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
        ``keep`` per session, the targets' ``grids`` (from all sessions, see
        :func:`features.targets.compute_target_grids`) and ``earlier``, what the sessions
        left out for being early tell (None, with every session kept, without issue times).
    """
    site = times["site"]
    first = times["plug_in"] // step_us
    last = np.maximum(times["plug_out"] - 1, times["plug_in"]) // step_us
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
        return NeededSessions(np.ones(site.size, dtype=bool), grids, None)
    lookback = (int(issues_us[0]) - LOOKBACK // ONE_US) // step_us
    low = np.minimum(grids.first, lookback)[site]
    high = np.maximum(grids.stop, max(targets[1], int(issues_us[-1]) // step_us + 1))[site]
    early = last < low
    earlier = EarlierSessions(
        first_us=reduce_per_site(
            first[early] * step_us, site[early], sites=sites, reduce=np.minimum, fill=NO_HISTORY
        ),
        last_end_us=reduce_per_site(
            times["plug_out"][early], site[early], sites=sites, reduce=np.maximum, fill=-1
        ),
        lookback_from_us=lookback * step_us,
    )
    return NeededSessions(~early & (first < high), grids, earlier)


def compute_demand_columns(
    sessions: pl.LazyFrame | pl.DataFrame,
    base: pl.DataFrame,
    *,
    sites: Sequence[SiteConfig],
    allocation: Allocation,
    resolution: timedelta,
    known_until: datetime | None,
) -> dict[str, pl.Series]:
    """Compute :data:`DEMAND_COLUMNS` for the rows of ``base`` of each site, site after site.

    Parameters
    ----------
    sessions
        Sessions (``SESSIONS_SCHEMA``); rows of other sites are ignored.
    base
        ``issued_at`` and ``interval_start`` of the rows of one site
        (:func:`features.matrix.build_targets`).
    sites, allocation, resolution, known_until
        As for :func:`features.matrix.build_feature_matrices`.

    Returns
    -------
    dict
        Per column, ``len(sites) * base.height`` values: ``energy_kwh`` [kWh] target (null
        where unknown or missing), ``is_missing``, the lag features (null for "no value").
    """
    ids = list(dict.fromkeys(site.site_id for site in sites))
    rated = {s.site_id: max((g.power_kw for g in s.chargers), default=None) for s in sites}
    times = _session_times(sessions, ids, allocation=allocation, rated_kw=[rated[i] for i in ids])
    position = np.repeat(np.arange(len(sites)), base.height)
    row_site = np.array([ids.index(site.site_id) for site in sites], dtype=np.int64)[position]
    base_us = base.select(pl.col("issued_at", "interval_start").dt.epoch("us"))
    issued_us, interval_us = base_us["issued_at"].to_numpy(), base_us["interval_start"].to_numpy()
    issues_us = np.unique(issued_us)
    energy, is_missing, known, earlier = _targets_and_contributions(
        times,
        row_site,
        interval_us,
        copies=len(sites),
        sites=len(ids),
        issues_us=issues_us,
        resolution=resolution,
        known_until=known_until,
    )
    del times
    lags, per_cell, cell = compute_site_lag_columns(
        row_site,
        np.tile(np.searchsorted(issues_us, issued_us), len(sites)),
        np.tile(interval_us, len(sites)),
        issues_us=issues_us,
        contributions=known,
        sites=len(ids),
        resolution=resolution,
        earlier=earlier,
    )
    return _to_series(energy, is_missing, lags, per_cell, cell)


def _targets_and_contributions(
    times: dict[str, np.ndarray],
    row_site: np.ndarray,
    interval_us: np.ndarray,
    *,
    copies: int,
    sites: int,
    issues_us: np.ndarray,
    resolution: timedelta,
    known_until: datetime | None,
) -> tuple[np.ndarray, np.ndarray, SiteContributions, EarlierSessions | None]:
    """Return the rows' targets (``energy_kwh`` [kWh], ``is_missing``) and the contributions.

    ``times`` and ``issues_us`` as for :func:`compute_needed_sessions`; ``row_site`` per
    target row, whose ``interval_start`` [us since epoch] are ``copies`` copies of
    ``interval_us`` (one per site). Only the needed sessions are split; the contributions (for
    the lag features) come with what the others tell (``earlier``).
    """
    step_us = resolution // ONE_US
    interval = interval_us // step_us
    targets = (int(interval.min()), int(interval.max()) + 1) if interval.size else (0, 0)
    keep, grids, earlier = compute_needed_sessions(
        times,
        sites=sites,
        issues_us=issues_us,
        targets=targets,
        step_us=step_us,
        known_until=known_until,
    )
    parts = split_at_intervals(
        {k: v[keep] for k, v in times.items()}, step_us=step_us, occupancy=False
    )
    parts["site"] = times["site"][keep][parts["row"]]
    energy, is_missing = compute_targets(
        row_site, np.tile(interval, copies), parts=parts, grids=grids, resolution=resolution
    )
    known = SiteContributions(
        parts["site"], parts["start"], parts["known_at"], parts["energy"], parts["arrival"]
    )
    return energy, is_missing, known, earlier


def _to_series(
    energy: np.ndarray,
    is_missing: np.ndarray,
    lags: dict[str, np.ndarray],
    per_cell: dict[str, np.ndarray],
    cell: np.ndarray,
) -> dict[str, pl.Series]:
    """Return the columns as polars Series (NaN to null), per-cell columns gathered to rows.

    Fresh numpy pages cost more than the work here (page faults), so each column is handed
    to polars as soon as possible and the per-cell columns are gathered there.
    """
    columns = {
        "energy_kwh": pl.Series("energy_kwh", energy, nan_to_null=True),
        "is_missing": pl.Series("is_missing", is_missing, dtype=pl.Boolean),
    }
    for name in LAGS:
        columns[name] = pl.Series(name, lags.pop(name), nan_to_null=True)
    index = pl.Series(cell)
    for name, values in per_cell.items():
        columns[name] = pl.Series(name, values, nan_to_null=True).gather(index)
    return {name: columns[name] for name in DEMAND_COLUMNS}
