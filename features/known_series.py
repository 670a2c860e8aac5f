"""The demand series of several sites as it was known at each issue time, as arrays.

The full series of every site is laid on one dense (site, interval) grid; what was not yet
known at an issue time ``T`` (contributions of sessions with ``plug_out_at >= T``) is kept as
a short list of exact corrections, one per (site, issue, interval) "pair". The lag features
(:mod:`features.lags`) are computed on the full grid and then corrected with the pairs. See
:mod:`features.lags` for what a feature may use.

Sessions that ended long before the first issue time can be left out of the contributions
(see :class:`EarlierSessions`): all issue times know them, so they only set where a site's
history begins and when its last session ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

NO_HISTORY: Final = np.iinfo(np.int64).max
"""History start of a (site, issue) cell that knows no session yet."""


@dataclass(frozen=True)
class SiteContributions:
    """Session contributions of several sites as arrays (one entry per session and interval).

    ``site`` numbers the sites from 0; times are [us since epoch]. A session's contributions
    are consecutive, its arrival (plug-in interval) first, as
    :func:`features.session_split.split_at_intervals` makes them.
    """

    site: np.ndarray  # site number [-]
    start_us: np.ndarray  # interval start [us]
    known_us: np.ndarray  # the session's plug_out_at [us]
    energy: np.ndarray  # [kWh]
    arrival: np.ndarray  # True in the session's plug-in interval


@dataclass(frozen=True)
class EarlierSessions:
    """What the sessions left out of :class:`SiteContributions` tell, per site.

    All of them ended (``plug_out_at``) at or before ``lookback_from_us``, which is at or
    before every issue time minus the longest look-back of the features, so every issue time
    knows them and no feature window reaches their intervals.
    """

    first_us: np.ndarray  # per site: start of their earliest interval [us], NO_HISTORY if none
    last_end_us: np.ndarray  # per site: their latest plug_out_at [us], -1 if none
    lookback_from_us: int  # the grid starts at or before this time [us since epoch]


@dataclass(frozen=True)
class KnownSeries:
    """Full series of every site on one dense grid plus the in-flight corrections per issue.

    Built by :func:`build_known_series`; interval ``k`` starts at ``origin_us + k * step_us``
    for every site. A cell is a (site, issue) pair, numbered ``site * issues + issue``.
    """

    origin_us: int  # start of interval 0 [us since epoch]
    step_us: int  # interval length [us]
    full: np.ndarray  # energy per site and interval [kWh], shape (sites, n)
    issues_us: np.ndarray  # sorted unique issue times [us since epoch]
    ended: np.ndarray  # per cell: number of intervals ended by its issue time (b_T)
    cell_site: np.ndarray  # per cell: site number
    history: np.ndarray  # per cell: first interval of known history (NO_HISTORY if none)
    last_end_us: np.ndarray  # per cell: latest known plug_out_at [us], -1 if none
    pair_cell: np.ndarray  # correction pairs: cell
    pair_interval: np.ndarray  # correction pairs: interval index
    pair_energy: np.ndarray  # correction pairs: energy of unknown sessions [kWh]


_FIELDS: Final = ("site", "start_us", "known_us", "energy", "arrival")


class IssueCounter:
    """Count issue times before a time, by a table over the grid instead of a binary search.

    ``count_before_point(k)`` is the number of issue times before grid point ``k`` (the start
    of interval ``k``); ``count_at_or_before(t)`` the number at or before any time ``t``
    [us], exact also for issue times off the grid (those few cases fall back to a search).
    """

    def __init__(self, issues_us: np.ndarray, *, origin_us: int, step_us: int, n: int) -> None:
        points = origin_us + np.arange(n + 2, dtype=np.int64) * step_us
        self._before = np.searchsorted(issues_us, points, side="left")
        self._issues, self._origin, self._step, self._n = issues_us, origin_us, step_us, n

    def count_before_point(self, point: np.ndarray) -> np.ndarray:
        """Issue times strictly before the start of grid interval ``point`` (0..n+1)."""
        return self._before[point]

    def count_at_or_before(self, times_us: np.ndarray) -> np.ndarray:
        """Issue times at or before ``times_us`` [us since epoch]."""
        k = (times_us - self._origin) // self._step
        inside = (k >= 0) & (k <= self._n)
        kk = np.where(inside, k, 0)
        count = self._before[kk]
        # exact unless an issue time lies in [point k, point k + 1): then search those few
        unsure = ~inside | (self._before[kk + 1] > count)
        count[unsure] = np.searchsorted(self._issues, times_us[unsure], side="right")
        return count


def _history(
    parts: SiteContributions,
    interval: np.ndarray,
    known_count: np.ndarray,
    *,
    sites: int,
    issue_count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: first interval of the known sessions, latest known plug-out.

    ``known_count`` is, per session, the number of issue times at or before its plug-out.
    """
    # each session has exactly one contribution flagged as its arrival: its first interval
    site, known_us = parts.site[parts.arrival], parts.known_us[parts.arrival]
    count = issue_count + 1
    # a session is known from the first issue time after its plug-out on: bin it there
    cell = site * count + known_count
    first = np.full(sites * count, NO_HISTORY, dtype=np.int64)
    np.minimum.at(first, cell, interval[parts.arrival])
    last = np.full(sites * count, -1, dtype=np.int64)
    np.maximum.at(last, cell, known_us)
    # then carry the earliest start and latest plug-out forward over the issue times
    history = np.minimum.accumulate(first.reshape(sites, count), axis=1)[:, :-1]
    last_end = np.maximum.accumulate(last.reshape(sites, count), axis=1)[:, :-1]
    return history, last_end


