from __future__ import annotations

import numpy as np
import pytest

from features.known_series import (
    NO_HISTORY,
    SiteContributions,
    _count_at_or_before,
    build_known_series,
)
from features.session_split import split_at_intervals

STEP = 3_600_000_000  # one hour [us]


def _contributions(seed: int, *, sites: int, sessions: int) -> tuple[SiteContributions, dict]:
    """Random sessions of a few sites over ten days, split on the hourly grid."""
    rng = np.random.default_rng(seed)
    plug_in = rng.integers(0, 240 * STEP, sessions)
    plug_out = plug_in + rng.integers(0, 30 * STEP, sessions)
    times = {"plug_in": plug_in, "plug_out": plug_out, "charge": plug_out}
    times["energy"] = rng.uniform(0.0, 40.0, sessions)
    site = rng.integers(0, sites, sessions)
    parts = split_at_intervals(times, step_us=STEP, occupancy=False)
    contributions = SiteContributions(
        site=site[parts["row"]],
        start_us=parts["start"],
        known_us=parts["known_at"],
        energy=parts["energy"],
        arrival=parts["arrival"],
    )
    return contributions, times | {"site": site}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_in_flight_sessions_and_history_equal_their_definition(seed: int) -> None:
    contributions, times = _contributions(seed, sites=3, sessions=60)
    # issue times on and off the grid, before, during and after the sessions
    issues_us = np.unique(np.concatenate([np.arange(-2, 260, 7) * STEP, [5 * STEP + 17]]))
    known = build_known_series(contributions, sites=3, issues_us=issues_us, step_us=STEP)
    first_interval = (times["plug_in"] // STEP * STEP - known.origin_us) // STEP
    for cell in range(3 * issues_us.size):
        site, issue = divmod(cell, issues_us.size)
        issued_at, ended = issues_us[issue], known.ended[issue]
        assert ended == max(0, (issued_at - known.origin_us) // STEP)
        ours = times["site"] == site
        # in flight: plugged in during an interval that had ended, not yet unplugged
        expected = np.flatnonzero(
            ours & (first_interval < ended) & (times["plug_out"] >= issued_at)
        )
        start, stop = known.flight_start[cell], known.flight_start[cell + 1]
        assert known.flight_sessions[start:stop].tolist() == expected.tolist()
        # known: unplugged before the issue time
        done = ours & (times["plug_out"] < issued_at)
        history = first_interval[done].min() if done.any() else NO_HISTORY
        assert known.history[cell] == history
        assert known.last_end_us[cell] == (times["plug_out"][done].max() if done.any() else -1)


def test_full_series_sums_every_contribution_that_ended_by_the_last_issue() -> None:
    contributions, _times = _contributions(4, sites=2, sessions=40)
    issues_us = np.array([100 * STEP, 200 * STEP])
    known = build_known_series(contributions, sites=2, issues_us=issues_us, step_us=STEP)
    interval = (contributions.start_us - known.origin_us) // STEP
    for site in range(2):
        inside = (contributions.site == site) & (interval < known.full.shape[1])
        expected = np.bincount(
            interval[inside], weights=contributions.energy[inside], minlength=known.full.shape[1]
        )
        # same additions in the same order: equal to the last bit
        np.testing.assert_array_equal(known.full[site], expected)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.arange(5, 400, 24) * STEP, id="on-the-grid"),
        pytest.param(np.arange(5, 400, 24) * STEP + 1_800_000_000, id="half-past"),
        pytest.param(np.array([-3 * STEP, 7, 7 * STEP - 1, 7 * STEP, 600 * STEP]), id="mixed"),
        pytest.param(np.sort(np.r_[np.arange(0, 50) * STEP // 7, 20 * STEP]), id="dense"),
    ],
)
def test_counts_by_the_grid_table_equal_a_binary_search(values: np.ndarray) -> None:
    times = np.random.default_rng(7).integers(-10 * STEP, 700 * STEP, 5_000)
    times = np.concatenate((times, values, values - 1, values + 1))
    expected = np.searchsorted(values, times, side="right")
    got = _count_at_or_before(values, times, 2 * STEP, STEP, 390)
    np.testing.assert_array_equal(got, expected)


def test_site_numbers_outside_the_sites_are_refused() -> None:
    contributions, _times = _contributions(5, sites=3, sessions=10)
    with pytest.raises(ValueError, match=r"site numbers must lie in \[0, 2\)"):
        build_known_series(contributions, sites=2, issues_us=np.array([50 * STEP]), step_us=STEP)
