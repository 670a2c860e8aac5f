"""LightGBM demand model: calibrated P10/P50/P90 of a site's energy per interval [kWh].

:class:`DemandForecaster` keeps the :class:`models.base.Forecaster` protocol. ``fit`` builds the
training matrix (:func:`models.demand_matrix.build_training_matrix`: daily issue times at the
wall-clock time of the fit over ``training_days``, one matrix, no loop over issue times) and
fits direct multi-horizon quantile models (the horizon step is a feature) with split-conformal
calibration of P10/P90 (:mod:`models.demand_core`). Sites with less than ``min_history_days``
of sessions are served by a global model fitted on the pooled matrices of the ``pool_sites``
that have sessions (site-level static features and the site's own lags tell the sites apart);
``note`` says so. With ``pooling = "global"`` in the config every site is served that way; with
``pooling = "hybrid"`` each site keeps its own P50 while P10/P90 and their calibration are
pooled over the site and the pool sites (:func:`models.demand_core.fit_hybrid`).
Forecasts are sorted, clipped at zero and capped at ``charging_capacity_kw x interval hours``
when the site's chargers are known.

``fit_matrix`` and ``predict_matrix`` work on prebuilt matrices, so a backtest can build each
site's features once for a season and reuse them across refits (see
:func:`models.demand_matrix.restate_targets`); :func:`fit_site_models` fits every site of a
refit from one pooled matrix, binning it once. ``fit`` with pooling does the pooled work (the
pool's matrices, the pooled model or the hybrid tails, every pool site's P50 and the pooled
shifts) once per process for all the pool's sites (:mod:`models.demand_fitting`,
:mod:`models.pooled_fits`): training N sites one by one costs one pooled fit, not N, with the
same forecasts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Self

import polars as pl

from features.matrix import build_feature_matrix, feature_columns
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, NotFittedError, SchemaError
from models.demand_config import DemandConfig
from models.demand_core import QuantileBoosters, predict_calibrated
from models.demand_fitting import DemandFitter, Scope, select_site_model
from models.demand_matrix import build_training_matrix, compute_history_days


def compute_cap_kwh(site: SiteConfig, *, resolution: timedelta) -> float | None:
    """Most energy the site's chargers can draw in one interval [kWh]; None when unknown."""
    capacity = site.charging_capacity_kw
    if capacity is None:
        return None
    return capacity * (resolution / timedelta(hours=1))


