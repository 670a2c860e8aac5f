"""Solar forecasts of a site's PV system: PVWatts physics, its learned correction, a baseline.

* :func:`models.solar_physics.build_pv_physics` gives the physics output [kW] from weather.
* :class:`SolarForecaster` learns, where measured PV history exists, the quantiles of the
  residual ``measured - physics`` with LightGBM and adds them back to the physics output:
  P10/P50/P90 [kW], split-conformal calibrated on the most recent days of the training data,
  non-crossing, within ``[0, AC rating]``, zero while the sun is down.
* :func:`build_clearsky_index_persistence` is the baseline: the clear-sky index
  ``k = measured / clear-sky physics`` of the same time one ``lag`` earlier (or of the last
  daylight interval before that), times the clear-sky physics output now.

All functions are pure; the weather passed in is what the caller allows the model to know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Self, cast

import lightgbm as lgb
import numpy as np
import polars as pl

from forecasting.config import SiteConfig
from forecasting.errors import NotFittedError, SchemaError
from models.demand_core import compute_conformal_shifts, finalize_quantiles
from models.solar_physics import DEFAULT_RESOLUTION, build_pv_physics

QUANTILES: Final = (0.1, 0.5, 0.9)
FEATURES: Final = (
    "pv_phys_kw",
    "pv_clear_kw",
    "clear_sky_index",
    "ghi",
    "clearsky_ghi",
    "solar_zenith",
    "temp_air",
    "hour_angle",
)
"""Model inputs; all describe the target interval itself (no lags), so no look-ahead exists."""
DAYLIGHT_ZENITH: Final = 90.0
"""Intervals whose midpoint has the sun above the horizon (zenith below this [deg])."""
MIN_CLEAR_SHARE: Final = 0.05
"""A clear-sky index is taken only where clear-sky output exceeds this share of AC rating [-];
it is also the floor of the conformal score unit (:func:`_scale`)."""


def add_solar_features(
    weather: pl.DataFrame,
    *,
    site: SiteConfig,
    interval_starts: pl.Series,
    resolution: timedelta = DEFAULT_RESOLUTION,
) -> pl.DataFrame:
    """Physics output and sky features for the requested intervals.

    Parameters
    ----------
    weather
        ``interval_start`` [UTC], ``ghi`` [W/m^2], optional ``dni``, ``dhi``, ``temp_air``
        [degC], ``wind_speed`` [m/s]; only the rows of ``interval_starts`` are used.
    site, interval_starts, resolution
        As :func:`models.solar_physics.build_pv_physics`.

    Returns
    -------
    polars.DataFrame
        ``interval_start``, :data:`FEATURES` ([kW], [W/m^2], [-], [deg], [degC], [h]) and
        ``note``.
    """
    physics = build_pv_physics(
        weather, site=site, interval_starts=interval_starts, resolution=resolution
    )
    known = [c for c in ("ghi", "temp_air") if c in weather.columns]
    frame = physics.join(
        weather.select("interval_start", *known), on="interval_start", how="left"
    ).with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("ghi", "temp_air") if c not in known)
    solar_hour = (
        pl.col("interval_start").dt.hour()
        + pl.col("interval_start").dt.minute() / 60
        + site.longitude / 15
    )
    return frame.select(
        "interval_start",
        pv_phys_kw="pv_ac_kw",
        pv_clear_kw="pv_clear_kw",
        clear_sky_index=pl.when(pl.col("clearsky_ghi") > 20).then(
            (pl.col("ghi") / pl.col("clearsky_ghi")).clip(0.0, 2.0)
        ),
        ghi="ghi",
        clearsky_ghi="clearsky_ghi",
        solar_zenith="solar_zenith",
        temp_air="temp_air",
        hour_angle=(solar_hour + 12) % 24 - 12,
        note="note",
    )


def _matrix(frame: pl.DataFrame) -> np.ndarray:
    return frame.select(pl.col(FEATURES).cast(pl.Float64)).to_numpy()


def _scale(features: pl.DataFrame, *, ac_kw: float) -> np.ndarray:
    """Return the unit of the conformal scores [kW]: clear-sky output, >= MIN_CLEAR_SHARE x AC."""
    return np.maximum(features["pv_clear_kw"].to_numpy(), MIN_CLEAR_SHARE * ac_kw)


@dataclass
class SolarForecaster:
    """LightGBM quantile correction of PVWatts physics, learned from measured PV [kW].

    P50 learns from all daylight intervals with measured power. P10 and P90 learn from those
    before a held-out window of the last ``calibration_days`` and are calibrated on it (split
    conformal, :func:`models.demand_core.compute_conformal_shifts`, as the demand model). The
    scores are in units of each interval's clear-sky output (:func:`_scale`), so the band
    widens with the sun: one shift serves noon and dawn, summer and autumn.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM hyperparameters of each quantile model.
    seed
        Seed of every random choice; with ``num_threads=1``, ``deterministic=True`` and
        ``force_row_wise=True`` two fits on the same data predict identically.
    calibration_days
        Length of the calibration window [d] at the end of the training data; 0, or a window
        that leaves no rows on either side, fits all three models on all rows, uncalibrated.
    coverage
        Share of calibration actuals ``[P10, P90]`` is calibrated to cover [-].
    """

    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 40
    seed: int = 0
    calibration_days: float = 7.0
    coverage: float = 0.8
    name: str = "solar"

    def _model(self, alpha: float) -> lgb.LGBMRegressor:
        return lgb.LGBMRegressor(
            objective="quantile",
            alpha=alpha,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.seed,
            num_threads=1,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )

    def _raw(self, features: pl.DataFrame) -> np.ndarray:
        """Physics plus residual quantiles, shape ``(rows, 3)`` [kW], before calibration."""
        x = _matrix(features)
        base = features["pv_phys_kw"].to_numpy()
        return np.column_stack([base + self.models_[q].predict(x) for q in QUANTILES])

    def fit(
        self,
        weather: pl.DataFrame,
        pv: pl.DataFrame,
        *,
        site: SiteConfig,
        resolution: timedelta = DEFAULT_RESOLUTION,
    ) -> Self:
        """Learn the residual quantiles on daylight intervals with measured power, calibrated.

        Parameters
        ----------
        weather
            Observed or forecast weather covering the training intervals (see
            :func:`add_solar_features`).
        pv
            Measured ``interval_start`` [UTC] and ``pv_ac_kw`` [kW] (the ``pv`` table).
        site
            The site with its ``pv`` system.
        resolution
            Interval length.
        """
        if "pv_ac_kw" not in pv.columns:
            msg = f"pv frame needs 'pv_ac_kw' [kW]; got {pv.columns!r}"
            raise SchemaError(msg)
        measured = pv.select("interval_start", "pv_ac_kw").drop_nulls()
        features = add_solar_features(
            weather, site=site, interval_starts=measured["interval_start"], resolution=resolution
        ).join(measured, on="interval_start")
        train = features.filter(pl.col("solar_zenith") < DAYLIGHT_ZENITH).sort("interval_start")
        self.ac_capacity_kw_ = site.pv.ac_limit_kw if site.pv else float("inf")
        self.n_train_ = train.height
        self._fit_calibrated(train)
        return self

    def _fit_calibrated(self, train: pl.DataFrame) -> None:
        """Fit the three models and the conformal shifts [-] (in clear-sky units)."""
        x = _matrix(train)
        residual = (train["pv_ac_kw"] - train["pv_phys_kw"]).to_numpy()
        latest = cast(datetime, train["interval_start"].max())
        start = latest - timedelta(days=self.calibration_days)
        held = (train["interval_start"] >= start).to_numpy() if self.calibration_days else None
        self.lower_shift_, self.upper_shift_, self.n_calibration_ = 0.0, 0.0, 0
        if held is None or held.all() or not held.any():
            self.models_ = {q: self._model(q).fit(x, residual) for q in QUANTILES}
            return
        early = ~held
        self.models_ = {
            QUANTILES[0]: self._model(QUANTILES[0]).fit(x[early], residual[early]),
            QUANTILES[1]: self._model(QUANTILES[1]).fit(x, residual),
            QUANTILES[2]: self._model(QUANTILES[2]).fit(x[early], residual[early]),
        }
        window = train.filter(pl.Series(held))
        scale = _scale(window, ac_kw=self.ac_capacity_kw_)
        self.lower_shift_, self.upper_shift_ = compute_conformal_shifts(
            self._raw(window) / scale[:, None],
            window["pv_ac_kw"].to_numpy() / scale,
            coverage=self.coverage,
        )
        self.n_calibration_ = window.height

    def predict(
        self,
        weather: pl.DataFrame,
        *,
        site: SiteConfig,
        interval_starts: pl.Series,
        resolution: timedelta = DEFAULT_RESOLUTION,
    ) -> pl.DataFrame:
        """Calibrated quantile forecasts of AC power for the requested intervals.

        Returns
        -------
        polars.DataFrame
            ``interval_start``, ``p10``, ``p50``, ``p90`` [kW] (ordered, within
            ``[0, AC rating]``, 0 at night), ``pv_phys_kw`` [kW] and ``note`` (set where
            clear sky stood in for missing weather).
        """
        if not hasattr(self, "models_"):
            msg = "SolarForecaster is not fitted; call fit(weather, pv, site=...) first"
            raise NotFittedError(msg)
        features = add_solar_features(
            weather, site=site, interval_starts=interval_starts, resolution=resolution
        )
        scale = _scale(features, ac_kw=self.ac_capacity_kw_)[:, None]
        scaled = finalize_quantiles(
            self._raw(features) / scale,
            lower_shift=self.lower_shift_,
            upper_shift=self.upper_shift_,
            cap_kwh=None,
        )
        ordered = np.clip(scaled * scale, 0.0, self.ac_capacity_kw_)
        ordered[features["solar_zenith"].to_numpy() >= DAYLIGHT_ZENITH] = 0.0
        return features.select(
            "interval_start",
            p10=pl.Series(ordered[:, 0]),
            p50=pl.Series(ordered[:, 1]),
            p90=pl.Series(ordered[:, 2]),
            pv_phys_kw="pv_phys_kw",
            note="note",
        )


def build_clearsky_index_persistence(
    pv: pl.DataFrame,
    *,
    site: SiteConfig,
    interval_starts: pl.Series,
    lag: timedelta = timedelta(days=1),
    resolution: timedelta = DEFAULT_RESOLUTION,
) -> pl.DataFrame:
    """Clear-sky-index persistence: ``k(t - lag) x clear-sky physics(t)`` [kW].

    ``k`` is measured / clear-sky physics output on daylight intervals whose clear-sky output
    exceeds :data:`MIN_CLEAR_SHARE` of the AC rating; elsewhere the last such ``k`` carries
    forward. Only measurements at or before ``t - lag`` are used, so with ``lag`` of a day a
    forecast issued at midnight uses nothing from its target day.

    Parameters
    ----------
    pv
        Measured ``interval_start`` [UTC] and ``pv_ac_kw`` [kW].
    site, interval_starts, resolution
        As :func:`models.solar_physics.build_pv_physics`.
    lag
        How far back the index is taken.

    Returns
    -------
    polars.DataFrame
        ``interval_start`` and ``p50`` [kW] (null where no ``k`` is known yet).
    """
    empty = pl.DataFrame(schema={"interval_start": pl.Datetime("us", "UTC")})
    ac_kw = site.pv.ac_limit_kw if site.pv else float("inf")
    history = pv.select("interval_start", "pv_ac_kw").drop_nulls().sort("interval_start")
    clear_then = build_pv_physics(
        empty, site=site, interval_starts=history["interval_start"], resolution=resolution
    )
    index = (
        history.join(clear_then, on="interval_start")
        .select(
            "interval_start",
            k=pl.when(pl.col("pv_clear_kw") > MIN_CLEAR_SHARE * ac_kw).then(
                pl.col("pv_ac_kw") / pl.col("pv_clear_kw")
            ),
        )
        .drop_nulls()
        .with_columns(pl.col("interval_start") + lag)
    )
    clear_now = build_pv_physics(
        empty, site=site, interval_starts=interval_starts.sort(), resolution=resolution
    )
    joined = clear_now.join_asof(index, on="interval_start", strategy="backward")
    forecast = joined.select(
        "interval_start", p50=(pl.col("k") * pl.col("pv_clear_kw")).clip(0.0, ac_kw)
    )
    order = pl.DataFrame({"interval_start": interval_starts})
    return order.join(forecast, on="interval_start", how="left", maintain_order="left")


def compute_nmae(
    forecast: pl.DataFrame, measured: pl.DataFrame, *, capacity_kw: float, column: str = "p50"
) -> float:
    """Mean absolute error as a share of capacity [%] over intervals both frames have.

    ``forecast`` needs ``interval_start`` and ``column`` [kW]; ``measured`` needs
    ``interval_start`` and ``pv_ac_kw`` [kW]. Rows with a null forecast are left out.
    """
    joined = forecast.join(measured, on="interval_start").drop_nulls([column, "pv_ac_kw"])
    if joined.is_empty():
        return float("nan")
    error = (joined[column] - joined["pv_ac_kw"]).abs().mean()
    return 100.0 * float(error) / capacity_kw  # type: ignore[arg-type]
