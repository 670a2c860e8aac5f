"""The evcast forecaster as an MLflow pyfunc model: wrapper, signature and smoke check.

Pandas appears only here and only at MLflow's boundary. The pyfunc model's contract:

input
    A sessions frame with the columns of ``SESSIONS_SCHEMA`` (optional ones may be missing or
    null): the history known at the issue time. Datetimes are naive UTC, since MLflow's schema
    has no time zones.
params
    ``issued_at`` (ISO 8601 string with offset) and ``horizon_hours`` [h].
output
    ``interval_start`` (naive UTC), ``p10``, ``p50``, ``p90`` [kWh per interval] and ``note``,
    one row per interval of ``[issued_at, issued_at + horizon)``.

The input example stored with each model (sessions known at training time, with the training
issue time as params) is the smoke input that :func:`check_model_folder` forecasts before a
stored model is used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import mlflow.pyfunc
import pandas as pd  # noqa: TID251 -- MLflow's pyfunc boundary speaks pandas
import polars as pl
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from forecasting.config import SiteConfig
from forecasting.errors import StoreError
from forecasting.schemas import OPTIONAL_COLUMNS, SESSIONS_SCHEMA, UTC_DATETIME, conform
from models.base import Forecaster

PIP_REQUIREMENTS: Final[tuple[str, ...]] = ("mlflow", "polars", "pandas", "pyarrow", "lightgbm")
"""Requirements written with each model (given, so MLflow does not probe the environment)."""


class ModelSmokeCheckError(StoreError):
    """A registered model version cannot be loaded, or does not forecast its smoke input.

    Callers serve a marked baseline fallback instead, and training treats the champion as
    absent (the challenger becomes champion).
    """


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

_MLFLOW_TYPES: Final[dict[type[pl.DataType], DataType]] = {
    pl.String: DataType.string,
    pl.Datetime: DataType.datetime,
    pl.Float64: DataType.double,
}


def build_signature(*, issued_at: datetime, horizon: timedelta) -> ModelSignature:
    """Return the pyfunc signature (see the module docstring); params default to the example."""
    inputs = Schema(
        [
            ColSpec(_MLFLOW_TYPES[type(dtype)], name, required=name not in OPTIONAL_COLUMNS)
            for name, dtype in SESSIONS_SCHEMA.items()
        ]
    )
    outputs = Schema(
        [
            ColSpec(DataType.datetime, "interval_start"),
            *(ColSpec(DataType.double, c) for c in ("p10", "p50", "p90")),
            ColSpec(DataType.string, "note", required=False),
        ]
    )
    params = ParamSchema(
        [
            ParamSpec("issued_at", DataType.string, issued_at.isoformat()),
            ParamSpec("horizon_hours", DataType.double, horizon / timedelta(hours=1)),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def to_mlflow_frame(frame: pl.DataFrame) -> pd.DataFrame:
    """Convert a polars frame to pandas for MLflow, with UTC datetimes made naive."""
    naive = frame.with_columns(pl.col(pl.Datetime).dt.replace_time_zone(None))
    return naive.to_pandas()


def from_mlflow_sessions(frame: pd.DataFrame) -> pl.DataFrame:
    """Convert a pyfunc sessions input back to ``SESSIONS_SCHEMA`` (naive datetimes are UTC)."""
    sessions = pl.from_pandas(frame).with_columns(
        pl.col(pl.Datetime).dt.replace_time_zone("UTC").cast(UTC_DATETIME)
    )
    return conform(sessions, SESSIONS_SCHEMA)


def build_interval_starts(
    issued_at: datetime, *, horizon: timedelta, resolution: timedelta
) -> pl.Series:
    """Return the UTC interval starts in ``[ceil(issued_at), issued_at + horizon)``.

    ``ceil`` rounds up to a multiple of ``resolution`` on the UTC epoch grid.
    """
    issued_at = issued_at.astimezone(UTC)
    step = resolution // _ONE_US
    first = _EPOCH + timedelta(microseconds=-((_EPOCH - issued_at) // _ONE_US // step) * step)
    return (
        pl.datetime_range(first, issued_at + horizon, resolution, closed="left", eager=True)
        .cast(UTC_DATETIME)
        .alias("interval_start")
    )


class ForecasterModel(PythonModel):
    """A fitted forecaster and its site, as an MLflow pyfunc model.

    Parameters
    ----------
    forecaster
        A fitted :class:`models.base.Forecaster`.
    site
        The site it forecasts.
    resolution
        Interval length of its forecasts.
    """

    def __init__(self, forecaster: Forecaster, *, site: SiteConfig, resolution: timedelta) -> None:
        self.forecaster = forecaster
        self.site = site
        self.resolution = resolution

    def forecast(
        self, sessions: pl.DataFrame, *, issued_at: datetime, horizon: timedelta
    ) -> pl.DataFrame:
        """Forecast the intervals starting in ``[issued_at, issued_at + horizon)``.

        Only sessions that ended before ``issued_at`` are used; the first interval starts at
        ``issued_at`` rounded up to the resolution (on the UTC epoch grid).
        """
        starts = build_interval_starts(issued_at, horizon=horizon, resolution=self.resolution)
        known = sessions.filter(pl.col("plug_out_at") < issued_at)
        return self.forecaster.predict(
            known, site=self.site, issued_at=issued_at, interval_starts=starts
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Pyfunc entry point: sessions in, quantile forecasts out (see the module docstring)."""
        given = params or {}
        issued_at = datetime.fromisoformat(str(given["issued_at"]))
        if issued_at.tzinfo is None:
            issued_at = issued_at.replace(tzinfo=UTC)
        horizon = timedelta(hours=float(given["horizon_hours"]))
        forecast = self.forecast(
            from_mlflow_sessions(model_input), issued_at=issued_at, horizon=horizon
        )
        return to_mlflow_frame(forecast.select("interval_start", "p10", "p50", "p90", "note"))


