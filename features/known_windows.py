"""Lags and window statistics of the demand series as known at each issue time.

A cell is a (site, issue) pair. Its window holds the last ``width`` intervals that ended by its
issue time ``T``, clipped to its known history (from the first plug-in of a session known at
``T``). Each statistic is read off the full series of
:class:`features.known_series.KnownSeries` and corrected exactly for the sessions in flight at
``T`` (plugged in before ``T``, not yet known). The loops are compiled with numba; corrections
are summed in session order, so results do not depend on how the loops are arranged. The lag
features built from them, and what they may use, are in :mod:`features.lags`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from features.arrays import empty
from features.known_series import NO_HISTORY, KnownSeries

_Flight = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _flight(known: KnownSeries) -> _Flight:
    """Return the in-flight sessions of :class:`KnownSeries` as one tuple for numba."""
    return (
        known.flight_start,
        known.flight_sessions,
        known.session_first,
        known.interval,
        known.energy,
    )


@njit(cache=True, nogil=True, inline="always")
def _unknown_energy(flight: _Flight, cell: int, lo: int, hi: int) -> float:
    """Energy [kWh] of the sessions in flight at ``cell`` in intervals ``[lo, hi)``."""
    flight_start, flight_sessions, session_first, interval, energy = flight
    total = 0.0
    for p in range(flight_start[cell], flight_start[cell + 1]):
        q = flight_sessions[p]
        for k in range(session_first[q], session_first[q + 1]):
            if interval[k] >= hi:  # a session's contributions are in time order
                break
            if interval[k] >= lo:
                total += energy[k]
    return total


@njit(cache=True, nogil=True)
def _cell_statistics(  # noqa: PLR0917 - the arrays of KnownSeries and the windows, for numba
    full: np.ndarray,
    ended: np.ndarray,
    history: np.ndarray,
    flight: _Flight,
    mean_widths: np.ndarray,
    max_widths: np.ndarray,
    alpha: float,
    window: np.ndarray,
    cumulative: np.ndarray,
    levels: np.ndarray,
) -> np.ndarray:
    """Per cell: the window means, then the window maxima, then the EWM level [kWh].

    Returns an array of shape ``(mean_widths.size + max_widths.size + 1, cells)``;
    ``window`` is scratch space of at least the longest of ``max_widths``, ``cumulative`` and
    ``levels`` of shape ``(intervals + 1, sites)``.
    """
    sites, n = full.shape
    issues = ended.size
    result = np.empty((mean_widths.size + max_widths.size + 1, history.size))
    # per interval and site: cumulative sum with a leading zero, EWM level after k intervals
    # from zero [kWh]; all sites in one pass, so their additions overlap in the processor
    cumulative[0], levels[0] = 0.0, 0.0
    for k in range(n):
        for site in range(sites):
            value = full[site, k]
            cumulative[k + 1, site] = cumulative[k, site] + value
            levels[k + 1, site] = levels[k, site] + alpha * (value - levels[k, site])
    between = np.empty(issues)  # of one site: maxima between consecutive issues [kWh]
    for site in range(sites):
        series = full[site]
        _maxima_between(series, ended, between)
        for i in range(issues):
            cell, e = site * issues + i, ended[i]
            row = 0
            for width in mean_widths:
                start = min(max(e - width, history[cell]), e)
                total = (
                    cumulative[e, site]
                    - cumulative[start, site]
                    - _unknown_energy(flight, cell, start, e)
                )
                result[row, cell] = total / (e - start) if start < e else np.nan
                row += 1
            for width in max_widths:
                result[row, cell] = _window_maximum(
                    series, i, ended, between, history[cell], flight, cell, width, window
                )
                row += 1
            result[row, cell] = _ewm_level(levels[e, site], e, history[cell], flight, cell, alpha)
    return result


@njit(cache=True, nogil=True, inline="always")
def _maximum(values: np.ndarray, lo: int, hi: int) -> float:
    """Largest of ``values[lo:hi]`` (not empty, no NaN): a plain loop, faster than ``max()``."""
    largest = values[lo]
    for k in range(lo + 1, hi):
        if values[k] > largest:  # noqa: PLR1730 - faster than max() in numba
            largest = values[k]
    return largest


@njit(cache=True, nogil=True)
def _maxima_between(series: np.ndarray, ended: np.ndarray, out: np.ndarray) -> None:
    """Write the largest of ``series[ended[i - 1]:ended[i]]`` to ``out[i]`` (-inf: empty).

    ``ended`` is non-decreasing; ``ended[-1]`` counts as 0.
    """
    previous = 0
    for i in range(ended.size):
        out[i] = _maximum(series, previous, ended[i]) if ended[i] > previous else -np.inf
        previous = ended[i]


@njit(cache=True, nogil=True, inline="always")
def _range_maximum(
    series: np.ndarray, ended: np.ndarray, between: np.ndarray, i: int, lo: int
) -> float:
    """Largest of ``series[lo:ended[i]]`` (not empty), from :func:`_maxima_between`'s values.

    Whole stretches between issues come from ``between``, the rest is read off ``series``.
    """
    largest = -np.inf
    k = i
    while k >= 0 and (ended[k - 1] if k > 0 else 0) >= lo:  # stretch k lies in the range
        largest = max(largest, between[k])
        k -= 1
    if k >= 0 and ended[k] > lo:
        largest = max(largest, _maximum(series, lo, ended[k]))
    return largest


@njit(cache=True, nogil=True, inline="always")
def _window_maximum(  # noqa: PLR0917 - one cell's window, for numba
    series: np.ndarray,
    i: int,
    ended: np.ndarray,
    between: np.ndarray,
    first: int,
    flight: _Flight,
    cell: int,
    width: int,
    window: np.ndarray,
) -> float:
    """Largest energy [kWh] of the intervals ``[max(e - width, first), e)`` as known at ``cell``.

    ``e = ended[i]`` for the cell's issue ``i``; ``series`` is the site's full series,
    ``between`` its :func:`_maxima_between`, ``window`` scratch space of at least ``width``.
    """
    flight_start, flight_sessions, session_first, interval, energy = flight
    e = ended[i]
    start = min(max(e - width, first), e)
    if start == e:
        return np.nan
    if flight_start[cell + 1] == flight_start[cell]:  # nothing in flight: the full series
        return _range_maximum(series, ended, between, i, start)
    base = e - width  # window[k] is interval base + k
    window[start - base : width] = series[start:e]
    for p in range(flight_start[cell], flight_start[cell + 1]):
        q = flight_sessions[p]
        for k in range(session_first[q], session_first[q + 1]):
            if interval[k] >= e:
                break
            if interval[k] >= start:
                window[interval[k] - base] -= energy[k]
    return _maximum(window, start - base, width)


@njit(cache=True, nogil=True, inline="always")
def _ewm_level(  # noqa: PLR0917 - one cell, for numba
    level: float, e: int, first: int, flight: _Flight, cell: int, alpha: float
) -> float:
    """Return the EWM level after ``e`` intervals as known at ``cell`` (NaN without history).

    ``level`` is the level of the full series, ``first`` the cell's first known interval.
    """
    flight_start, flight_sessions, session_first, interval, energy = flight
    if first == NO_HISTORY:
        return np.nan
    unknown = 0.0
    for p in range(flight_start[cell], flight_start[cell + 1]):
        q = flight_sessions[p]
        for k in range(session_first[q], session_first[q + 1]):
            if interval[k] >= e:
                break
            unknown += alpha * (1.0 - alpha) ** float(e - 1 - interval[k]) * energy[k]
    return level - unknown


def compute_cell_statistics(
    known: KnownSeries, *, mean_widths: list[int], max_widths: list[int], half_life: int
) -> np.ndarray:
    """Return per (site, issue) cell its window means, window maxima and EWM level [kWh].

    Parameters
    ----------
    known
        The known series (:func:`features.known_series.build_known_series`).
    mean_widths
        Window lengths [intervals] of the means (energy per interval over the window, NaN
        when the window is empty); the sums are differences of cumulative sums of the full
        series, corrected.
    max_widths
        Window lengths [intervals] of the maxima (largest energy of an interval in the
        window, NaN when empty).
    half_life
        Half-life [intervals] of the exponentially weighted level (at least 1): it starts
        from zero at the start of the grid (``known.origin_us``) and is updated once per
        interval (``adjust=False``), so older intervals weigh less by half every
        ``half_life`` intervals; NaN for a cell without known history.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(mean_widths) + len(max_widths) + 1, cells)``: the means in the order of
        ``mean_widths``, then the maxima, then the level.
    """
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    return _cell_statistics(
        known.full,
        known.ended,
        known.history,
        _flight(known),
        np.asarray(mean_widths, dtype=np.int64),
        np.asarray(max_widths, dtype=np.int64),
        alpha,
        np.empty(max(max_widths, default=1)),
        empty((known.full.shape[1] + 1, known.full.shape[0])),  # scratch: in Arrow's pool,
        empty((known.full.shape[1] + 1, known.full.shape[0])),  # kept between calls
    )


@njit(cache=True, nogil=True, inline="always")
def _clear_bit(bitmap: np.ndarray, row: int) -> None:
    """Clear bit ``row`` of an Arrow validity bitmap (least significant bit first)."""
    bitmap[row >> 3] &= np.uint8(255 - (1 << (row & 7)))


@njit(cache=True, nogil=True)
def _row_features(  # noqa: PLR0917 - the rows and the arrays of KnownSeries, for numba
    full: np.ndarray,
    ended: np.ndarray,
    history: np.ndarray,
    flight: _Flight,
    site: np.ndarray,
    issue: np.ndarray,
    target: np.ndarray,
    lags: np.ndarray,
    per_cell: np.ndarray,
    out: np.ndarray,
    valid: np.ndarray,
    has_nan: np.ndarray,
) -> None:
    """Write each row's lags, then its cell's ``per_cell`` values, into ``out``.

    Cell by cell (a cell's rows are consecutive), then column by column, so the writes run
    along each column. Where a value is NaN its bit in the column's ``valid`` (all bits set
    on entry) is cleared and the column's ``has_nan`` (zeroed) set.
    """
    issues, rows = ended.size, issue.size
    for c in range(site.size):
        s, base = site[c], c * rows
        r = 0
        while r < rows:
            i = issue[r]
            end = r + 1
            while end < rows and issue[end] == i:
                end += 1
            cell = s * issues + i
            lo, hi = history[cell], ended[i]
            corrected = flight[0][cell + 1] > flight[0][cell]
            for m in range(lags.size):
                column = out[m]
                for k in range(r, end):
                    j = target[k] - lags[m]
                    if j < lo or j >= hi:
                        column[base + k] = np.nan
                        _clear_bit(valid[m], base + k)
                        has_nan[m] = True
                    elif corrected:
                        column[base + k] = full[s, j] - _unknown_energy(flight, cell, j, j + 1)
                    else:
                        column[base + k] = full[s, j]
            for m in range(lags.size, out.shape[0]):
                value = per_cell[m - lags.size, cell]
                out[m, base + r : base + end] = value
                if np.isnan(value):
                    has_nan[m] = True
                    for k in range(r, end):
                        _clear_bit(valid[m], base + k)
            r = end


def compute_row_features(
    known: KnownSeries,
    *,
    site: np.ndarray,
    issue: np.ndarray,
    target: np.ndarray,
    lags: np.ndarray,
    per_cell: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each row's lags as known at its issue time, then its cell's ``per_cell`` values.

    Parameters
    ----------
    known
        The known series (:func:`features.known_series.build_known_series`).
    site
        The site numbers of the rows' copies: the rows are the ``issue``/``target`` rows for
        each site in ``site``, copy after copy.
    issue
        Per row of a copy: position of its issue time in ``known.issues_us``.
    target
        Per row of a copy: its target interval [-] on the grid of ``known``.
    lags
        The lags [intervals] (int64): lag ``m`` is the energy [kWh] of interval
        ``target - lags[m]``, NaN where that interval had not ended by the issue time or lies
        before the known history.
    per_cell
        Values per (site, issue) cell, shape ``(columns, cells)``, repeated on its rows.

    Returns
    -------
    tuple of numpy.ndarray
        The values, shape ``(lags.size + columns, site.size * issue.size)`` (one allocation:
        fresh memory pages cost more than the work here); per column an Arrow validity
        bitmap (uint8, least significant bit first), 0 where the value is NaN; and per column
        whether it has a NaN (bool).
    """
    columns, rows = lags.size + per_cell.shape[0], site.size * issue.size
    out = empty((columns, rows))
    valid = empty((columns, (rows + 7) // 8), np.uint8)
    valid.fill(255)
    has_nan = np.zeros(columns, dtype=np.bool_)
    _row_features(
        known.full, known.ended, known.history, _flight(known), site, issue, target, lags,
        per_cell, out, valid, has_nan,
    )  # fmt: skip
    return out, valid, has_nan
