"""Training targets: each site's full demand series at the target intervals, outages masked.

The target of a row is the energy [kWh] of its interval in the full series (every session,
known or not at issue time): it is what a forecast is scored against. It is null after the end
of the known data and in outages (:mod:`features.outages`).

Only a stretch of each site's series is summed: the target intervals, widened just enough that
the outage rule sees exactly what it would see on the whole series (:func:`compute_target_grids`):
the complete idle run around every target interval and the reference window before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import numpy as np
from numba import njit

from features.arrays import empty
from features.outages import OUTAGE_REFERENCE, compute_outage_masks
from features.time_grid import ONE_US

_INT_MAX: Final = np.iinfo(np.int64).max
_INT_MIN: Final = np.iinfo(np.int64).min


@dataclass(frozen=True)
class TargetGrids:
    """Per site, the stretch of intervals ``[first, stop)`` whose series the targets need.

    Intervals are numbered from the epoch (interval ``k`` starts at ``k * step``).
    """

    first: np.ndarray  # first interval of the stretch [-]
    stop: np.ndarray  # end of the stretch (exclusive) [-]
    until_us: np.ndarray  # end of the known data [us since epoch]
    has: np.ndarray  # whether the site has any session


@njit(cache=True, nogil=True)
def _site_extremes(  # noqa: PLR0917 - the session arrays, for numba
    site: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    plug_out_us: np.ndarray,
    sites: int,
    lo: int,
    hi: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return per site the extremes of its sessions that set its target grid.

    Whether it has any session, its first interval, its latest plug-out [us], the last
    interval of its sessions that ended before interval ``lo`` and the first interval of
    those starting at ``hi`` or later (extreme int64 values where there is none).
    """
    has = np.zeros(sites, dtype=np.bool_)
    origin = np.full(sites, _INT_MAX, dtype=np.int64)
    until = np.full(sites, _INT_MIN, dtype=np.int64)
    previous = np.full(sites, _INT_MIN, dtype=np.int64)
    following = np.full(sites, _INT_MAX - 1, dtype=np.int64)
    for q in range(site.size):
        s = site[q]
        has[s] = True
        origin[s] = min(origin[s], first[q])
        until[s] = max(until[s], plug_out_us[q])
        if last[q] < lo:
            previous[s] = max(previous[s], last[q])
        if first[q] >= hi:
            following[s] = min(following[s], first[q])
    return has, origin, until, previous, following


