from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from forecasting.backtest.contract import GRID_SCHEMA, check_forecasts
from forecasting.errors import SchemaError
from forecasting.schemas import FORECAST_SCHEMA

ISSUE = datetime(2019, 6, 1, tzinfo=UTC)
STARTS = [ISSUE + timedelta(hours=h) for h in range(3)]


def _forecasts(**columns: object) -> pl.DataFrame:
    base: dict[str, object] = {
        "site_id": "a",
        "issued_at": ISSUE,
        "interval_start": STARTS,
        "p10": [0.0, 1.0, 2.0],
        "p50": [1.0, 2.0, 3.0],
        "p90": [2.0, 3.0, 4.0],
        "model": "m",
        "note": None,
    }
    return pl.DataFrame({**base, **columns}).cast(FORECAST_SCHEMA).select(list(FORECAST_SCHEMA))


def _grid() -> pl.DataFrame:
    return pl.DataFrame({"site_id": "a", "issued_at": ISSUE, "interval_start": STARTS}).cast(
        GRID_SCHEMA
    )


def test_a_valid_frame_passes() -> None:
    check_forecasts(_forecasts(), grid=_grid())


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        pytest.param({"p50": [1.0, 0.5, 3.0]}, "crossing", id="p10-above-p50"),
        pytest.param({"p90": [2.0, 1.5, 4.0]}, "crossing", id="p50-above-p90"),
        pytest.param({"p10": [-1.0, 1.0, 2.0]}, "negative", id="negative"),
        pytest.param({"p50": [1.0, None, 3.0]}, "null or NaN", id="null"),
        pytest.param({"p90": [2.0, float("nan"), 4.0]}, "null or NaN", id="nan"),
        pytest.param(
            {"interval_start": [ISSUE - timedelta(hours=1), *STARTS[1:]]},
            "issued_at after interval_start",
            id="forecast-of-the-past",
        ),
        pytest.param({"interval_start": [STARTS[0], STARTS[0], STARTS[2]]}, "duplicate", id="dup"),
    ],
)
def test_a_broken_frame_is_refused(columns: dict[str, object], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        check_forecasts(_forecasts(**columns))


def test_a_missing_interval_is_refused() -> None:
    with pytest.raises(SchemaError, match="'m' misses 1 interval"):
        check_forecasts(_forecasts().head(2), grid=_grid())


def test_a_missing_column_is_refused() -> None:
    with pytest.raises(SchemaError, match="missing columns \\['note'\\]"):
        check_forecasts(_forecasts().drop("note"))
