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


_SITE_BLOCK = 8
"""Sites whose running sums are computed in one pass (their additions overlap in the
processor; a bounded block keeps the scratch memory at ``8 * (intervals + 1)`` per sum)."""


@njit(cache=True, nogil=True)
def _running_sums(
    full: np.ndarray,
    first_site: int,
    alpha: float,
    cumulative: np.ndarray,
    levels: np.ndarray,
) -> None:
    """Per interval and site of a block: cumulative sum (leading zero) and EWM level [kWh].

    Sites ``first_site .. first_site + cumulative.shape[1]`` (clipped to the sites of
    ``full``); the EWM level after ``k`` intervals starts from zero.
    """
    block = min(cumulative.shape[1], full.shape[0] - first_site)
    cumulative[0], levels[0] = 0.0, 0.0
    for k in range(full.shape[1]):
        for b in range(block):
            value = full[first_site + b, k]
            cumulative[k + 1, b] = cumulative[k, b] + value
            levels[k + 1, b] = levels[k, b] + alpha * (value - levels[k, b])


@njit(cache=True, nogil=True)
def _cell_statistics(  # noqa: PLR0917 - the arrays of KnownSeries and the windows, for numba
    full: np.ndarray,
    ended: np.ndarray,
    ends: np.ndarray,
    end_index: np.ndarray,
    history: np.ndarray,
    flight: _Flight,
    mean_widths: np.ndarray,
    max_widths: np.ndarray,
    alpha: float,
    scratch: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Per cell: the window means, then the window maxima, then the EWM level [kWh].

    Returns an array of shape ``(mean_widths.size + max_widths.size + 1, cells)``. ``ends``
    are the distinct values of ``ended`` (sorted) and ``end_index`` each issue's position
    among them; ``scratch`` holds a window of at least the longest of ``max_widths`` and the
    running sums of a block of sites, shape ``(intervals + 1, _SITE_BLOCK)`` each.
    """
    window, cumulative, levels = scratch
    issues = ended.size
    result = np.empty((mean_widths.size + max_widths.size + 1, history.size))
    between = np.empty(ends.size)  # of one site: maxima between consecutive ends [kWh]
    for site in range(full.shape[0]):
        b = site % _SITE_BLOCK
        if b == 0:
            _running_sums(full, site, alpha, cumulative, levels)
        series = full[site]
        _maxima_between(series, ends, between)
        for i in range(issues):
            cell, e = site * issues + i, ended[i]
            row = 0
            for width in mean_widths:
                start = min(max(e - width, history[cell]), e)
                unknown = _unknown_energy(flight, cell, start, e)
                total = cumulative[e, b] - cumulative[start, b] - unknown
                result[row, cell] = total / (e - start) if start < e else np.nan
                row += 1
            for width in max_widths:
                result[row, cell] = _window_maximum(
                    series, end_index[i], ends, between, history[cell], flight, cell, width,
                    window,
                )  # fmt: skip
                row += 1
            result[row, cell] = _ewm_level(levels[e, b], e, history[cell], flight, cell, alpha)
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
def _maxima_between(series: np.ndarray, ends: np.ndarray, out: np.ndarray) -> None:
    """Write the largest of ``series[ends[i - 1]:ends[i]]`` to ``out[i]`` (-inf: empty).

    ``ends`` is increasing; ``ends[-1]`` counts as 0.
    """
    previous = 0
    for i in range(ends.size):
        out[i] = _maximum(series, previous, ends[i]) if ends[i] > previous else -np.inf
        previous = ends[i]


@njit(cache=True, nogil=True, inline="always")
def _range_maximum(
    series: np.ndarray, ends: np.ndarray, between: np.ndarray, i: int, lo: int
) -> float:
    """Largest of ``series[lo:ends[i]]`` (not empty), from :func:`_maxima_between`'s values.

    Whole stretches between ends come from ``between``, the rest is read off ``series``; the
    ends are distinct, so no more stretches are read than the range has intervals.
    """
    largest = -np.inf
    k = i
    while k >= 0 and (ends[k - 1] if k > 0 else 0) >= lo:  # stretch k lies in the range
        largest = max(largest, between[k])
        k -= 1
    if k >= 0 and ends[k] > lo:
        largest = max(largest, _maximum(series, lo, ends[k]))
    return largest


@njit(cache=True, nogil=True, inline="always")
def _window_maximum(  # noqa: PLR0917 - one cell's window, for numba
    series: np.ndarray,
    i: int,
    ends: np.ndarray,
    between: np.ndarray,
    first: int,
    flight: _Flight,
    cell: int,
    width: int,
    window: np.ndarray,
) -> float:
    """Largest energy [kWh] of the intervals ``[max(e - width, first), e)`` as known at ``cell``.

    ``e = ends[i]`` for the cell's issue; ``series`` is the site's full series, ``between``
    its :func:`_maxima_between`, ``window`` scratch space of at least ``width``.
    """
    flight_start, flight_sessions, session_first, interval, energy = flight
    e = ends[i]
    start = min(max(e - width, first), e)
    if start == e:
        return np.nan
    if flight_start[cell + 1] == flight_start[cell]:  # nothing in flight: the full series
        return _range_maximum(series, ends, between, i, start)
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
    ends, end_index = np.unique(known.ended, return_inverse=True)
    sums_shape = (known.full.shape[1] + 1, _SITE_BLOCK)
    scratch = (np.empty(max(max_widths, default=1)), empty(sums_shape), empty(sums_shape))
    return _cell_statistics(
        known.full,
        known.ended,
        ends,
        end_index,
        known.history,
        _flight(known),
        np.asarray(mean_widths, dtype=np.int64),
        np.asarray(max_widths, dtype=np.int64),
        alpha,
        scratch,
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
                        value = np.nan
                    elif corrected:
                        value = full[s, j] - _unknown_energy(flight, cell, j, j + 1)
                    else:
                        value = full[s, j]
                    column[base + k] = value
                    if np.isnan(value):  # no value, or NaN energy in the sessions
                        _clear_bit(valid[m], base + k)
                        has_nan[m] = True
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
