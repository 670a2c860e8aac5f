from __future__ import annotations

import numpy as np
import pytest

from features.known_series import IssueCounter

STEP = 3_600_000_000  # one hour [us]


@pytest.mark.parametrize(
    "issues",
    [
        pytest.param(np.arange(5, 400, 24) * STEP, id="on-the-grid"),
        pytest.param(np.arange(5, 400, 24) * STEP + 1_800_000_000, id="half-past"),
        pytest.param(np.array([-3 * STEP, 7, 7 * STEP - 1, 7 * STEP, 600 * STEP]), id="mixed"),
    ],
)
def test_issue_counts_equal_a_binary_search(issues: np.ndarray) -> None:
    counter = IssueCounter(np.sort(issues), origin_us=2 * STEP, step_us=STEP, n=390)
    times = np.random.default_rng(7).integers(-10 * STEP, 700 * STEP, 5_000)
    times = np.concatenate((times, issues, issues - 1, issues + 1))
    expected = np.searchsorted(np.sort(issues), times, side="right")
    np.testing.assert_array_equal(counter.count_at_or_before(times), expected)
    points = np.arange(392)
    expected_before = np.searchsorted(np.sort(issues), 2 * STEP + points * STEP, side="left")
    np.testing.assert_array_equal(counter.count_before_point(points), expected_before)
