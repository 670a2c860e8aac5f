from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.config import SiteConfig
from forecasting.errors import SchemaError
from forecasting.publication.contract import ForecastRun, ModelIdentity, TargetForecast
from forecasting.publication.targets import (
    add_power,
    build_publication,
    compute_headroom,
    compute_net_load,
)
from forecasting.schemas import UTC_DATETIME

T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)
MODEL = ModelIdentity("demand-lgbm", "3", "champion")


def _frame(p10: list[float], p50: list[float], p90: list[float], *, step_min: int = 30):
    starts = [T0 + timedelta(minutes=step_min * i) for i in range(len(p50))]
    return pl.DataFrame(
        {"interval_start": starts, "p10": p10, "p50": p50, "p90": p90},
        schema_overrides={"interval_start": UTC_DATETIME},
    )


def _site(**update: object) -> SiteConfig:
    base = {
        "site_id": "site-a",
        "name": "A",
        "latitude": 0.0,
        "longitude": 0.0,
        "timezone": "UTC",
        "grid_limit_kw": 50.0,
        "other_load_kw": 10.0,
    }
    return SiteConfig.model_validate({**base, **update})


def _run(demand: pl.DataFrame, pv: pl.DataFrame | None, **update: object) -> ForecastRun:
    targets = {"demand": TargetForecast(demand, MODEL)}
    if pv is not None:
        targets["pv"] = TargetForecast(pv, ModelIdentity("pv", "1"), "pv fell back to clear sky")
    fields = {
        "site_id": "site-a",
        "issued_at": T0,
        "data_cutoff": T0,
        "resolution": timedelta(minutes=30),
        "targets": targets,
    }
    return ForecastRun(**{**fields, **update})


def test_power_is_energy_over_interval_hours() -> None:
    powered = add_power(_frame([1.0], [2.0], [4.5]), resolution_s=1800)
    assert powered.select("power_kw_p10", "power_kw_p50", "power_kw_p90").row(0) == (2.0, 4.0, 9.0)


def test_net_load_pairs_opposite_quantiles() -> None:
    demand = _frame([2.0, 4.0], [3.0, 5.0], [5.0, 9.0])
    pv = _frame([0.0, 1.0], [0.5, 2.0], [1.0, 3.0])
    expected = _frame([1.0, 1.0], [2.5, 3.0], [5.0, 8.0])
    assert_frame_equal(compute_net_load(demand, pv), expected)
    assert_frame_equal(compute_net_load(demand, None), demand)


def test_net_load_refuses_pv_that_does_not_cover_demand() -> None:
    with pytest.raises(SchemaError, match="does not cover demand interval"):
        compute_net_load(_frame([1, 1], [2, 2], [3, 3]), _frame([0.0], [0.0], [0.0]))


def test_headroom_adds_pv_quantiles_to_the_grid_budget_and_clips_at_zero() -> None:
    pv = _frame([0.0, 5.0], [1.0, 6.0], [2.0, 7.0])
    headroom = compute_headroom(pv, pv, grid_limit_kw=50.0, other_load_kw=10.0, resolution_s=1800)
    # budget 40 kW over half an hour = 20 kWh, plus PV energy at each quantile
    assert_frame_equal(headroom, _frame([20.0, 25.0], [21.0, 26.0], [22.0, 27.0]))
    clipped = compute_headroom(pv, None, grid_limit_kw=5.0, other_load_kw=10.0, resolution_s=1800)
    assert clipped["p10"].to_list() == [0.0, 0.0]


def test_build_publication_derives_every_target_and_records_fallbacks() -> None:
    demand = _frame([1.0, 2.0], [2.0, 3.0], [3.0, 4.0])
    pv = _frame([0.0, 0.5], [0.5, 1.0], [1.0, 1.5])
    publication = build_publication(_run(demand, pv), site=_site())
    assert set(publication.targets) == {"demand", "pv", "net", "headroom"}
    assert publication.intervals.group_by("target").len().sort("target")["len"].to_list() == [2] * 4
    assert publication.targets["net"].fallback_reason == "pv fell back to clear sky"
    assert publication.targets["demand"].fallback_reason is None
    assert publication.targets["net"].models == {"demand": MODEL, "pv": ModelIdentity("pv", "1")}
    assert publication.expires_at == T0 + timedelta(hours=6)
    no_limit = build_publication(_run(demand, None), site=_site(grid_limit_kw=None))
    assert set(no_limit.targets) == {"demand", "net"}


@pytest.mark.parametrize(
    ("demand", "update", "message"),
    [
        pytest.param(_frame([3.0], [2.0], [4.0]), {}, "unordered quantiles", id="p10-above-p50"),
        pytest.param(_frame([float("nan")], [2.0], [4.0]), {}, "NaN", id="nan"),
        pytest.param(_frame([1, 1], [2, 2], [3, 3], step_min=15), {}, "gap-free grid", id="grid"),
        pytest.param(
            _frame([1.0], [2.0], [3.0]),
            {"data_cutoff": T0 + timedelta(hours=1)},
            "after issued_at",
            id="cutoff-after-issue",
        ),
        pytest.param(
            _frame([1.0], [2.0], [3.0]),
            {"issued_at": datetime(2024, 6, 1, 12)},
            "timezone-aware UTC",
            id="naive-issue-time",
        ),
        pytest.param(_frame([1.0], [2.0], [3.0]).drop("p90"), {}, "missing", id="no-p90"),
    ],
)
def test_invalid_runs_are_refused(demand: pl.DataFrame, update: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        build_publication(_run(demand, None, **update), site=_site())
