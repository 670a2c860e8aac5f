"""Window statistics of the demand series as known at each issue time, per (site, issue) cell.

A cell's window holds the last ``width`` intervals that ended by its issue time ``T``, clipped
to its known history (from the first plug-in of a session known at ``T``). Each statistic is
computed on the full series of :class:`features.known_series.KnownSeries` for all cells at
once and then corrected exactly for the sessions not yet known at ``T`` (the correction pairs).
The lag features built from them, and what they may use, are in :mod:`features.lags`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from features.known_series import NO_HISTORY, KnownSeries


def _window_start(known: KnownSeries, width: int) -> np.ndarray:
    """First interval of each cell's window: ``width`` back from T, within known history."""
    return np.maximum(known.ended - width, known.history)


def compute_window_means(known: KnownSeries, *, cumulative: np.ndarray, width: int) -> np.ndarray:
    """Return per cell the mean energy [kWh] per interval over its window (NaN if empty).

    Parameters
    ----------
    known
        The known series (:func:`features.known_series.build_known_series`).
    cumulative
        Cumulative sums of ``known.full`` per site, with a leading zero [kWh], shape
        ``(sites, n + 1)``; shared by all window widths.
    width
        Window length [intervals].

    Returns
    -------
    numpy.ndarray
        One value per (site, issue) cell.
    """
    start = np.minimum(_window_start(known, width), known.ended)
    total = cumulative[known.cell_site, known.ended] - cumulative[known.cell_site, start]
    in_window = known.pair_interval >= start[known.pair_cell]
    total -= np.bincount(
        known.pair_cell[in_window],
        weights=known.pair_energy[in_window],
        minlength=known.ended.size,
    )
    count = known.ended - start
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def compute_window_maxima(known: KnownSeries, *, width: int) -> np.ndarray:
    """Return per cell the largest energy [kWh] of an interval in its window (NaN if empty).

    Parameters
    ----------
    known
        The known series (:func:`features.known_series.build_known_series`).
    width
        Window length [intervals].

    Returns
    -------
    numpy.ndarray
        One value per (site, issue) cell; cells with sessions unknown at their issue time
        inside the window are recomputed exactly without them.
    """
    _sites, n = known.full.shape
    start = np.minimum(_window_start(known, width), known.ended)
    flat = known.full.ravel()
    if flat.size == 0:
        return np.full(start.size, np.nan)
    bounds = np.stack((known.cell_site * n + start, known.cell_site * n + known.ended), axis=1)
    # maximum over [start, ended) of each cell in one C pass; odd slices are ignored. A window
    # that ends the grid is cut one short (reduceat needs indices inside), so add that value
    result = np.maximum.reduceat(flat, np.minimum(bounds.ravel(), flat.size - 1))[::2]
    at_end = bounds[:, 1] == flat.size
    result[at_end] = np.maximum(result[at_end], flat[-1])
    result[known.ended <= start] = np.nan
    in_window = known.pair_interval >= known.ended[known.pair_cell] - width
    corrected = np.unique(known.pair_cell[in_window])
    if corrected.size:  # cells with sessions unknown at T inside the window: exactly
        result[corrected] = _corrected_max(known, width, corrected, in_window)
    return result


def _corrected_max(
    known: KnownSeries, width: int, cells: np.ndarray, in_window: np.ndarray
) -> np.ndarray:
    """Window maxima of ``cells`` after subtracting the energy of sessions unknown at T."""
    base = known.ended[cells] - width
    index = base[:, None] + np.arange(width)[None, :]
    n = known.full.shape[1]
    # positions before the grid are clipped here and excluded by ``valid`` below
    position = known.cell_site[cells][:, None] * n + index
    values = np.take(known.full.ravel(), position, mode="clip")
    row = np.searchsorted(cells, known.pair_cell[in_window])
    column = known.pair_interval[in_window] - base[row]
    np.subtract.at(values, (row, column), known.pair_energy[in_window])
    valid = index >= _window_start(known, width)[cells][:, None]
    result = np.where(valid, values, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isneginf(result), np.nan, result)


def compute_ewm_levels(known: KnownSeries, *, half_life: int) -> np.ndarray:
    """Return per cell the exponentially weighted level [kWh] of the intervals ended by T.

    The level starts from zero at the start of the grid (``known.origin_us``) and is
    updated once per interval (``adjust=False``), so older intervals weigh less by half
    every ``half_life`` intervals.

    Parameters
    ----------
    known
        The known series (:func:`features.known_series.build_known_series`).
    half_life
        Half-life [intervals], at least 1.

    Returns
    -------
    numpy.ndarray
        One value per (site, issue) cell; NaN for a cell without known history.
    """
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    issues = known.issues_us.size
    level = np.zeros(known.ended.size)
    padded = np.zeros(known.full.shape[1] + 1)
    for site, row in enumerate(known.full):  # per site: faster than one ewm_mean().over()
        padded[1:] = row
        levels = pl.Series(padded).ewm_mean(alpha=alpha, adjust=False).to_numpy()
        cells = slice(site * issues, (site + 1) * issues)  # the cells of a site are consecutive
        level[cells] = levels[known.ended[cells]]
    lag = known.ended[known.pair_cell] - 1 - known.pair_interval
    weights = alpha * (1.0 - alpha) ** lag * known.pair_energy
    level = level - np.bincount(known.pair_cell, weights=weights, minlength=level.size)
    return np.where(known.history == NO_HISTORY, np.nan, level)