def save_forecaster_model(
    model: ForecasterModel,
    folder: Path,
    *,
    example: pl.DataFrame,
    issued_at: datetime,
    horizon: timedelta,
) -> None:
    """Save ``model`` as a pyfunc model folder with its signature and smoke input example."""
    example_params = {
        "issued_at": issued_at.isoformat(),
        "horizon_hours": horizon / timedelta(hours=1),
    }
    mlflow.pyfunc.save_model(
        path=str(folder),
        python_model=model,
        signature=build_signature(issued_at=issued_at, horizon=horizon),
        input_example=(to_mlflow_frame(conform(example, SESSIONS_SCHEMA)), example_params),
        pip_requirements=list(PIP_REQUIREMENTS),
    )


def check_model_folder(folder: Path, *, where: str) -> ForecasterModel:
    """Load a saved pyfunc model and run its smoke check; return the wrapped forecaster."""
    try:
        loaded = mlflow.pyfunc.load_model(str(folder))
        meta = Model.load(str(folder))
        example = meta.load_input_example(str(folder))
        params = meta.load_input_example_params(str(folder))
        output = loaded.predict(example, params=params)
        wrapped = loaded.unwrap_python_model()
    except Exception as exc:  # a stored artifact can fail in any way (unpickling, imports)
        msg = (
            f"{where} cannot be loaded or fails on its smoke input: {exc!r}; "
            "serve the baseline and retrain with `evcast train`"
        )
        raise ModelSmokeCheckError(msg) from exc
    if not isinstance(wrapped, ForecasterModel) or params is None:
        msg = f"{where} is not an evcast forecaster model; retrain it with `evcast train`"
        raise ModelSmokeCheckError(msg)
    expected = build_interval_starts(
        datetime.fromisoformat(str(params["issued_at"])),
        horizon=timedelta(hours=float(params["horizon_hours"])),
        resolution=wrapped.resolution,
    ).len()
    problem = _smoke_problem(pl.from_pandas(output), rows=expected)
    if problem:
        msg = f"{where} fails its smoke check: {problem}; serve the baseline and retrain it"
        raise ModelSmokeCheckError(msg)
    return wrapped


def _smoke_problem(output: pl.DataFrame, *, rows: int) -> str | None:
    """Describe what is wrong with a smoke forecast, or None when it is sound."""
    missing = [c for c in ("interval_start", "p10", "p50", "p90") if c not in output.columns]
    if missing:
        return f"columns {missing!r} are missing (got {output.columns!r})"
    if output.height != rows:
        return f"{output.height} rows instead of {rows}"
    quantiles = pl.col("p10", "p50", "p90")
    bad = output.filter(
        pl.any_horizontal(quantiles.is_null() | quantiles.is_nan() | quantiles.is_infinite())
        | (pl.col("p10") < 0)
        | (pl.col("p10") > pl.col("p50"))
        | (pl.col("p50") > pl.col("p90"))
    )
    if bad.height:
        return f"{bad.height} rows are not finite, negative or crossed, first: {bad.row(0)!r}"
    return None
