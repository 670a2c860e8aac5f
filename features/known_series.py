"""The demand series of several sites as it was known at each issue time, as arrays.

The full series of every site is laid on one dense (site, interval) grid. What was not yet
known at an issue time ``T`` is the contributions of the sessions with ``plug_out_at >= T``
to intervals that had ended by ``T``: only sessions plugged in across ``T`` ("in flight") have
any, and they are few. They are listed per (site, issue) cell, so a feature is computed on the
full grid and corrected exactly with them (:mod:`features.known_windows`). See
:mod:`features.lags` for what a feature may use.

The loops over sessions and cells are compiled with numba (``cache=True``: compiled once per
machine, then loaded from ``__pycache__``).

Sessions that ended long before the first issue time can be left out of the contributions
(see :class:`EarlierSessions`): all issue times know them, so they only set where a site's
history begins and when its last session ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numba import njit

from features.arrays import empty

NO_HISTORY: Final = np.iinfo(np.int64).max
"""History start of a (site, issue) cell that knows no session yet.

Compiled into the numba kernels of other modules too (known_windows, demand_columns), whose
caches do not see a change here: after changing it, delete ``features/__pycache__``."""


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
    """Full series of every site on one dense grid plus the sessions in flight per issue.

    Built by :func:`build_known_series`; interval ``k`` starts at ``origin_us + k * step_us``
    for every site. A cell is a (site, issue) pair, numbered ``site * issues + issue``. The
    sessions in flight at cell ``c`` are ``flight_sessions[flight_start[c]:flight_start[c+1]]``
    (in session order); session ``q`` has the contributions
    ``session_first[q]:session_first[q+1]``, in time order.
    """

    origin_us: int  # start of interval 0 [us since epoch]
    step_us: int  # interval length [us]
    full: np.ndarray  # energy per site and interval [kWh], shape (sites, n)
    issues_us: np.ndarray  # sorted unique issue times [us since epoch]
    ended: np.ndarray  # per issue: number of intervals ended by its issue time
    history: np.ndarray  # per cell: first interval of known history (NO_HISTORY if none)
    last_end_us: np.ndarray  # per cell: latest known plug_out_at [us], -1 if none
    flight_start: np.ndarray  # per cell, plus one: where its in-flight sessions start
    flight_sessions: np.ndarray  # session numbers, cell after cell
    session_first: np.ndarray  # per session, plus one: its first contribution
    interval: np.ndarray  # per contribution: grid interval [-]
    energy: np.ndarray  # per contribution [kWh]


_FIELDS: Final = ("site", "start_us", "known_us", "energy", "arrival")


@njit(cache=True, nogil=True)
def _full_series(  # noqa: PLR0917 - the contribution arrays and the outputs, for numba
    site: np.ndarray,
    interval: np.ndarray,
    energy: np.ndarray,
    arrival: np.ndarray,
    full: np.ndarray,
    first: np.ndarray,
) -> int:
    """Add the energy [kWh] per site and grid ``interval`` into the zeroed ``full``.

    Energy is added in contribution order; intervals past the grid are left out. Also writes
    per session where its contributions start (sessions start at their arrival), then the
    number of contributions, to ``first``; returns the number of sessions.
    """
    n = full.shape[1]
    sessions = 0
    for k in range(site.size):
        if interval[k] < n:
            full[site[k], interval[k]] += energy[k]
        first[sessions] = k  # kept when k is an arrival (no branch: arrivals are irregular)
        sessions += arrival[k]
    first[sessions] = site.size
    return sessions


@njit(cache=True, nogil=True)
def _known_history(  # noqa: PLR0917 - per-session arrays, for numba
    site: np.ndarray,
    first_interval: np.ndarray,
    known_us: np.ndarray,
    known_count: np.ndarray,
    sites: int,
    issues: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the first interval and the latest plug-out of the sessions known then.

    Arrays per session; ``known_count`` is the number of issue times at or before its
    plug-out, so the session is known from issue ``known_count`` on.
    """
    history = np.full((sites, issues + 1), NO_HISTORY, dtype=np.int64)
    last_end = np.full((sites, issues + 1), -1, dtype=np.int64)
    for q in range(site.size):
        s, c = site[q], known_count[q]
        history[s, c] = min(history[s, c], first_interval[q])
        last_end[s, c] = max(last_end[s, c], known_us[q])
    for s in range(sites):  # a session known at one issue is known at all later ones
        for c in range(1, issues + 1):
            history[s, c] = min(history[s, c], history[s, c - 1])
            last_end[s, c] = max(last_end[s, c], last_end[s, c - 1])
    return history[:, :issues], last_end[:, :issues]