def compute_target_grids(
    site: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    plug_out_us: np.ndarray,
    *,
    sites: int,
    targets: tuple[int, int],
    step_us: int,
    known_until_us: int | None,
) -> TargetGrids:
    """Find the stretch of each site's series that gives its targets exactly.

    Parameters
    ----------
    site, first, last, plug_out_us
        Per session: site number, first and last interval it is plugged in [-] (numbered from
        the epoch) and its ``plug_out_at`` [us since epoch]. All sessions of the sites.
    sites
        Number of sites.
    targets
        First and end (exclusive) of the target intervals [-].
    step_us
        Interval length [us].
    known_until_us
        End of the known data [us since epoch]; None for each site's latest ``plug_out_at``.

    Returns
    -------
    TargetGrids
        Per site: the stretch ``[first, stop)`` of intervals [-] (numbered from the epoch,
        interval ``k`` starting at ``k * step_us`` [UTC]) whose sum and outage mask give
        every target interval exactly, the end of its known data ``until_us`` [us since
        epoch] and whether it has any session.
    """
    lo, hi = targets
    has, origin, until, previous, following = _site_extremes(
        site, first, last, plug_out_us, sites, lo, hi
    )
    origin = np.where(has, origin, 0)
    until = np.where(has, until, 0) if known_until_us is None else np.full(sites, known_until_us)
    end = origin + np.maximum(1, -(-(until - origin * step_us) // step_us))
    # the idle run holding interval lo - 1 starts after the last session that ended before lo
    previous = np.where(previous == _INT_MIN, lo - 1, previous)
    reference = max(1, OUTAGE_REFERENCE // timedelta(microseconds=step_us))
    start = np.maximum(origin, np.minimum(lo, previous + 1) - reference)
    start = np.minimum(start, end - 1)
    # the idle run holding interval hi - 1 ends where the next session starts (or the data)
    stop = np.minimum(end, following + 1)
    return TargetGrids(start, stop, until, has)


@njit(cache=True, nogil=True)
def _stretch_sums(  # noqa: PLR0917 - contribution arrays and the stretches, for numba
    site: np.ndarray,
    start_us: np.ndarray,
    energy: np.ndarray,
    arrival: np.ndarray,
    first: np.ndarray,
    length: np.ndarray,
    offset: np.ndarray,
    step_us: int,
    total: np.ndarray,
    arrivals: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Sum energy [kWh], arrivals and contributions per interval of the sites' stretches.

    The stretches are laid end to end (site ``s`` from ``offset[s]``) in the zeroed outputs;
    energy is summed in contribution order.
    """
    for k in range(site.size):
        s = site[k]
        at = start_us[k] // step_us - first[s]
        if 0 <= at < length[s]:
            total[offset[s] + at] += energy[k]
            counts[offset[s] + at] += 1
            arrivals[offset[s] + at] += arrival[k]


@njit(cache=True, nogil=True)
def _gather_rows(  # noqa: PLR0917 - the rows, the stretches and the outputs, for numba
    site: np.ndarray,
    interval: np.ndarray,
    first: np.ndarray,
    length: np.ndarray,
    offset: np.ndarray,
    has: np.ndarray,
    until_us: np.ndarray,
    step_us: int,
    energy: np.ndarray,
    missing: np.ndarray,
    value: np.ndarray,
    is_missing: np.ndarray,
) -> None:
    """Each row's energy [kWh] (NaN unless known and not missing) and outage flag."""
    row = 0
    for s in site:
        for j in interval:
            at = j - first[s]
            if not has[s] or at < 0 or at >= length[s]:
                is_missing[row] = False
                value[row] = 0.0
            else:
                is_missing[row] = missing[offset[s] + at]
                value[row] = energy[offset[s] + at]
            known = has[s] and (j + 1) * step_us <= until_us[s]
            if is_missing[row] or not known:
                value[row] = np.nan
            row += 1


def compute_targets(
    site: np.ndarray,
    interval: np.ndarray,
    *,
    parts: dict[str, np.ndarray],
    grids: TargetGrids,
    resolution: timedelta,
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the target rows' full-series truth and outage flags on the sites' grids.

    Parameters
    ----------
    site
        The site numbers of the rows' copies: the target rows are ``interval`` for each site
        in ``site``, copy after copy.
    interval
        The target intervals [-] (numbered from the epoch) of each copy.
    parts
        Contribution arrays (:func:`features.session_split.split_at_intervals`) of at least
        every session plugged in during the grids, with their site number in ``site``.
    grids
        From :func:`compute_target_grids`.
    resolution
        Interval length. The outage rule is :func:`features.outages.compute_outage_masks`,
        the one :func:`~features.outages.mark_outages` applies to the whole series.

    Returns
    -------
    tuple of numpy.ndarray
        Per row (``site.size * interval.size``): the energy [kWh] of its interval in the full
        series (every session passed),
        NaN when the interval ends after the site's known data, lies in an outage, or the
        site has no session; and ``is_missing`` (bool), whether the interval lies in an
        outage.
    """
    step_us = resolution // ONE_US
    length = grids.stop - grids.first
    offset = np.cumsum(length) - length
    sums = empty((3, int(length.sum())))  # energy [kWh], arrivals, contributions (exact)
    sums.fill(0.0)
    energy, arrivals, plugged = sums
    _stretch_sums(
        parts["site"], parts["start"], parts["energy"], parts["arrival"],
        grids.first, length, offset, step_us, energy, arrivals, plugged,
    )  # fmt: skip
    # every contribution has a car plugged in for part of its interval or is an arrival, so
    # an interval is idle exactly when it has none: their count stands in for occupancy
    missing = compute_outage_masks(arrivals, plugged, lengths=length, resolution=resolution)
    value = empty(site.size * interval.size)
    is_missing = empty(value.size, np.bool_)
    _gather_rows(
        site, interval, grids.first, length, offset, grids.has, grids.until_us,
        step_us, energy, missing, value, is_missing,
    )  # fmt: skip
    return value, is_missing
