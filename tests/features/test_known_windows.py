from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from features.known_series import KnownSeries, SiteContributions, build_known_series
from features.known_windows import compute_cell_statistics
from features.session_split import compute_contribution_arrays
from features.time_grid import ONE_US, compute_epoch_us
from tests.features.conftest import at, make_sessions

HOUR = timedelta(hours=1)
# sums of a handful of float contributions of a few kWh: exact to far better than 1e-12 kWh
TOLERANCE = 1e-12


def _known() -> KnownSeries:
    """Hourly series 2, 2, 1, 2, 2, 0 kWh; at 04:00 the session of hours 2..4 is in flight."""
    sessions = make_sessions([(at(0), at(2), 4.0), (at(2.5), at(5), 5.0)])
    parts = compute_contribution_arrays(sessions, resolution=HOUR)
    contributions = SiteContributions(
        site=np.zeros(parts["row"].size, dtype=np.int64),
        start_us=parts["start"],
        known_us=parts["known_at"],
        energy=parts["energy"],
        arrival=parts["arrival"],
    )
    issues_us = np.array([compute_epoch_us(at(4)), compute_epoch_us(at(6))])
    return build_known_series(contributions, sites=1, issues_us=issues_us, step_us=HOUR // ONE_US)


@pytest.mark.parametrize(
    ("width", "means", "maxima"),
    [
        # at 04:00 only the first session is known: 2, 2, 0, 0; at 06:00 all: 2, 2, 1, 2, 2, 0
        pytest.param(2, [0.0, 1.0], [0.0, 2.0], id="two-hours"),
        pytest.param(3, [2 / 3, 4 / 3], [2.0, 2.0], id="three-hours-with-a-correction"),
        pytest.param(9, [1.0, 1.5], [2.0, 2.0], id="clipped-to-the-history"),
    ],
)
def test_windows_see_only_the_sessions_known_at_issue_time(
    width: int, means: list[float], maxima: list[float]
) -> None:
    statistics = compute_cell_statistics(
        _known(), mean_widths=[width], max_widths=[width], half_life=1
    )
    np.testing.assert_allclose(statistics[0], means, atol=TOLERANCE)
    np.testing.assert_allclose(statistics[1], maxima, atol=TOLERANCE)


def test_ewm_level_halves_per_half_life_from_zero() -> None:
    # alpha = 0.5: 2, 2, 0, 0 -> 1, 1.5, 0.75, 0.375; 2, 2, 1, 2, 2, 0 -> ..., 0.90625
    statistics = compute_cell_statistics(_known(), mean_widths=[1], max_widths=[1], half_life=1)
    np.testing.assert_allclose(statistics[2], [0.375, 0.90625], atol=TOLERANCE)


def test_statistics_without_maxima_still_give_means_and_level() -> None:
    statistics = compute_cell_statistics(_known(), mean_widths=[2], max_widths=[], half_life=1)
    np.testing.assert_allclose(statistics, [[0.0, 1.0], [0.375, 0.90625]], atol=TOLERANCE)


def test_maxima_with_issues_denser_than_the_grid_and_many_sites() -> None:
    # 10 sites (more than one block of running sums), issues every 10 minutes on an hourly
    # grid (six issues share each grid point), sessions short enough that few are in flight
    rng = np.random.default_rng(11)
    rows = []
    for site in range(10):
        for hour in rng.choice(24 * 20, size=60, replace=False):
            rows.append((site, at(float(hour)), at(hour + rng.uniform(0.1, 0.9)), 1.0 + site))
    sessions = make_sessions([(start, end, energy) for _, start, end, energy in rows])
    parts = compute_contribution_arrays(sessions, resolution=HOUR)
    site = np.array([r[0] for r in rows])[parts["row"]]
    energy = parts["energy"] * rng.uniform(0.5, 2.0, len(rows))[parts["row"]]
    contributions = SiteContributions(
        site=site, start_us=parts["start"], known_us=parts["known_at"], energy=energy,
        arrival=parts["arrival"],
    )  # fmt: skip
    issues_us = compute_epoch_us(at(24 * 8)) + np.arange(0, 24 * 6 * 10) * 600_000_000
    known = build_known_series(contributions, sites=10, issues_us=issues_us, step_us=HOUR // ONE_US)
    statistics = compute_cell_statistics(
        known, mean_widths=[24], max_widths=[24, 168], half_life=24
    )
    for cell in range(known.history.size):
        s, i = divmod(cell, issues_us.size)
        e = int(known.ended[i])
        in_flight = known.flight_start[cell + 1] > known.flight_start[cell]
        for row, width in ((1, 24), (2, 168)):
            window = known.full[s, max(e - width, known.history[cell]) : e]
            if not in_flight and window.size:  # no correction: the plain maximum
                assert statistics[row, cell] == window.max()
