from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from forecasting.errors import SchemaError
from forecasting.publication.ocpp import (
    MAX_PERIODS,
    build_charging_profile,
    compute_profile_id,
    validate_charging_profile,
)
from forecasting.schemas import UTC_DATETIME

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def _headroom(kwh: list[float], *, step_s: int = 900) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "interval_start": [T0 + timedelta(seconds=step_s * i) for i in range(len(kwh))],
            "p10": kwh,
        },
        schema_overrides={"interval_start": UTC_DATETIME},
    )


def test_profile_merges_equal_limits_and_rounds_watts_down() -> None:
    # 15-minute intervals: 25 kWh -> 100 kW; 25.00001 kWh -> 100000.04 W, floored to 100000 W
    payload = build_charging_profile(
        _headroom([25.0, 25.00001, 12.5, 0.0]), resolution_s=900, profile_id=7
    )
    profile = payload["chargingProfile"]
    schedule = profile["chargingSchedule"][0]
    assert payload["evseId"] == 0
    assert profile["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert profile["chargingProfileKind"] == "Absolute"
    assert schedule["startSchedule"] == "2024-06-01T00:00:00Z"
    assert schedule["duration"] == 3600
    assert profile["validTo"] == "2024-06-01T01:00:00Z"
    assert schedule["chargingRateUnit"] == "W"
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 100000},
        {"startPeriod": 1800, "limit": 50000},
        {"startPeriod": 2700, "limit": 0},
    ]


def test_profile_is_capped_at_the_ocpp_period_limit() -> None:
    kwh = [float(i % 2) for i in range(MAX_PERIODS + 10)]  # every interval differs
    payload = build_charging_profile(_headroom(kwh), resolution_s=900, profile_id=1)
    schedule = payload["chargingProfile"]["chargingSchedule"][0]
    assert len(schedule["chargingSchedulePeriod"]) == MAX_PERIODS
    assert schedule["duration"] == MAX_PERIODS * 900


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        pytest.param(
            ("chargingProfile", "chargingProfilePurpose"), "Max", "is not one of", id="bad-purpose"
        ),
        pytest.param(
            ("chargingProfile", "chargingSchedule"),
            [],
            "should be non-empty|too short",
            id="no-schedule",
        ),
        pytest.param(("evseId",), "0", "is not of type 'integer'", id="evse-as-string"),
    ],
)
def test_the_ocpp_package_schema_rejects_broken_payloads(
    path: tuple[str, ...], value: object, message: str
) -> None:
    payload = copy.deepcopy(
        build_charging_profile(_headroom([1.0]), resolution_s=900, profile_id=1)
    )
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SchemaError, match=message):
        validate_charging_profile(payload)


def test_empty_headroom_is_refused_and_profile_ids_are_stable() -> None:
    with pytest.raises(SchemaError, match="no headroom intervals"):
        build_charging_profile(_headroom([]), resolution_s=900, profile_id=1)
    assert compute_profile_id("site-a") == compute_profile_id("site-a")
    assert compute_profile_id("site-a") != compute_profile_id("site-b")
    assert 0 < compute_profile_id("site-a") < 2**31
