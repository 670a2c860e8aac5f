"""Targets and lag features of several sites' training rows, from sessions, in one pass.

The sessions of all sites are split into interval contributions once (only the sessions the
rows need, see :func:`select_sessions`); the targets (:mod:`features.targets`) and the lag
features as known at each issue time (:mod:`features.lags`) are computed from them as arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import polars as pl

from features.demand_series import Allocation, compute_session_times, split_at_intervals
from features.known_series import NO_HISTORY, EarlierSessions, SiteContributions
from features.lags import LAG_FEATURE_COLUMNS, LAGS, LOOKBACK, compute_site_lag_columns
from features.targets import TargetGrids, compute_target_grids, compute_targets, reduce_per_site
from forecasting.config import SiteConfig
from forecasting.schemas import UTC_DATETIME

DEMAND_COLUMNS: Final[tuple[str, ...]] = ("energy_kwh", "is_missing", *LAG_FEATURE_COLUMNS)
"""Columns of :func:`compute_demand_columns`, in order."""

_ONE_US: Final = timedelta(microseconds=1)


def _session_times(
    sessions: pl.LazyFrame | pl.DataFrame, ids: list[str], *, allocation: Allocation,
    rated_kw: list[float | None],
) -> dict[str, np.ndarray]:  # fmt: skip
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


def select_sessions(
    times: dict[str, np.ndarray], *, sites: int, issues_us: np.ndarray,
    targets: tuple[int, int], step_us: int, known_until: datetime | None,
) -> tuple[np.ndarray, TargetGrids, EarlierSessions | None]:  # fmt: skip
    """Which sessions the targets and lags need, the targets' grids, what the rest tell.

    Sessions that ended before both the targets' grids and :data:`features.lags.LOOKBACK`
    before the first issue time, or that start after the last target and issue time, are
    left out; the result is unchanged but for the EWM level's start (see
    :func:`features.lags.compute_site_lag_features`).
    """
    site = times["site"]
    first = times["plug_in"] // step_us
    last = np.maximum(times["plug_out"] - 1, times["plug_in"]) // step_us
    until_us = None
    if known_until is not None:
        until_us = int(pl.Series([known_until]).cast(UTC_DATETIME).dt.epoch("us").item())
    grids = compute_target_grids(
        site, first, last, times["plug_out"], sites=sites, targets=targets, step_us=step_us,
        known_until_us=until_us,
    )  # fmt: skip
    if issues_us.size == 0:
        return np.ones(site.size, dtype=bool), grids, None
    lookback = (int(issues_us[0]) - LOOKBACK // _ONE_US) // step_us
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
    return ~early & (first < high), grids, earlier


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
    step_us = resolution // _ONE_US
    position = np.repeat(np.arange(len(sites)), base.height)
    row_site = np.array([ids.index(site.site_id) for site in sites], dtype=np.int64)[position]
    base_us = base.select(pl.col("issued_at", "interval_start").dt.epoch("us"))
    issued_us, interval_us = base_us["issued_at"].to_numpy(), base_us["interval_start"].to_numpy()
    issues_us = np.unique(issued_us)
    interval = interval_us // step_us
    targets = (int(interval.min()), int(interval.max()) + 1) if interval.size else (0, 0)
    keep, grids, earlier = select_sessions(
        times, sites=len(ids), issues_us=issues_us, targets=targets, step_us=step_us,
        known_until=known_until,
    )  # fmt: skip
    parts = split_at_intervals(
        {k: v[keep] for k, v in times.items()}, step_us=step_us, occupancy=False
    )
    parts["site"] = times["site"][keep][parts["row"]]
    energy, is_missing = compute_targets(
        row_site, np.tile(interval, len(sites)), parts=parts, grids=grids, resolution=resolution
    )
    known = SiteContributions(
        parts["site"], parts["start"], parts["known_at"], parts["energy"], parts["arrival"]
    )
    del parts, times, keep
    lags, per_cell, cell = compute_site_lag_columns(
        row_site, np.tile(np.searchsorted(issues_us, issued_us), len(sites)),
        np.tile(interval_us, len(sites)), issues_us=issues_us, contributions=known,
        sites=len(ids), resolution=resolution, earlier=earlier,
    )  # fmt: skip
    return _to_series(energy, is_missing, lags, per_cell, cell)


def _to_series(
    energy: np.ndarray, is_missing: np.ndarray, lags: dict[str, np.ndarray],
    per_cell: dict[str, np.ndarray], cell: np.ndarray,
) -> dict[str, pl.Series]:  # fmt: skip
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
