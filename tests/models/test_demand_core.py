from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from forecasting.errors import SchemaError
from models.demand_config import LightGBMParams
from models.demand_core import (
    compute_conformal_shifts,
    finalize_quantiles,
    fit_calibrated,
    fit_hybrid,
    predict_calibrated,
    select_training_rows,
)

FEATURES = ("hour", "lag_168h")
SMALL = LightGBMParams(num_boost_round=30, min_data_in_leaf=10, num_leaves=7)


def _synthetic_matrix(days: int, *, seed: int = 0) -> pl.DataFrame:
    """Daily issues x 24 hourly steps; demand = a daily profile plus skewed noise [kWh]."""
    rng = np.random.default_rng(seed)
    start = datetime(2019, 1, 1, tzinfo=UTC)
    issued = np.repeat(np.arange(days), 24)
    hour = np.tile(np.arange(24), days)
    profile = 5.0 * np.sin(np.pi * hour / 24) ** 2
    energy = profile * rng.exponential(1.0, size=hour.size)
    return pl.DataFrame(
        {
            "issued_at": [start + timedelta(days=int(d)) for d in issued],
            "hour": hour.astype(np.float64),
            "lag_168h": profile + rng.normal(0, 0.5, size=hour.size),
            "energy_kwh": energy,
            "is_missing": np.zeros(hour.size, dtype=bool),
        }
    )


def test_select_training_rows_drops_null_and_missing_targets():
    matrix = pl.DataFrame(
        {"energy_kwh": [1.0, None, 2.0, 3.0], "is_missing": [False, False, True, None]}
    )
    assert select_training_rows(matrix)["energy_kwh"].to_list() == [1.0]


def test_missing_feature_column_names_missing_and_available():
    matrix = _synthetic_matrix(3).drop("lag_168h")
    with pytest.raises(SchemaError, match=r"missing columns \['lag_168h'\].*available"):
        fit_calibrated(matrix, features=FEATURES, params=SMALL, calibrate_from=None)


@pytest.mark.parametrize(
    ("cap", "upper"),
    [pytest.param(None, np.inf, id="no-cap"), pytest.param(2.5, 2.5, id="cap-2.5kWh")],
)
def test_finalize_sorts_and_clips(cap, upper):
    raw = np.array([[3.0, 1.0, -2.0], [-1.0, 0.5, 9.0], [0.2, 0.4, 0.6]])
    out = finalize_quantiles(raw, lower_shift=0.1, upper_shift=0.2, cap_kwh=cap)
    assert np.all(np.diff(out, axis=1) >= 0)
    assert out.min() >= 0.0
    assert out.max() <= upper
    # row 3: p10 lowered by 0.1 and p90 raised by 0.2, within bounds (float tolerance 1e-12)
    np.testing.assert_allclose(out[2], [0.1, 0.4, min(0.8, upper)], atol=1e-12)


def test_conformal_shifts_reach_nominal_coverage_on_held_out_rows():
    rng = np.random.default_rng(1)
    actual = rng.exponential(2.0, size=2000)
    raw = np.column_stack([np.full(2000, 1.0), np.full(2000, 1.4), np.full(2000, 1.5)])
    lower, upper = compute_conformal_shifts(raw, actual)
    below = np.mean(actual < raw[:, 0] - lower)
    above = np.mean(actual > raw[:, 2] + upper)
    # finite-sample conformal guarantee: at most 10% + 1/n on each side; at least 10% - 2/n
    assert 0.1 - 2 / 2000 <= below <= 0.1 + 1 / 2000
    assert 0.1 - 2 / 2000 <= above <= 0.1 + 1 / 2000


def test_conformal_shifts_calibrate_the_interval_when_p10_cannot_be_undershot():
    rng = np.random.default_rng(2)
    # 40% idle hours at exactly zero: a zero P10 is never undershot
    actual = np.where(rng.uniform(size=4000) < 0.4, 0.0, rng.exponential(3.0, size=4000))
    raw = np.column_stack([np.zeros(4000), np.full(4000, 1.0), np.full(4000, 2.0)])
    lower, upper = compute_conformal_shifts(raw, actual)
    q = finalize_quantiles(raw, lower_shift=lower, upper_shift=upper, cap_kwh=None)
    coverage = np.mean((actual >= q[:, 0]) & (actual <= q[:, 2]))
    # conformal guarantee on the calibration rows themselves: 80% within 2/n
    assert 0.8 - 2 / 4000 <= coverage <= 0.8 + 2 / 4000


def test_conformal_shifts_are_zero_without_held_out_rows():
    assert compute_conformal_shifts(np.empty((0, 3)), np.empty(0)) == (0.0, 0.0)


