"""Estimator core of the demand model: quantile boosters on a feature matrix, calibrated and capped.

Works on any feature matrix with a target column ``energy_kwh`` [kWh per interval], an
``is_missing`` flag and numeric feature columns (features/matrix.py builds them). Three LightGBM
models with quantile objectives give raw P10/P50/P90 (the median, not the mean, minimises MAE
on spiky demand). P50 learns from all rows; P10 and P90 learn from the rows before a held-out
window of the most recent issue times and are calibrated on it (split conformal): P10 is shifted
so that about 10% of held-out actuals fall below it, P90 so that about 80% fall inside
``[P10, P90]`` (:func:`compute_conformal_shifts` says why P90 takes up the slack). Finally the
three are sorted (never crossing) and clipped to ``[0, cap]`` (never negative, never above what
the site's chargers can draw).

:func:`fit_hybrid` fits several sites at once from one binned dataset: P50 per site (the
median of a single site is best learnt from its own rows), P10 and P90 pooled over all of them
(tails need more rows than one site has) with split-conformal shifts measured on the pooled
held-out rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import lightgbm as lgb
import numpy as np
import polars as pl

from forecasting.errors import SchemaError
from models.demand_config import QUANTILES, LightGBMParams, lightgbm_params

TARGET: str = "energy_kwh"


@dataclass(frozen=True)
class QuantileBoosters:
    """Fitted raw quantile models and their conformal shifts.

    Attributes
    ----------
    boosters
        One LightGBM booster per level of :data:`QUANTILES`, in order.
    features
        Feature columns the boosters read, in order.
    lower_shift, upper_shift
        Conformal shifts [kWh]: P10 is lowered by ``lower_shift`` and P90 raised by
        ``upper_shift`` (either may be negative when the raw interval was too wide).
    num_threads
        Threads LightGBM predicts with [-] (its default, all cores, costs more CPU on small
        batches than it saves).
    """

    boosters: tuple[lgb.Booster, ...]
    features: tuple[str, ...]
    lower_shift: float = 0.0
    upper_shift: float = 0.0
    num_threads: int = 1


def select_training_rows(matrix: pl.DataFrame) -> pl.DataFrame:
    """Keep the rows a model may learn from: known target, not marked missing."""
    _require(matrix, [TARGET, "is_missing"])
    return matrix.filter(pl.col(TARGET).is_not_null() & ~pl.col("is_missing").fill_null(True))


def to_array(matrix: pl.DataFrame, *, features: Sequence[str]) -> np.ndarray:
    """Return the feature columns as a float64 array (nulls as NaN, which LightGBM handles)."""
    _require(matrix, features)
    return matrix.select(pl.col(list(features)).cast(pl.Float64)).to_numpy()


def build_dataset(
    matrix: pl.DataFrame, *, features: Sequence[str], params: LightGBMParams
) -> lgb.Dataset:
    """Bin the trainable rows once, so several quantile models (and subsets) can share them.

    The raw feature array is kept (``free_raw_data=False``), so predictions on the training
    rows need no second conversion (:func:`_raw_array`).
    """
    rows = select_training_rows(matrix)
    if rows.height == 0:
        msg = "no trainable rows (all targets null or missing); widen the training window"
        raise SchemaError(msg)
    return lgb.Dataset(
        to_array(rows, features=features),
        label=rows[TARGET].to_numpy(),
        feature_name=list(features),
        params={
            "max_bin": params.max_bin,
            "feature_pre_filter": False,  # so boosters may use any min_data_in_leaf
            "verbosity": -1,
            "num_threads": params.num_threads,
        },
        free_raw_data=False,
    ).construct()


def train_boosters(
    dataset: lgb.Dataset, *, params: LightGBMParams, alphas: Sequence[float] = QUANTILES
) -> tuple[lgb.Booster, ...]:
    """Train one quantile booster per level in ``alphas`` [-] on a binned dataset."""
    return tuple(
        lgb.train(
            lightgbm_params(params, alpha=alpha),
            dataset,
            num_boost_round=params.num_boost_round,
        )
        for alpha in alphas
    )


def fit_boosters(
    matrix: pl.DataFrame,
    *,
    features: Sequence[str],
    params: LightGBMParams,
    alphas: Sequence[float] = QUANTILES,
) -> tuple[lgb.Booster, ...]:
    """Fit one quantile booster per level in ``alphas`` [-] on the trainable rows."""
    dataset = build_dataset(matrix, features=features, params=params)
    return train_boosters(dataset, params=params, alphas=alphas)


def predict_raw(
    boosters: Sequence[lgb.Booster], x: np.ndarray, *, num_threads: int = 1
) -> np.ndarray:
    """Raw quantiles, shape ``(rows, 3)`` [kWh], before calibration, sorting or capping."""
    return np.column_stack([booster.predict(x, num_threads=num_threads) for booster in boosters])


def _conformal_level(n: int, level: float) -> float:
    """Finite-sample-corrected quantile level ``ceil((n + 1) level) / n``, at most 1 [-]."""
    return min(1.0, math.ceil((n + 1) * level) / n)


def compute_conformal_shifts(
    raw: np.ndarray, actual: np.ndarray, *, coverage: float = 0.8
) -> tuple[float, float]:
    """Split-conformal shifts of P10 and P90 from held-out rows.

    The lower shift makes ``(1 - coverage) / 2`` of the held-out actuals fall below P10. The
    upper shift then makes the interval ``[P10, P90]`` cover ``coverage`` of them: when P10
    is rarely undershot (actuals at zero in idle hours cannot fall below a zero P10), P90 takes
    up the rest, so the interval is calibrated and not merely each bound.

    Parameters
    ----------
    raw
        Raw quantiles of the held-out rows, shape ``(rows, 3)`` [kWh].
    actual
        Held-out actuals [kWh].
    coverage
        Target share of actuals inside ``[P10, P90]`` [-].

    Returns
    -------
    tuple of float
        ``(lower_shift, upper_shift)`` [kWh], finite-sample-corrected (``ceil((n + 1) a)``
        ranks) exceedances ``p10 - y`` and ``y - p90``; ``(0.0, 0.0)`` without held-out rows.
    """
    n = actual.shape[0]
    if n == 0:
        return 0.0, 0.0
    miss = 1.0 - coverage
    lower = float(
        np.quantile(raw[:, 0] - actual, _conformal_level(n, 1 - miss / 2), method="higher")
    )
    upper = _upper_shift(raw, actual, lower_shift=lower, coverage=coverage)
    return lower, upper


def _upper_shift(
    raw: np.ndarray, actual: np.ndarray, *, lower_shift: float, coverage: float
) -> float:
    """Smallest P90 shift [kWh] with which the finalized interval covers ``coverage``.

    Accounts for :func:`finalize_quantiles`: a row is covered when ``y >= p10`` and
    ``y <= max(p50, p90 + shift)`` (sorting lifts a low P90 to P50), so rows at or below P50
    are covered whatever the shift, and the shift only has to reach the rest.
    """
    n = actual.shape[0]
    p10 = np.clip(np.minimum(raw[:, 0] - lower_shift, raw[:, 1]), 0.0, None)
    above_low = actual >= p10
    free = above_low & (actual <= np.maximum(raw[:, 1], 0.0))
    candidates = np.sort(actual[above_low & ~free] - raw[above_low & ~free, 2])
    if candidates.size == 0:
        return 0.0
    needed = min(n, math.ceil(coverage * (n + 1))) - int(free.sum())
    return float(candidates[min(max(needed, 1), candidates.size) - 1])


def finalize_quantiles(
    raw: np.ndarray, *, lower_shift: float, upper_shift: float, cap_kwh: float | None
) -> np.ndarray:
    """Apply conformal shifts, sort each row and clip to ``[0, cap_kwh]``.

    Parameters
    ----------
    raw
        Raw quantiles, shape ``(rows, 3)`` [kWh].
    lower_shift, upper_shift
        Conformal shifts [kWh] from :func:`compute_conformal_shifts`.
    cap_kwh
        Most energy the site can draw in one interval [kWh]; None when unknown.

    Returns
    -------
    numpy.ndarray
        Quantiles ``(rows, 3)`` [kWh] with ``0 <= p10 <= p50 <= p90 <= cap_kwh``.
    """
    shifted = raw.copy()
    shifted[:, 0] -= lower_shift
    shifted[:, 2] += upper_shift
    ordered = np.sort(shifted, axis=1)
    return np.clip(ordered, 0.0, np.inf if cap_kwh is None else cap_kwh)


def fit_calibrated(
    matrix: pl.DataFrame,
    *,
    features: Sequence[str],
    params: LightGBMParams,
    calibrate_from: datetime | None,
    coverage: float = 0.8,
) -> QuantileBoosters:
    """Fit boosters and their conformal shifts on a training matrix.

    P50 is fitted on all trainable rows. P10 and P90 are fitted on the rows issued before
    ``calibrate_from`` and shifted by the split-conformal corrections measured on the rows
    issued from it: three fits in all, and the bounds are calibrated on the most recent data.

    Parameters
    ----------
    matrix
        Feature matrix with ``issued_at``, ``energy_kwh``, ``is_missing`` and ``features``.
    features
        Feature columns to learn from.
    params
        LightGBM hyperparameters.
    calibrate_from
        Start (UTC) of the calibration window of issue times. None, or a window that leaves
        no rows on either side: all three boosters on all rows, no shifts.
    coverage
        Share of held-out actuals ``[P10, P90]`` is calibrated to cover [-].
    """
    rows = select_training_rows(matrix)
    dataset = build_dataset(rows, features=features, params=params)
    held = _held_out_mask(rows, calibrate_from=calibrate_from)
    if held is None:
        boosters = train_boosters(dataset, params=params)
        return QuantileBoosters(boosters, (*features,), num_threads=params.num_threads)
    (median,) = train_boosters(dataset, params=params, alphas=(QUANTILES[1],))
    early = dataset.subset(np.flatnonzero(~held).tolist())
    lower, upper = train_boosters(early, params=params, alphas=(QUANTILES[0], QUANTILES[2]))
    boosters = (lower, median, upper)
    raw = predict_raw(boosters, _raw_array(dataset)[held], num_threads=params.num_threads)
    shift_low, shift_high = compute_conformal_shifts(
        raw, rows[TARGET].to_numpy()[held], coverage=coverage
    )
    return QuantileBoosters(
        boosters, (*features,), shift_low, shift_high, num_threads=params.num_threads
    )


def fit_hybrid(
    matrix: pl.DataFrame,
    *,
    features: Sequence[str],
    params: LightGBMParams,
    calibrate_from: datetime | None,
    coverage: float = 0.8,
    group: str = "site_id",
) -> dict[str, QuantileBoosters]:
    """Fit a P50 booster per site and pooled P10/P90 boosters with pooled conformal shifts.

    The trainable rows of all sites are binned once; each site's P50 learns from its subset
    of that dataset (no second binning), P10 and P90 from the pooled rows issued before
    ``calibrate_from``. The shifts are measured on the pooled rows issued from it, each row's
    P50 from its own site's booster, so the interval is calibrated over the pool.

    Parameters
    ----------
    matrix
        Feature matrix of one or more sites with ``group``, ``issued_at``, ``energy_kwh``,
        ``is_missing`` and ``features``.
    features, params, calibrate_from, coverage
        As for :func:`fit_calibrated`.
    group
        Column naming the site of each row.

    Returns
    -------
    dict of str to QuantileBoosters
        One model per site with trainable rows, sharing the pooled P10/P90 boosters and shifts.
    """
    _require(matrix, [group])
    rows = select_training_rows(matrix)
    dataset = build_dataset(rows, features=features, params=params)
    held = _held_out_mask(rows, calibrate_from=calibrate_from)
    early = dataset if held is None else dataset.subset(np.flatnonzero(~held).tolist())
    lower, upper = train_boosters(early, params=params, alphas=(QUANTILES[0], QUANTILES[2]))
    sites = rows[group].to_numpy()
    medians = {
        str(site): train_boosters(
            dataset.subset(np.flatnonzero(sites == site).tolist()),
            params=params,
            alphas=(QUANTILES[1],),
        )[0]
        for site in rows[group].unique(maintain_order=True).to_list()
    }
    shifts = (0.0, 0.0)
    if held is not None:
        raw = _predict_pooled(
            (lower, upper),
            medians,
            _raw_array(dataset)[held],
            sites=sites[held],
            num_threads=params.num_threads,
        )
        shifts = compute_conformal_shifts(raw, rows[TARGET].to_numpy()[held], coverage=coverage)
    return {
        site: QuantileBoosters(
            (lower, median, upper), (*features,), *shifts, num_threads=params.num_threads
        )
        for site, median in medians.items()
    }


def _predict_pooled(
    tails: tuple[lgb.Booster, lgb.Booster],
    medians: dict[str, lgb.Booster],
    x: np.ndarray,
    *,
    sites: np.ndarray,
    num_threads: int,
) -> np.ndarray:
    """Raw quantiles ``(rows, 3)`` [kWh]: pooled P10/P90, each row's P50 from its site."""
    raw = np.empty((x.shape[0], 3))
    raw[:, 0] = tails[0].predict(x, num_threads=num_threads)
    raw[:, 2] = tails[1].predict(x, num_threads=num_threads)
    for site, median in medians.items():
        mine = sites == site
        raw[mine, 1] = median.predict(x[mine], num_threads=num_threads)
    return raw