def _correction_pairs(
    parts: SiteContributions,
    interval: np.ndarray,
    known_count: np.ndarray,
    *,
    issues: IssueCounter,
    issue_count: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (cell, interval, energy) of contributions ended by T but of sessions unknown at T.

    Only sessions in flight at some issue time (plugged in at T, first interval ended by T)
    have any: their contributions are found per session first.
    """
    session = np.cumsum(parts.arrival) - 1
    first_end = np.minimum(interval[parts.arrival] + 1, n + 1)
    in_flight = known_count > issues.count_before_point(first_end)
    rows = np.flatnonzero(np.take(in_flight, session) & (interval < n))
    low = issues.count_before_point(interval[rows] + 1)  # first T >= interval end
    high = np.take(known_count, session[rows])  # T <= known_at
    counts = np.maximum(high - low, 0)
    rows_rep = np.repeat(rows, counts)
    offsets = np.arange(rows_rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
    cell = parts.site[rows_rep] * issue_count + np.repeat(low, counts) + offsets
    return cell, interval[rows_rep], parts.energy[rows_rep]


def _full_series(
    parts: SiteContributions, interval: np.ndarray, *, sites: int, n: int
) -> np.ndarray:
    """Energy [kWh] per site and grid interval ``0..n-1`` (``interval`` per contribution)."""
    inside = interval < n
    full = np.bincount(
        parts.site[inside] * n + interval[inside], weights=parts.energy[inside], minlength=sites * n
    )
    return full.astype(np.float64, copy=False).reshape(sites, n)


def _grid_origin(
    parts: SiteContributions, issues_us: np.ndarray, step_us: int, earlier: EarlierSessions | None
) -> int:
    """Return the start of interval 0 of the dense grid [us since epoch, a multiple of step].

    The earliest of: the first contribution's interval start, the grid point at or before
    ``earlier.lookback_from_us``; without either, the grid point at or before the first issue
    time (0 without issue times).
    """
    candidates = []
    if parts.site.size:
        candidates.append(int(parts.start_us.min()))
    if earlier is not None:
        candidates.append(earlier.lookback_from_us // step_us * step_us)
    if not candidates:
        candidates.append(int(issues_us[0]) // step_us * step_us if issues_us.size else 0)
    return min(candidates)


def build_known_series(
    parts: SiteContributions,
    *,
    sites: int,
    issues_us: np.ndarray,
    step_us: int,
    earlier: EarlierSessions | None = None,
) -> KnownSeries:
    """Prepare the full series of ``sites`` sites and the exact in-flight corrections.

    Parameters
    ----------
    parts
        Contributions of the sites' sessions, from any sessions: a session is known at issue
        time ``T`` when its ``plug_out_at < T``.
    sites
        Number of sites; ``parts.site`` is in ``[0, sites)``.
    issues_us
        Sorted unique issue times [us since epoch, UTC], shared by all sites.
    step_us
        Interval length [us]; the contributions' interval starts are on this grid.
    earlier
        What the sessions left out of ``parts`` tell (default: none were left out).

    Returns
    -------
    KnownSeries
        The full series on a grid of intervals that ended by the last issue time, labelled
        by their start, and per (site, issue) cell what was known at its issue time.
    """
    if issues_us.size == 0:
        keep = np.zeros(parts.site.size, dtype=bool)
        parts = SiteContributions(*(getattr(parts, f)[keep] for f in _FIELDS))
    origin = _grid_origin(parts, issues_us, step_us, earlier)
    ended = np.clip((issues_us - origin) // step_us, 0, None)
    n = int(ended.max()) if ended.size else 0
    interval = (parts.start_us - origin) // step_us
    full = _full_series(parts, interval, sites=sites, n=n)
    counter = IssueCounter(issues_us, origin_us=origin, step_us=step_us, n=n)
    known_count = counter.count_at_or_before(parts.known_us[parts.arrival])
    history, last_end = _history(
        parts, interval, known_count, sites=sites, issue_count=issues_us.size
    )
    if earlier is not None:
        first = np.where(
            earlier.first_us == NO_HISTORY, NO_HISTORY, (earlier.first_us - origin) // step_us
        )
        history = np.minimum(history, first[:, None])
        last_end = np.maximum(last_end, earlier.last_end_us[:, None])
    pair_cell, pair_interval, pair_energy = _correction_pairs(
        parts, interval, known_count, issues=counter, issue_count=issues_us.size, n=n
    )
    return KnownSeries(
        origin_us=origin,
        step_us=step_us,
        full=full,
        issues_us=issues_us,
        ended=np.tile(ended, sites),
        cell_site=np.repeat(np.arange(sites), issues_us.size),
        history=history.ravel(),
        last_end_us=last_end.ravel(),
        pair_cell=pair_cell,
        pair_interval=pair_interval,
        pair_energy=pair_energy,
    )
