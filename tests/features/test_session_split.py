from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from features.session_split import (
    compute_contribution_arrays,
    compute_session_times,
    split_at_intervals,
)
from features.time_grid import ONE_US, compute_epoch_us
from forecasting.errors import ConfigError
from tests.features.conftest import at, make_sessions

HOUR = timedelta(hours=1)
STEP_US = HOUR // ONE_US


def _sessions() -> pl.DataFrame:
    return make_sessions(
        [(at(0.5), at(3.25), 11.0), (at(1), at(1), 2.0), (at(2.75), at(4), 0.0)],
        max_power_kw=[7.0, None, None],
    )


def test_contributions_are_per_session_in_time_order_arrival_first() -> None:
    parts = compute_contribution_arrays(
        _sessions(), resolution=HOUR, allocation="front_loaded", charger_power_kw=22.0
    )
    assert parts["row"].tolist() == [0, 0, 0, 0, 1, 2, 2]
    hours = (parts["start"] - compute_epoch_us(at(0))) // STEP_US
    assert hours.tolist() == [0, 1, 2, 3, 1, 2, 3]
    assert parts["arrival"].tolist() == [True, False, False, False, True, True, False]
    # 11 kWh at 7 kW from 00:30: 3.5 kWh, 7 kWh, then 0.5 kWh; tolerance: float rounding
    np.testing.assert_allclose(parts["energy"], [3.5, 7.0, 0.5, 0.0, 2.0, 0.0, 0.0], atol=1e-12)
    # known_at is each session's plug-out, on all of its contributions
    ends = [at(3.25)] * 4 + [at(1)] + [at(4)] * 2
    assert parts["known_at"].tolist() == [compute_epoch_us(t) for t in ends]
    np.testing.assert_allclose(parts["occupied"], [0.5, 1, 1, 0.25, 0, 0.25, 1], atol=1e-12)


def test_occupancy_can_be_left_out_without_changing_the_rest() -> None:
    times = compute_session_times(_sessions(), allocation="uniform")
    full = split_at_intervals(times, step_us=STEP_US)
    lean = split_at_intervals(times, step_us=STEP_US, occupancy=False)
    assert "occupied" not in lean
    assert lean.keys() == full.keys() - {"occupied"}
    for key, values in lean.items():
        np.testing.assert_array_equal(values, full[key], strict=True)


def test_unknown_allocation_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"allocation 'evenly' is not one of"):
        compute_session_times(_sessions(), allocation="evenly")  # type: ignore[arg-type]