class DemandForecaster:
    """Per-site LightGBM quantile model with a global cross-site fallback.

    Parameters
    ----------
    config
        Model settings (``configs/demand.toml``).
    pool_sites
        Sites whose sessions may train the global fallback model.

    Attributes
    ----------
    model_
        Fitted boosters and conformal shifts.
    scope_
        ``"site"``, ``"hybrid"`` or ``"global"``: which model serves the site.
    history_days_
        The site's history at fit time [d].
    """

    name: str = "demand"

    def __init__(
        self, config: DemandConfig | None = None, *, pool_sites: Sequence[SiteConfig] = ()
    ) -> None:
        self.config = config if config is not None else DemandConfig()
        self.pool_sites = tuple(pool_sites)

    def fit(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        weather: pl.DataFrame | None = None,
    ) -> Self:
        """Learn from the sessions known at ``issued_at`` [UTC] (``plug_out_at < issued_at``).

        With pooling (``"hybrid"``, ``"global"`` or the global fallback) the pooled part is
        fitted once per process for all sites of the pool and shared (:mod:`models.pooled_fits`).
        """
        known = sessions.filter(pl.col("plug_out_at") < issued_at)
        history = compute_history_days(known, site_id=site.site_id, issued_at=issued_at)
        others = self._present_pool(known, site=site, history=history)
        if self.config.pooling == "site" and history >= self.config.min_history_days:
            matrix = build_training_matrix(
                known, site=site, issued_at=issued_at, config=self.config, weather=weather
            )
            return self.fit_matrix(
                matrix,
                site=site,
                issued_at=issued_at,
                history_days=history,
                with_weather=weather is not None,
            )
        scope = self._scope(pooled=True, history_days=history)
        fitter = DemandFitter(
            self.config,
            features=feature_columns(with_weather=weather is not None),
            issued_at=issued_at,
        )
        pool = self._pool_order(site, others)
        fitted = fitter.pooled(known, sites=pool, scope=scope, weather=weather)
        return self._set_fitted(
            select_site_model(fitted, site=site),
            site=site,
            issued_at=issued_at,
            history=history,
            scope=scope,
            features=fitter.features,
        )

    def _present_pool(
        self, known: pl.DataFrame, *, site: SiteConfig, history: float
    ) -> list[SiteConfig]:
        """Return the other pool sites with known sessions; raise when a short site has none."""
        present = set(known["site_id"].unique().to_list())
        others = [s for s in self.pool_sites if s.site_id in present and s.site_id != site.site_id]
        if history < self.config.min_history_days and not others:
            msg = (
                f"site {site.site_id!r} has {history:.1f} days of history "
                f"(< min_history_days={self.config.min_history_days}) and no pool site has "
                "sessions; pass pool_sites or lower min_history_days in configs/demand.toml"
            )
            raise SchemaError(msg)
        return others

    def _pool_order(self, site: SiteConfig, others: Sequence[SiteConfig]) -> list[SiteConfig]:
        """Return the site and ``others`` in pool order (the site first when not in the pool).

        One order for every site of the pool, so all of them share one pooled fit.
        """
        members = {site.site_id, *(s.site_id for s in others)}
        ordered = [
            site if s.site_id == site.site_id else s
            for s in self.pool_sites
            if s.site_id in members
        ]
        in_pool = any(s.site_id == site.site_id for s in self.pool_sites)
        return ordered if in_pool else [site, *ordered]

    def fit_matrix(
        self,
        matrix: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        history_days: float,
        pooled: bool = False,
        with_weather: bool = False,
    ) -> Self:
        """Fit on a prebuilt training matrix whose targets are as known at ``issued_at``.

        Parameters
        ----------
        matrix
            Rows of :func:`features.matrix.build_feature_matrix` of ``site`` (or of the pool
            sites, for the global model) whose targets ended before ``issued_at``.
        site
            The site served.
        issued_at
            Fit time [UTC]; the calibration window is the last ``calibration_days`` before it.
        history_days
            The site's history at ``issued_at`` [d]; below ``min_history_days`` the
            forecasts are noted as a fallback.
        pooled
            Whether ``matrix`` holds several sites' rows: the global model, or with
            ``pooling = "hybrid"`` (and enough history) the pooled P10/P90 beside this
            site's own P50.
        with_weather
            Whether the matrix has weather columns.
        """
        scope = self._scope(pooled=pooled, history_days=history_days)
        features = feature_columns(with_weather=with_weather)
        fit = DemandFitter(self.config, features=features, issued_at=issued_at)
        model = select_site_model(
            fit.hybrid(matrix) if scope == "hybrid" else fit.calibrated(matrix), site=site
        )
        return self._set_fitted(
            model,
            site=site,
            issued_at=issued_at,
            history=history_days,
            scope=scope,
            features=features,
        )

    def _scope(self, *, pooled: bool, history_days: float) -> Scope:
        if not pooled:
            return "site"
        if self.config.pooling == "hybrid" and history_days >= self.config.min_history_days:
            return "hybrid"
        return "global"

    def _set_fitted(
        self,
        model: QuantileBoosters,
        *,
        site: SiteConfig,
        issued_at: datetime,
        history: float,
        scope: Scope,
        features: tuple[str, ...],
    ) -> Self:
        self.model_ = model
        self.scope_ = scope
        self.history_days_ = history
        self.features_ = features
        self.fitted_at_ = issued_at
        self.site_id_ = site.site_id
        return self

    def predict(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        interval_starts: pl.Series,
        weather: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Forecast the intervals starting at ``interval_starts`` (UTC, ``>= issued_at``).

        Returns one row per requested interval, in order: ``interval_start``, ``p10``, ``p50``,
        ``p90`` [kWh per interval] and ``note``.
        """
        forecasts = self.predict_issues(
            sessions,
            site=site,
            issue_times=[issued_at],
            horizon=self._horizon_for(issued_at, interval_starts),
            weather=weather,
        )
        requested = pl.DataFrame({"interval_start": interval_starts.cast(pl.Datetime("us", "UTC"))})
        return requested.join(
            forecasts.drop("issued_at"), on="interval_start", how="left", maintain_order="left"
        )

    def predict_issues(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issue_times: Sequence[datetime],
        horizon: timedelta,
        weather: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Forecast several issue times from one feature matrix.

        Each issue time sees only the sessions known at it (the feature builder excludes the
        others per issue time), so one frame for a whole season may be passed.
        """
        self._check_fitted()
        if horizon > self.config.horizon:
            msg = (
                f"horizon {horizon!r} exceeds horizon_hours={self.config.horizon_hours}; "
                "request fewer intervals or raise horizon_hours in configs/demand.toml"
            )
            raise ConfigError(msg)
        matrix = build_feature_matrix(
            sessions,
            site=site,
            issue_times=list(issue_times),
            horizon=horizon,
            resolution=self.config.resolution,
            weather=weather,
            allocation=self.config.allocation,
        )
        return self.predict_matrix(matrix, site=site)

    def predict_matrix(self, matrix: pl.DataFrame, *, site: SiteConfig) -> pl.DataFrame:
        """Forecast the rows of a prebuilt feature matrix of ``site``.

        Returns
        -------
        polars.DataFrame
            ``issued_at``, ``interval_start``, ``p10``, ``p50``, ``p90`` [kWh per interval] and
            ``note``, one row per matrix row, in its order.
        """
        self._check_fitted()
        cap = compute_cap_kwh(site, resolution=self.config.resolution)
        quantiles = predict_calibrated(self.model_, matrix, cap_kwh=cap)
        return matrix.select("issued_at", "interval_start").with_columns(
            pl.Series("p10", quantiles[:, 0]),
            pl.Series("p50", quantiles[:, 1]),
            pl.Series("p90", quantiles[:, 2]),
            pl.lit(self._note(site), dtype=pl.String).alias("note"),
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            msg = "DemandForecaster is not fitted; call fit(sessions, site=..., issued_at=...)"
            raise NotFittedError(msg)

    def _horizon_for(self, issued_at: datetime, interval_starts: pl.Series) -> timedelta:
        if interval_starts.len() == 0:
            return self.config.resolution
        first, last = interval_starts.min(), interval_starts.max()
        if first < issued_at:  # type: ignore[operator]
            msg = f"interval_start {first!r} is before issued_at {issued_at!r}; ask for later ones"
            raise ConfigError(msg)
        return last - issued_at + self.config.resolution  # type: ignore[operator]

    def _note(self, site: SiteConfig) -> str | None:
        if self.history_days_ >= self.config.min_history_days:
            return None
        return (
            f"global model: {site.site_id} had {self.history_days_:.0f} days of history "
            f"(< min_history_days={self.config.min_history_days})"
        )


def fit_site_models(
    matrix: pl.DataFrame,
    *,
    sites: Sequence[SiteConfig],
    issued_at: datetime,
    history_days: Mapping[str, float],
    config: DemandConfig,
    with_weather: bool = False,
) -> dict[str, DemandForecaster]:
    """Fit the forecasters of several sites at one refit, as ``fit`` would one by one.

    Parameters
    ----------
    matrix
        Training rows of all ``sites`` with targets as known at ``issued_at`` (e.g. from
        :func:`models.demand_matrix.restate_targets`).
    sites
        The sites to serve; with ``pooling`` ``"hybrid"`` or ``"global"`` they are the pool.
    issued_at
        Fit time [UTC].
    history_days
        Each site's history at ``issued_at`` [d], by ``site_id``.
    config
        Model settings; ``pooling`` says which models are fitted.
    with_weather
        Whether the matrix has weather columns.

    Returns
    -------
    dict of str to DemandForecaster
        One fitted forecaster per site with trainable rows, by ``site_id``. Pooled boosters are
        fitted once and shared; each site's P50 (``site`` and ``hybrid``) learns from its rows.
    """
    features = feature_columns(with_weather=with_weather)
    fit = DemandFitter(config, features=features, issued_at=issued_at)
    short = {s.site_id for s in sites if history_days[s.site_id] < config.min_history_days}
    pooled = fit.calibrated(matrix) if short or config.pooling == "global" else None
    own: dict[str, QuantileBoosters] = {}
    if config.pooling == "hybrid":
        own = fit.hybrid(matrix)
    elif config.pooling == "site":
        own = {
            str(site_id): fit.calibrated(rows)
            for (site_id,), rows in matrix.partition_by("site_id", as_dict=True).items()
        }
    fitted: dict[str, DemandForecaster] = {}
    for site in sites:
        scope: Scope = "global"
        if site.site_id not in short and config.pooling != "global":
            scope = config.pooling
        model = pooled if scope == "global" else own.get(site.site_id)
        if model is None:
            continue
        fitted[site.site_id] = DemandForecaster(config, pool_sites=sites)._set_fitted(
            model,
            site=site,
            issued_at=issued_at,
            history=history_days[site.site_id],
            scope=scope,
            features=features,
        )
    return fitted
