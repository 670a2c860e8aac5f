"""Hyperparameter search of the demand model with Optuna, within a time budget.

The nightly run may call :func:`search_lightgbm_params` on a site's training matrix: trials fit
the raw quantile boosters on the issue times before ``validate_from`` and score the mean pinball
loss over P10/P50/P90 on the issue times from it (a time-ordered split, never shuffled). The
TPE sampler is seeded, so a search with a fixed number of trials is repeatable; a search that
stops on its time budget may run fewer trials on a slower machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import optuna
import polars as pl

from features.matrix import feature_columns
from forecasting.config import SiteConfig
from forecasting.errors import SchemaError
from models.demand_config import QUANTILES, DemandConfig, LightGBMParams, SearchSettings
from models.demand_core import TARGET, fit_boosters, predict_raw, select_training_rows, to_array
from models.demand_matrix import build_training_matrix


def compute_pinball_loss(quantiles: np.ndarray, actual: np.ndarray) -> float:
    """Mean pinball loss [kWh] over the levels of :data:`QUANTILES` and all rows.

    Parameters
    ----------
    quantiles
        Forecast quantiles, shape ``(rows, 3)`` [kWh].
    actual
        Actuals [kWh].
    """
    levels = np.asarray(QUANTILES)
    diff = actual[:, None] - quantiles
    return float(np.mean(np.maximum(levels * diff, (levels - 1) * diff)))


def _suggest(trial: optuna.Trial, base: LightGBMParams) -> LightGBMParams:
    return base.model_copy(
        update={
            "num_boost_round": trial.suggest_int("num_boost_round", 50, 600, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }
    )


def search_lightgbm_params(
    matrix: pl.DataFrame,
    *,
    features: Sequence[str],
    base: LightGBMParams,
    settings: SearchSettings,
    validate_from: datetime,
) -> tuple[LightGBMParams, float]:
    """Search LightGBM hyperparameters that minimise validation pinball loss.

    Parameters
    ----------
    matrix
        Training feature matrix (``issued_at``, ``energy_kwh``, ``is_missing``, ``features``).
    features
        Feature columns.
    base
        Starting hyperparameters, scored first: the search returns them unless a trial beats
        them. Seed and thread count are kept.
    settings
        ``n_trials`` and ``timeout_seconds`` bound the search.
    validate_from
        Issue times at or after this instant (UTC) are scored; earlier ones are fitted.

    Returns
    -------
    tuple
        The best hyperparameters and their validation pinball loss [kWh].
    """
    rows = select_training_rows(matrix)
    fit_rows = rows.filter(pl.col("issued_at") < validate_from)
    held = rows.filter(pl.col("issued_at") >= validate_from)
    if fit_rows.height == 0 or held.height == 0:
        msg = (
            f"cannot search with validate_from={validate_from!r}: {fit_rows.height} rows to fit "
            f"and {held.height} to score; move validate_from or widen the training window"
        )
        raise SchemaError(msg)
    x_held = to_array(held, features=features)
    y_held = held[TARGET].to_numpy()

    base_loss = _score(fit_rows, x_held, y_held, features=features, params=base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=base.seed)
    )
    study.optimize(
        lambda trial: _score(
            fit_rows, x_held, y_held, features=features, params=_suggest(trial, base)
        ),
        n_trials=settings.n_trials,
        timeout=settings.timeout_seconds,
    )
    if study.best_value < base_loss:
        return base.model_copy(update=study.best_params), float(study.best_value)
    return base, base_loss


def _score(
    fit_rows: pl.DataFrame,
    x_held: np.ndarray,
    y_held: np.ndarray,
    *,
    features: Sequence[str],
    params: LightGBMParams,
) -> float:
    boosters = fit_boosters(fit_rows, features=features, params=params)
    return compute_pinball_loss(np.sort(predict_raw(boosters, x_held), axis=1), y_held)


def search_demand_config(
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    config: DemandConfig,
    weather: pl.DataFrame | None = None,
) -> tuple[DemandConfig, float]:
    """Search a site's LightGBM hyperparameters on the data known at ``issued_at`` [UTC].

    Builds the same training matrix as ``DemandForecaster.fit`` and scores the last
    ``config.search.validation_days`` of issue times, within ``config.search``'s budget.

    Returns
    -------
    tuple
        ``config`` with the best hyperparameters, and their validation pinball loss [kWh].
    """
    matrix = build_training_matrix(
        sessions, site=site, issued_at=issued_at, config=config, weather=weather
    )
    best, loss = search_lightgbm_params(
        matrix,
        features=feature_columns(with_weather=weather is not None),
        base=config.lightgbm,
        settings=config.search,
        validate_from=issued_at - timedelta(days=config.search.validation_days),
    )
    return config.model_copy(update={"lightgbm": best}), loss