def _raw_array(dataset: lgb.Dataset) -> np.ndarray:
    """Return the float64 feature array a dataset of :func:`build_dataset` was binned from."""
    return cast("np.ndarray", dataset.get_data())


def _held_out_mask(rows: pl.DataFrame, *, calibrate_from: datetime | None) -> np.ndarray | None:
    """Rows issued from ``calibrate_from``; None when that leaves no rows on either side."""
    if calibrate_from is None:
        return None
    held = (rows["issued_at"] >= calibrate_from).to_numpy()
    return None if held.all() or not held.any() else held


def predict_calibrated(
    model: QuantileBoosters, matrix: pl.DataFrame, *, cap_kwh: float | None
) -> np.ndarray:
    """Calibrated, sorted, capped quantiles ``(rows, 3)`` [kWh] for the rows of ``matrix``."""
    x = to_array(matrix, features=model.features)
    raw = predict_raw(model.boosters, x, num_threads=model.num_threads)
    return finalize_quantiles(
        raw, lower_shift=model.lower_shift, upper_shift=model.upper_shift, cap_kwh=cap_kwh
    )


def _require(matrix: pl.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in matrix.columns]
    if missing:
        msg = (
            f"feature matrix is missing columns {missing!r}; available: {matrix.columns!r}. "
            "build it with features.matrix.build_feature_matrix"
        )
        raise SchemaError(msg)
