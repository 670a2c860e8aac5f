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


def reduce_per_site(
    values: np.ndarray, site: np.ndarray, *, sites: int, reduce: np.ufunc, fill: int
) -> np.ndarray:
    """Reduce int64 ``values`` per site number with ``reduce``, starting from ``fill``."""
    result = np.full(sites, fill, dtype=np.int64)
    reduce.at(result, site, values)
    return result


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
    has = np.bincount(site, minlength=sites) > 0
    origin = reduce_per_site(first, site, sites=sites, reduce=np.minimum, fill=_INT_MAX)
    origin = np.where(has, origin, 0)
    until = reduce_per_site(plug_out_us, site, sites=sites, reduce=np.maximum, fill=_INT_MIN)
    until = np.where(has, until, 0) if known_until_us is None else np.full(sites, known_until_us)
    end = origin + np.maximum(1, -(-(until - origin * step_us) // step_us))
    # the idle run holding interval lo - 1 starts after the last session that ended before lo
    ended_before = last < lo
    previous = reduce_per_site(
        last[ended_before], site[ended_before], sites=sites, reduce=np.maximum, fill=_INT_MIN
    )
    previous = np.where(previous == _INT_MIN, lo - 1, previous)
    # the idle run holding interval hi - 1 ends where the next session starts (or the data)
    later = first >= hi
    following = reduce_per_site(
        first[later], site[later], sites=sites, reduce=np.minimum, fill=_INT_MAX - 1
    )
    reference = max(1, OUTAGE_REFERENCE // timedelta(microseconds=step_us))
    start = np.maximum(origin, np.minimum(lo, previous + 1) - reference)
    start = np.minimum(start, end - 1)
    stop = np.minimum(end, following + 1)
    return TargetGrids(start, stop, until, has)


def compute_targets(
    row_site: np.ndarray,
    row_interval: np.ndarray,
    *,
    parts: dict[str, np.ndarray],
    grids: TargetGrids,
    resolution: timedelta,
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the target rows' full-series truth and outage flags on the sites' grids.

    Parameters
    ----------
    row_site, row_interval
        Per target row: site number and interval [-] (numbered from the epoch).
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
        Per row: the energy [kWh] of its interval in the full series (every session passed),
        NaN when the interval ends after the site's known data, lies in an outage, or the
        site has no session; and ``is_missing`` (bool), whether the interval lies in an
        outage.
    """
    step_us = resolution // ONE_US
    site = parts["site"]
    length = grids.stop - grids.first
    offset = np.cumsum(length) - length
    index = parts["start"] // step_us - grids.first[site]
    keep = (index >= 0) & (index < length[site])
    flat = (offset[site] + index)[keep]
    size = int(length.sum())
    energy = np.bincount(flat, weights=parts["energy"][keep], minlength=size).astype(
        np.float64, copy=False
    )
    arrivals = np.bincount(flat[parts["arrival"][keep]], minlength=size)
    # every contribution has a car plugged in for part of its interval or is an arrival, so
    # an interval is idle exactly when it has none: their count stands in for occupancy
    plugged = np.bincount(flat, minlength=size)
    missing = compute_outage_masks(arrivals, plugged, lengths=length, resolution=resolution)
    # in place where possible: fresh pages (page faults) cost more than the arithmetic here
    at = np.take(grids.first, row_site)
    np.subtract(row_interval, at, out=at)  # position in the site's stretch
    has = np.take(grids.has, row_site)
    last = np.take(length, row_site)
    inside = (at >= 0) & (at < last) & has
    last -= 1
    np.minimum(at, last, out=at)
    np.maximum(at, 0, out=at)
    at += np.take(offset, row_site)
    del last
    is_missing = inside & np.take(missing, at)
    value = np.take(energy, at)
    value[~inside] = 0.0
    end_us = np.add(row_interval, 1, out=at)
    end_us *= step_us
    known = end_us <= np.take(grids.until_us, row_site)
    known &= has
    value[~known | is_missing] = np.nan
    return value, is_missing
