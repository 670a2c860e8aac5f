"""Settings of the LightGBM demand model (``configs/demand.toml``).

Frozen pydantic models that forbid unknown keys and check bounds, so a typo in the file fails at
load time. :func:`lightgbm_params` turns them into LightGBM's parameter dictionary with the
settings that make training deterministic (fixed seed and threads, ``deterministic=True``,
``force_row_wise=True``): a rerun on the same data gives the same model.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from forecasting.config import FrozenModel, load_config

QUANTILES: Final[tuple[float, float, float]] = (0.1, 0.5, 0.9)
"""Quantile levels of the forecast columns ``p10``, ``p50``, ``p90`` [-]."""


class LightGBMParams(FrozenModel):
    """Hyperparameters shared by the three quantile models of a site."""

    num_boost_round: Annotated[int, Field(ge=10, le=5000, description="Trees per model [-].")] = 60
    learning_rate: Annotated[float, Field(gt=0, le=1, description="Shrinkage [-].")] = 0.15
    num_leaves: Annotated[int, Field(ge=2, le=1024, description="Leaves per tree [-].")] = 15
    min_data_in_leaf: Annotated[int, Field(ge=1, le=10_000, description="Rows per leaf [-].")] = 40
    feature_fraction: Annotated[
        float, Field(gt=0, le=1, description="Share of features per tree [-].")
    ] = 0.9
    lambda_l2: Annotated[float, Field(ge=0, le=1000, description="L2 regularisation [-].")] = 1.0
    max_bin: Annotated[int, Field(ge=8, le=1023, description="Histogram bins [-].")] = 63
    seed: Annotated[int, Field(ge=0, description="Seed of every random choice [-].")] = 20190601
    num_threads: Annotated[
        int, Field(ge=1, le=64, description="Threads; fixed for reproducibility [-].")
    ] = 1


class SearchSettings(FrozenModel):
    """Budget of the Optuna hyperparameter search (models/demand_search.py)."""

    n_trials: Annotated[int, Field(ge=1, le=10_000, description="Trials at most [-].")] = 30
    timeout_seconds: Annotated[
        float, Field(gt=0, le=86_400, description="Wall-clock budget [s].")
    ] = 600.0
    validation_days: Annotated[
        int, Field(ge=1, le=365, description="Most recent issue days scored [d].")
    ] = 28


class DemandConfig(FrozenModel):
    """What the demand model trains on and how."""

    resolution_minutes: Annotated[
        int, Field(ge=5, le=60, description="Series resolution [min]; divides 60.")
    ] = 60
    horizon_hours: Annotated[
        int, Field(ge=1, le=48, description="Longest horizon from issued_at [h].")
    ] = 48
    training_days: Annotated[
        int, Field(ge=7, le=1500, description="Daily issue times trained on [d].")
    ] = 182
    calibration_days: Annotated[
        int, Field(ge=0, le=365, description="Latest issue days held out to calibrate [d].")
    ] = 28
    interval_coverage: Annotated[
        float,
        Field(
            ge=0.5,
            le=0.95,
            description="Share of held-out actuals [P10, P90] is calibrated to cover [-].",
        ),
    ] = 0.8
    min_history_days: Annotated[
        int, Field(ge=1, le=1500, description="Less history than this: global model [d].")
    ] = 56
    settle_hours: Annotated[
        int,
        Field(
            ge=0,
            le=168,
            description="Training targets ending within this of the fit time are dropped, "
            "since sessions still plugged in then are unknown [h].",
        ),
    ] = 12
    pooling: Literal["site", "hybrid", "global"] = Field(
        default="site",
        description="'site': one model per site, the global model only for short histories; "
        "'hybrid': P50 per site, P10/P90 pooled over the pool sites with pooled calibration; "
        "'global': every site is served by the model pooled over the pool sites.",
    )
    allocation: Literal["uniform", "front_loaded"] = "uniform"
    lightgbm: LightGBMParams = LightGBMParams()
    search: SearchSettings = SearchSettings()

    @model_validator(mode="after")
    def _consistent(self) -> DemandConfig:
        if 60 % self.resolution_minutes:
            msg = f"resolution_minutes={self.resolution_minutes!r} must divide 60; use 15 or 60"
            raise ValueError(msg)
        if self.calibration_days >= self.training_days:
            msg = (
                f"calibration_days={self.calibration_days!r} must be below "
                f"training_days={self.training_days!r}; shorten the calibration window"
            )
            raise ValueError(msg)
        return self

    @property
    def resolution(self) -> timedelta:
        """Series resolution."""
        return timedelta(minutes=self.resolution_minutes)

    @property
    def horizon(self) -> timedelta:
        """Longest horizon from ``issued_at``."""
        return timedelta(hours=self.horizon_hours)


def load_demand_config(path: Path) -> DemandConfig:
    """Load and validate ``configs/demand.toml``, raising :class:`ConfigError` naming the file."""
    return load_config(path, DemandConfig)


def lightgbm_params(params: LightGBMParams, *, alpha: float) -> dict[str, object]:
    """Return LightGBM's parameters of the quantile model at level ``alpha`` [-].

    Deterministic by construction: fixed ``seed`` and ``num_threads``, ``deterministic=True``
    and ``force_row_wise=True``, no bagging.
    """
    return {
        "objective": "quantile",
        "alpha": alpha,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "lambda_l2": params.lambda_l2,
        "max_bin": params.max_bin,
        "seed": params.seed,
        "num_threads": params.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
