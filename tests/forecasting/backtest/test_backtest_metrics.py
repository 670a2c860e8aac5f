from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from forecasting.backtest.contract import ACTUALS_SCHEMA
from forecasting.backtest.metrics import compute_backtest_metrics
from forecasting.schemas import FORECAST_SCHEMA

ISSUE = datetime(2019, 6, 1, tzinfo=UTC)
HOURS = [ISSUE + timedelta(hours=h) for h in range(4)]
TOLERANCE = 1e-12  # hand-computed values on exact decimals; only float rounding differs


def _rows(model: str, quantiles: list[tuple[float, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "site_id": "a",
            "issued_at": ISSUE,
            "interval_start": HOURS[: len(quantiles)],
            "p10": [q[0] for q in quantiles],
            "p50": [q[1] for q in quantiles],
            "p90": [q[2] for q in quantiles],
            "model": model,
            "note": None,
        }
    ).cast(FORECAST_SCHEMA)


@pytest.fixture
def scores() -> pl.DataFrame:
    # Only "demand" forecast the third interval and the fourth has no actual: neither is scored.
    forecasts = pl.concat(
        [
            _rows("demand", [(1, 2, 3), (1, 3, 5), (0, 0, 0), (9, 9, 9)]),
            _rows("seasonal_naive", [(4, 4, 4), (4, 4, 4), (0, 0, 0), (9, 9, 9)]).filter(
                pl.col("interval_start") != HOURS[2]
            ),
        ]
    )
    actuals = pl.DataFrame(
        {"site_id": "a", "interval_start": HOURS, "energy_kwh": [2.0, 4.0, 100.0, None]}
    ).cast(ACTUALS_SCHEMA)
    metrics = compute_backtest_metrics(
        forecasts, actuals, resolution=timedelta(hours=1), timezones={"a": "Europe/London"}
    )
    assert metrics.n_intervals == 2
    return metrics.overall


@pytest.mark.parametrize(
    ("model", "metric", "expected"),
    [
        pytest.param("demand", "mae", 0.5, id="mae"),
        pytest.param("demand", "rmse", 0.5**0.5, id="rmse"),
        pytest.param("demand", "nmae", 1 / 6, id="nmae"),
        pytest.param("demand", "pinball_p10", 0.2, id="pinball-p10"),
        pytest.param("demand", "pinball_p50", 0.25, id="pinball-p50"),
        pytest.param("demand", "pinball_p90", 0.1, id="pinball-p90"),
        pytest.param("demand", "pinball", 0.55 / 3, id="pinball-mean"),
        pytest.param("demand", "crps", 1.1 / 3, id="crps"),
        pytest.param("demand", "coverage_80", 1.0, id="coverage"),
        pytest.param("demand", "width_80", 3.0, id="width"),
        pytest.param("demand", "calib_p50", 0.5, id="calibration-p50"),
        pytest.param("demand", "peak_abs_error", 1.0, id="peak"),
        pytest.param("seasonal_naive", "mae", 1.0, id="baseline-mae"),
        pytest.param("seasonal_naive", "pinball", 0.5, id="baseline-pinball"),
        pytest.param("seasonal_naive", "crps", 1.0, id="point-forecast-crps-is-mae"),
        pytest.param("demand", "skill_mae_vs_seasonal_naive", 0.5, id="skill-mae"),
        pytest.param("demand", "skill_pinball_vs_seasonal_naive", 1 - 0.55 / 1.5, id="skill-pin"),
        pytest.param("seasonal_naive", "skill_mae_vs_seasonal_naive", 0.0, id="self-skill"),
    ],
)
def test_scores_match_hand_computed_values(
    scores: pl.DataFrame, model: str, metric: str, expected: float
) -> None:
    value = scores.filter(pl.col("model") == model)[metric].item()
    assert value == pytest.approx(expected, abs=TOLERANCE)


def test_groups_by_step_and_local_hour_and_site() -> None:
    forecasts = pl.concat(
        [_rows("demand", [(1, 2, 3), (1, 3, 5)]), _rows("persistence", [(2, 2, 2), (2, 2, 2)])]
    )
    actuals = pl.DataFrame(
        {"site_id": "a", "interval_start": HOURS[:2], "energy_kwh": [2.0, 4.0]}
    ).cast(ACTUALS_SCHEMA)
    metrics = compute_backtest_metrics(
        forecasts, actuals, resolution=timedelta(hours=1), timezones={"a": "Europe/London"}
    )
    demand = pl.col("model") == "demand"
    assert metrics.by_step.filter(demand)["step"].to_list() == [0, 1]
    assert metrics.by_step.filter(demand)["mae"].to_list() == [0.0, 1.0]
    assert metrics.by_hour.filter(demand)["hour"].to_list() == [1, 2]  # 00:00 UTC is 01:00 BST
    assert metrics.by_site.filter(demand)["skill_mae_vs_persistence"].item() == pytest.approx(
        1 - 0.5 / 1.0, abs=TOLERANCE
    )
    assert "skill_mae_vs_seasonal_naive" not in metrics.by_site.columns
    document = json.loads(json.dumps(metrics.to_dict(), default=str))
    assert document["models"] == ["demand", "persistence"]
    assert document["overall"]["demand"]["mae"] == pytest.approx(0.5, abs=TOLERANCE)
