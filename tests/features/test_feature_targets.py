from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from features.demand_series import build_demand_series
from features.outages import mark_outages
from features.session_split import compute_session_times, split_at_intervals
from features.targets import compute_target_grids, compute_targets
from features.time_grid import ONE_US
from tests.features.conftest import at, make_sessions

HOUR = timedelta(hours=1)
STEP_US = HOUR // ONE_US


def _targets_on_stretch(
    sessions: pl.DataFrame, *, first: int, last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets of hours [first, last) after T0 from only the sessions the stretch needs."""
    times = compute_session_times(sessions)
    site = np.zeros(times["plug_in"].size, dtype=np.int64)
    begin = times["plug_in"] // STEP_US
    end = np.maximum(times["plug_out"] - 1, times["plug_in"]) // STEP_US
    origin = int(at(0).timestamp()) // 3600
    grids = compute_target_grids(
        site,
        begin,
        end,
        times["plug_out"],
        sites=1,
        targets=(origin + first, origin + last),
        step_us=STEP_US,
        known_until_us=None,
    )
    # only sessions plugged in during the stretch: the rest must not matter
    keep = (end >= grids.first[0]) & (begin < grids.stop[0])
    parts = split_at_intervals({k: v[keep] for k, v in times.items()}, step_us=STEP_US)
    parts["site"] = np.zeros(parts["row"].size, dtype=np.int64)
    rows = origin + np.arange(first, last)
    energy, missing = compute_targets(
        np.zeros(1, dtype=np.int64), rows, parts=parts, grids=grids, resolution=HOUR
    )
    return rows, energy, missing


@st.composite
def _busy_site_with_gaps(draw: st.DrawFn) -> tuple[pl.DataFrame, int, int]:
    """A session most hours for 90 days with a few long silences; a random target window."""
    gaps = draw(st.lists(st.tuples(st.integers(0, 90 * 24), st.integers(1, 30 * 24)), max_size=4))
    per_day = draw(st.sampled_from([2, 6, 24]))
    rows = []
    for hour in range(0, 90 * 24, 24 // per_day):
        if not any(start <= hour < start + length for start, length in gaps):
            rows.append((at(hour + 0.25), at(hour + 0.75), 7.0))
    first = draw(st.integers(0, 95 * 24))
    return make_sessions(rows or [(at(0), at(1), 1.0)]), first, first + draw(st.integers(1, 72))


@settings(max_examples=40, deadline=None)
@given(case=_busy_site_with_gaps())
def test_targets_from_a_stretch_equal_the_whole_series_with_outages(
    case: tuple[pl.DataFrame, int, int],
) -> None:
    sessions, first, last = case
    rows, energy, missing = _targets_on_stretch(sessions, first=first, last=last)
    whole = mark_outages(build_demand_series(sessions, resolution=HOUR))
    hours = whole["interval_start"].dt.epoch("us").to_numpy() // STEP_US
    by_hour = dict(
        zip(hours, zip(whole["energy_kwh"], whole["is_missing"], strict=True), strict=True)
    )
    until = sessions["plug_out_at"].max()
    for row, value, is_missing in zip(rows, energy, missing, strict=True):
        expected_value, expected_missing = by_hour.get(row, (0.0, False))
        assert is_missing == expected_missing, row
        ended = (row + 1) * STEP_US <= until.timestamp() * 1e6
        if expected_missing or not ended:
            assert np.isnan(value), row
        else:  # the same contributions summed in the same order: equal to the last bit
            assert value == expected_value, row


def test_outage_that_began_long_before_the_targets_is_still_marked() -> None:
    # busy for 40 days, then silent for 70 days: the targets lie deep inside the silence,
    # 60 days after it began, so its reference window is far before them
    rows = [(at(h), at(h + 0.5), 5.0) for h in range(0, 40 * 24)]
    rows.append((at(110 * 24), at(110 * 24 + 1), 5.0))
    _rows, energy, missing = _targets_on_stretch(make_sessions(rows), first=100 * 24, last=101 * 24)
    assert missing.all()
    assert np.isnan(energy).all()