def test_calibrated_model_orders_caps_and_covers_new_data():
    train = _synthetic_matrix(120, seed=2)
    test = _synthetic_matrix(60, seed=3)
    model = fit_calibrated(
        train,
        features=FEATURES,
        params=SMALL,
        calibrate_from=datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=90),
    )
    q = predict_calibrated(model, test, cap_kwh=12.0)
    assert np.all(np.diff(q, axis=1) >= 0)
    assert q.min() >= 0.0
    assert q.max() <= 12.0
    y = test["energy_kwh"].to_numpy()
    coverage = np.mean((y >= q[:, 0]) & (y <= q[:, 2]))
    # nominal 80%; 1440 exchangeable test rows and 720 calibration rows: +-6 points is ~4 sigma
    assert 0.74 <= coverage <= 0.86


def test_refit_gives_identical_predictions():
    train = _synthetic_matrix(60, seed=4)
    cut = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=45)
    first = fit_calibrated(train, features=FEATURES, params=SMALL, calibrate_from=cut)
    second = fit_calibrated(train, features=FEATURES, params=SMALL, calibrate_from=cut)
    np.testing.assert_array_equal(
        predict_calibrated(first, train, cap_kwh=None),
        predict_calibrated(second, train, cap_kwh=None),
    )


def _two_sites(days: int, *, seed: int) -> pl.DataFrame:
    """Two sites of :func:`_synthetic_matrix`, the second with three times the demand [kWh]."""
    small = _synthetic_matrix(days, seed=seed).with_columns(site_id=pl.lit("small"))
    large = _synthetic_matrix(days, seed=seed + 100).with_columns(
        pl.col("energy_kwh", "lag_168h") * 3.0, site_id=pl.lit("large")
    )
    return pl.concat([small, large])


def test_hybrid_shares_pooled_tails_and_fits_a_median_per_site():
    train = _two_sites(90, seed=5)
    cut = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=70)
    models = fit_hybrid(train, features=FEATURES, params=SMALL, calibrate_from=cut)
    assert list(models) == ["small", "large"]
    small, large = models["small"], models["large"]
    assert small.boosters[0] is large.boosters[0]
    assert small.boosters[2] is large.boosters[2]
    assert (small.lower_shift, small.upper_shift) == (large.lower_shift, large.upper_shift)
    rows = train.filter(pl.col("site_id") == "large")
    x = rows.select(pl.col(list(FEATURES)).cast(pl.Float64)).to_numpy()
    own, other = large.boosters[1].predict(x).mean(), small.boosters[1].predict(x).mean()
    # each median learns its own site's level: the large site's is about 3x the small one's,
    # even where the small site's median sees the large site's (3x) lags
    assert own > 2.0 * other


def test_hybrid_orders_caps_and_covers_new_data():
    cut = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=90)
    models = fit_hybrid(
        _two_sites(120, seed=6), features=FEATURES, params=SMALL, calibrate_from=cut
    )
    test = _two_sites(60, seed=7)
    covered = []
    for site, model in models.items():
        rows = test.filter(pl.col("site_id") == site)
        q = predict_calibrated(model, rows, cap_kwh=30.0)
        assert np.all(np.diff(q, axis=1) >= 0)
        assert q.min() >= 0.0
        assert q.max() <= 30.0
        y = rows["energy_kwh"].to_numpy()
        covered.append((y >= q[:, 0]) & (y <= q[:, 2]))
    coverage = np.mean(np.concatenate(covered))
    # nominal 80% over the pool; 2880 exchangeable test rows, 1440 calibration rows: +-6 points
    # is about 5 sigma
    assert 0.74 <= coverage <= 0.86


def test_hybrid_refit_gives_identical_predictions():
    train = _two_sites(60, seed=8)
    cut = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=45)
    first = fit_hybrid(train, features=FEATURES, params=SMALL, calibrate_from=cut)
    second = fit_hybrid(train, features=FEATURES, params=SMALL, calibrate_from=cut)
    for site in first:
        np.testing.assert_array_equal(
            predict_calibrated(first[site], train, cap_kwh=None),
            predict_calibrated(second[site], train, cap_kwh=None),
        )


def test_hybrid_without_a_calibration_window_fits_tails_on_all_rows_unshifted():
    models = fit_hybrid(
        _two_sites(30, seed=9), features=FEATURES, params=SMALL, calibrate_from=None
    )
    assert {(m.lower_shift, m.upper_shift) for m in models.values()} == {(0.0, 0.0)}


def test_hybrid_needs_the_site_column():
    with pytest.raises(SchemaError, match=r"missing columns \['site_id'\]"):
        fit_hybrid(_synthetic_matrix(10), features=FEATURES, params=SMALL, calibrate_from=None)
