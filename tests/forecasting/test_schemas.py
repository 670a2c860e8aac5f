from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.errors import SchemaError
from forecasting.schemas import (
    FORECAST_SCHEMA,
    SESSIONS_SCHEMA,
    conform,
    empty_frame,
    validate_frame,
)


def test_empty_frame_has_exact_schema() -> None:
    frame = empty_frame(SESSIONS_SCHEMA)
    assert frame.schema == pl.Schema(SESSIONS_SCHEMA)
    validate_frame(frame, SESSIONS_SCHEMA, name="sessions")


def test_validate_frame_lists_missing_and_available_columns() -> None:
    frame = pl.DataFrame({"site_id": ["a"], "p50": [1.0]})
    with pytest.raises(SchemaError, match=r"missing columns \['issued_at'.*available: \['site_id'"):
        validate_frame(frame, FORECAST_SCHEMA, name="forecast")


def test_validate_frame_names_wrong_types() -> None:
    frame = empty_frame(FORECAST_SCHEMA).with_columns(pl.col("p50").cast(pl.Int64))
    with pytest.raises(SchemaError, match=r"'p50' is Int64 \(expected Float64\)"):
        validate_frame(frame.lazy(), FORECAST_SCHEMA, name="forecast")


def test_conform_adds_optional_columns_as_nulls() -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "model": ["demand"],
            "site_id": ["s"],
            "issued_at": [at],
            "interval_start": [at],
            "p10": [0.0],
            "p50": [1],
            "p90": [2.0],
        }
    )
    out = conform(frame, FORECAST_SCHEMA)
    assert out.columns == list(FORECAST_SCHEMA)
    assert out["note"].null_count() == 1
    assert_frame_equal(out.select("p50"), pl.DataFrame({"p50": [1.0]}))


def test_conform_refuses_missing_required_column() -> None:
    with pytest.raises(SchemaError, match=r"required columns \['site_id'"):
        conform(pl.DataFrame({"x": [1]}), FORECAST_SCHEMA)
