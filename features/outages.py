"""Outage detection: long silences at normally busy sites are missing data, not zero demand.

:func:`mark_outages` marks as missing each maximal run of intervals with no session plugged in
that lasts at least ``min_gap`` and during which, at the arrival rate of the ``reference``
window just before it, at least ``min_expected_arrivals`` arrivals were expected. The chance of
such a silence at a working site is ``exp(-min_expected_arrivals)`` (Poisson arrivals), about
2e-9 at the default of 20, so these runs are data outages rather than zero demand. A run is
judged only when the full ``reference`` window of data precedes it (the first weeks of a new
site are never marked). On the Perth & Kinross data (hourly) this marks, for example, the
24 days without a session at Rie-Achan Road, Pitlochry, from 2017-02-28, while Christmas Day
at Broxden (26 h, about 14 arrivals expected) stays a real zero.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import polars as pl
from numba import njit

OUTAGE_MIN_GAP: Final = timedelta(hours=24)
OUTAGE_REFERENCE: Final = timedelta(days=28)
OUTAGE_MIN_EXPECTED_ARRIVALS: Final = 20.0


def _series_step(series: pl.DataFrame) -> timedelta | None:
    """Smallest positive gap between consecutive intervals of a site (the resolution)."""
    return (
        series.select(pl.col("interval_start").sort().diff().over("site_id").alias("step"))
        .filter(pl.col("step") > timedelta(0))
        .select(pl.min("step"))
        .item()
    )


def compute_outage_mask(
    arrivals: np.ndarray,
    occupied: np.ndarray,
    *,
    resolution: timedelta,
    min_gap: timedelta = OUTAGE_MIN_GAP,
    reference: timedelta = OUTAGE_REFERENCE,
    min_expected_arrivals: float = OUTAGE_MIN_EXPECTED_ARRIVALS,
) -> np.ndarray:
    """Return which intervals of one site's complete grid lie in an outage (module docstring).

    Parameters
    ----------
    arrivals, occupied
        Per interval, in time order: arrivals [-] and occupied connectors [-].
    resolution
        Interval length of the grid.
    min_gap, reference, min_expected_arrivals
        As for :func:`mark_outages`.
    """
    return compute_outage_masks(
        arrivals,
        occupied,
        lengths=np.array([arrivals.size]),
        resolution=resolution,
        min_gap=min_gap,
        reference=reference,
        min_expected_arrivals=min_expected_arrivals,
    )


def compute_outage_masks(
    arrivals: np.ndarray,
    occupied: np.ndarray,
    *,
    lengths: np.ndarray,
    resolution: timedelta,
    min_gap: timedelta = OUTAGE_MIN_GAP,
    reference: timedelta = OUTAGE_REFERENCE,
    min_expected_arrivals: float = OUTAGE_MIN_EXPECTED_ARRIVALS,
) -> np.ndarray:
    """Return :func:`compute_outage_mask` of several sites' grids laid end to end, in one pass.

    Parameters
    ----------
    arrivals, occupied
        Per interval, site after site, each in time order: arrivals [-] (whole counts, so
        sums over them are exact) and occupied connectors [-].
    lengths
        Number of intervals of each site, in order; they sum to ``arrivals.size``.
    resolution, min_gap, reference, min_expected_arrivals
        As for :func:`compute_outage_mask`.

    A site's grid may be a stretch of its series: the mask then equals the whole series' mask
    on every idle run that lies within the stretch, ``reference`` or more after its start.
    """
    mask = np.zeros(arrivals.size, dtype=bool)
    reference_n = max(1, reference // resolution)
    hours = resolution / timedelta(hours=1)
    _mark_outages(
        arrivals, occupied, np.cumsum(lengths) - lengths, lengths, mask,
        reference_n, min_gap / resolution, hours, min_expected_arrivals,
    )  # fmt: skip
    return mask


@njit(cache=True, nogil=True)
def _mark_outages(  # noqa: PLR0917 - the arrays and the rule's parameters, for numba
    arrivals: np.ndarray,
    occupied: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    mask: np.ndarray,
    reference_n: int,
    min_run: float,
    hours: float,
    min_expected_arrivals: float,
) -> None:
    """Set ``mask`` on the outage runs of each site's grid (``lengths[s]`` from ``offsets[s]``).

    ``reference_n`` is the reference window [intervals], ``min_run`` the shortest run
    [intervals], ``hours`` the interval length [h].
    """
    for site in range(lengths.size):
        first, stop = offsets[site], offsets[site] + lengths[site]
        k = first
        while k < stop:
            if arrivals[k] != 0 or occupied[k] > 0:
                k += 1
                continue
            start = k  # an idle run [start, k)
            while k < stop and arrivals[k] == 0 and occupied[k] <= 0:
                k += 1
            # judged only when long and with a full reference window before it
            if start - first < reference_n or k - start < min_run:
                continue
            before = 0.0
            for j in range(start - reference_n, start):
                before += arrivals[j]
            expected = before / (reference_n * hours) * (k - start) * hours
            if expected >= min_expected_arrivals:
                mask[start:k] = True


def mark_outages(
    series: pl.DataFrame,
    *,
    min_gap: timedelta = OUTAGE_MIN_GAP,
    reference: timedelta = OUTAGE_REFERENCE,
    min_expected_arrivals: float = OUTAGE_MIN_EXPECTED_ARRIVALS,
) -> pl.DataFrame:
    """Mark long silences at normally busy sites as missing data (``is_missing``).

    The rule is the one in the module docstring. It looks only at the run itself and the
    ``reference`` window before it, so a run that reaches the end of the data is judged by its
    length so far.

    Parameters
    ----------
    series
        Demand series (``DEMAND_SERIES_SCHEMA``) on a complete grid of one resolution.
    min_gap
        Shortest run of intervals without any session plugged in that can be an outage.
    reference
        Window just before a run whose arrival rate [1/h] gives the expected arrivals.
    min_expected_arrivals
        Expected arrivals [-] during the run at or above which it is marked missing.

    Returns
    -------
    polars.DataFrame
        ``series`` sorted by site and interval, with ``is_missing`` also set on outage
        intervals (existing marks kept).
    """
    step = _series_step(series)
    ordered = series.sort("site_id", "interval_start")
    if step is None:
        return ordered
    masks = [
        compute_outage_mask(
            part["arrivals"].to_numpy(),
            part["occupied_connectors"].to_numpy(),
            resolution=step,
            min_gap=min_gap,
            reference=reference,
            min_expected_arrivals=min_expected_arrivals,
        )
        for part in ordered.partition_by("site_id", maintain_order=True)
    ]
    outage = pl.Series("_outage", np.concatenate(masks), dtype=pl.Boolean)
    return ordered.with_columns(pl.col("is_missing") | outage)