@njit(cache=True, nogil=True)
def _sessions_in_flight(
    site: np.ndarray, first_flight: np.ndarray, known_count: np.ndarray, sites: int, issues: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the sessions in flight (issues ``first_flight[q] <= i < known_count[q]``).

    Returns the cells' offsets (``sites * issues + 1``) and the session numbers, cell after
    cell, each cell's in session order.
    """
    start = np.zeros(sites * issues + 1, dtype=np.int64)
    for q in range(site.size):
        for i in range(first_flight[q], known_count[q]):
            start[site[q] * issues + i + 1] += 1
    start = np.cumsum(start)
    sessions = np.empty(start[-1], dtype=np.int64)
    filled = start[:-1].copy()
    for q in range(site.size):
        for i in range(first_flight[q], known_count[q]):
            cell = site[q] * issues + i
            sessions[filled[cell]] = q
            filled[cell] += 1
    return start, sessions


def _count_at_or_before(
    sorted_values: np.ndarray, times: np.ndarray, origin: int, step: int, n: int
) -> np.ndarray:
    """``np.searchsorted(sorted_values, times, side="right")``, by a table over the grid.

    The table holds, for each grid point ``origin + k * step`` (``k`` in ``0..n``), how many
    values lie before it; a time then needs only the few values between its grid point and
    itself. Times off the table fall back to a binary search.
    """
    if origin == 0 and step == 1:
        points = times
    else:  # numpy divides by one number fast (libdivide), numba does not
        points = np.subtract(times, origin, out=empty(times.size, np.int64))
        points //= step
    return _count_by_table(sorted_values, times, points, origin, step, n)


@njit(cache=True, nogil=True)
def _count_by_table(  # noqa: PLR0917 - the values, the times and the grid, for numba
    sorted_values: np.ndarray,
    times: np.ndarray,
    points: np.ndarray,
    origin: int,
    step: int,
    n: int,
) -> np.ndarray:
    """:func:`_count_at_or_before`, given each time's grid point ``points`` (at or before it)."""
    before = np.empty(n + 1, dtype=np.int64)  # values before each grid point, by a merge
    c = 0
    for k in range(n + 1):
        while c < sorted_values.size and sorted_values[c] < origin + k * step:
            c += 1
        before[k] = c
    count = np.empty(times.size, dtype=np.int64)
    for q in range(times.size):
        k = points[q]
        if k < 0 or k > n:
            count[q] = np.searchsorted(sorted_values, times[q], side="right")
            continue
        c = before[k]
        while c < sorted_values.size and sorted_values[c] <= times[q]:
            c += 1
        count[q] = c
    return count


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
    """Prepare the full series of ``sites`` sites and the sessions in flight at each issue.

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
    if parts.site.size and not 0 <= int(parts.site.min()) <= int(parts.site.max()) < sites:
        msg = f"site numbers must lie in [0, {sites}); got {parts.site.min()}..{parts.site.max()}"
        raise ValueError(msg)
    if issues_us.size == 0:
        keep = np.zeros(parts.site.size, dtype=bool)
        parts = SiteContributions(*(getattr(parts, f)[keep] for f in _FIELDS))
    origin = _grid_origin(parts, issues_us, step_us, earlier)
    ended = np.clip((issues_us - origin) // step_us, 0, None)
    n = int(ended.max()) if ended.size else 0
    full = empty((sites, n))
    full.fill(0.0)
    interval = np.subtract(parts.start_us, origin, out=empty(parts.start_us.size, np.int64))
    interval //= step_us  # numpy divides by one number fast (libdivide), numba does not
    session_first = empty(parts.site.size + 1, np.int64)
    arrival = parts.arrival.astype(np.bool_, copy=False)  # 0/1: counted, not indexed
    sessions = _full_series(parts.site, interval, parts.energy, arrival, full, session_first)
    session_first = session_first[: sessions + 1]
    first = session_first[:-1]  # each session's first contribution
    site, known_us, first_interval = parts.site[first], parts.known_us[first], interval[first]
    known_count = _count_at_or_before(issues_us, known_us, origin, step_us, n)
    history, last_end = _known_history(
        site, first_interval, known_us, known_count, sites, issues_us.size
    )
    if earlier is not None:
        early = np.where(
            earlier.first_us == NO_HISTORY, NO_HISTORY, (earlier.first_us - origin) // step_us
        )
        history = np.minimum(history, early[:, None])
        last_end = np.maximum(last_end, earlier.last_end_us[:, None])
    # in flight from the first issue time after its first interval ended to its plug-out
    first_flight = _count_at_or_before(ended, first_interval, 0, 1, n)
    flight_start, flight_sessions = _sessions_in_flight(
        site, first_flight, known_count, sites, issues_us.size
    )
    return KnownSeries(
        origin_us=origin,
        step_us=step_us,
        full=full,
        issues_us=issues_us,
        ended=ended,
        history=history.ravel(),
        last_end_us=last_end.ravel(),
        flight_start=flight_start,
        flight_sessions=flight_sessions,
        session_first=session_first,
        interval=interval,
        energy=parts.energy,
    )
