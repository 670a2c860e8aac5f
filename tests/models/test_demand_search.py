from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from forecasting.errors import SchemaError
from models.demand_config import LightGBMParams, SearchSettings
from models.demand_core import fit_boosters, predict_raw, to_array
from models.demand_search import (
    compute_pinball_loss,
    search_demand_config,
    search_lightgbm_params,
)
from tests.models.test_demand_core import FEATURES, _synthetic_matrix

START = datetime(2019, 1, 1, tzinfo=UTC)


def test_pinball_loss_of_a_known_case():
    # actual 1; quantiles 0, 1, 3: losses 0.1*1, 0, (1-0.9)*2 -> mean 0.1
    loss = compute_pinball_loss(np.array([[0.0, 1.0, 3.0]]), np.array([1.0]))
    assert loss == pytest.approx(0.1, abs=1e-12)  # exact arithmetic up to float rounding


def test_search_returns_params_no_worse_than_the_base():
    matrix = _synthetic_matrix(40, seed=5)
    base = LightGBMParams(num_boost_round=20, min_data_in_leaf=10, num_leaves=4)
    settings = SearchSettings(n_trials=4, timeout_seconds=60, validation_days=10)
    best, loss = search_lightgbm_params(
        matrix,
        features=FEATURES,
        base=base,
        settings=settings,
        validate_from=START + timedelta(days=30),
    )
    fit_rows = matrix.filter(pl.col("issued_at") < START + timedelta(days=30))
    held = matrix.filter(pl.col("issued_at") >= START + timedelta(days=30))
    raw = predict_raw(
        fit_boosters(fit_rows, features=FEATURES, params=base), to_array(held, features=FEATURES)
    )
    base_loss = compute_pinball_loss(np.sort(raw, axis=1), held["energy_kwh"].to_numpy())
    # the base is scored first and kept unless a trial beats it
    assert loss <= base_loss
    assert (best.seed, best.num_threads) == (base.seed, base.num_threads)


def test_search_refuses_an_empty_validation_window():
    matrix = _synthetic_matrix(10)
    with pytest.raises(SchemaError, match="0 to score"):
        search_lightgbm_params(
            matrix,
            features=FEATURES,
            base=LightGBMParams(),
            settings=SearchSettings(n_trials=1),
            validate_from=START + timedelta(days=30),
        )


def test_search_demand_config_tunes_only_lightgbm_on_known_data():
    from tests.models.test_demand import ISSUED, SMALL, _sessions, _site

    sessions = _sessions("alpha", start=ISSUED - timedelta(days=70), days=75, seed=4)
    config = SMALL.model_copy(
        update={"search": SearchSettings(n_trials=2, timeout_seconds=60, validation_days=7)}
    )
    tuned, loss = search_demand_config(
        sessions, site=_site("alpha"), issued_at=ISSUED, config=config
    )
    assert tuned.model_copy(update={"lightgbm": config.lightgbm}) == config
    assert (tuned.lightgbm.seed, tuned.lightgbm.num_threads) == (config.lightgbm.seed, 1)
    assert 0.0 < loss < float("inf")
