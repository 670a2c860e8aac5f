from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.config import ChargerGroup, SiteConfig
from forecasting.errors import ConfigError, NotFittedError, SchemaError
from models.base import Forecaster
from models.demand import DemandForecaster, compute_cap_kwh, fit_site_models
from models.demand_config import DemandConfig, LightGBMParams
from models.demand_matrix import build_training_matrix, compute_history_days, restate_targets

START = datetime(2019, 1, 1, tzinfo=UTC)
ISSUED = datetime(2019, 4, 30, 23, tzinfo=UTC)  # 00:00 Europe/London (BST)
SMALL = DemandConfig(
    horizon_hours=24,
    training_days=60,
    calibration_days=14,
    min_history_days=30,
    lightgbm=LightGBMParams(num_boost_round=25, min_data_in_leaf=20, num_leaves=7),
)


def _site(site_id: str, *, power_kw: float = 3.7) -> SiteConfig:
    return SiteConfig(
        site_id=site_id,
        name=site_id,
        latitude=56.4,
        longitude=-3.4,
        timezone="Europe/London",
        country="GB",
        subdivision="SCT",
        chargers=(ChargerGroup(model="test", power_kw=power_kw, connectors=1),),
    )


def _sessions(site_id: str, *, start: datetime, days: int, seed: int) -> pl.DataFrame:
    """Poisson arrivals with a daytime profile; 7 kW draws, so a 3.7 kW cap binds [kWh]."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    rate = 0.6 * np.sin(np.pi * ((hours % 24) - 6).clip(0, 14) / 14) ** 2
    counts = rng.poisson(rate)
    starts = np.repeat(hours, counts) + rng.uniform(0, 1, counts.sum())
    durations = rng.uniform(0.25, 3.0, starts.size)
    plug_in = [start + timedelta(hours=float(h)) for h in starts]
    return pl.DataFrame(
        {
            "site_id": site_id,
            "session_id": [f"{site_id}-{i}" for i in range(starts.size)],
            "plug_in_at": plug_in,
            "plug_out_at": [
                p + timedelta(hours=float(d)) for p, d in zip(plug_in, durations, strict=True)
            ],
            "energy_kwh": durations * 7.0 * rng.uniform(0.3, 1.0, starts.size),
        },
        schema_overrides={"plug_in_at": pl.Datetime("us", "UTC")},
    ).with_columns(pl.col("plug_out_at").cast(pl.Datetime("us", "UTC")))


@pytest.fixture(scope="module")
def sessions() -> pl.DataFrame:
    return _sessions("alpha", start=START, days=140, seed=1)


@pytest.fixture(scope="module")
def fitted(sessions: pl.DataFrame) -> DemandForecaster:
    return DemandForecaster(SMALL).fit(sessions, site=_site("alpha"), issued_at=ISSUED)


def _day(issued_at: datetime) -> pl.Series:
    return pl.Series(
        "interval_start",
        [issued_at + timedelta(hours=h) for h in range(24)],
        dtype=pl.Datetime("us", "UTC"),
    )


def test_keeps_the_forecaster_protocol(fitted: DemandForecaster):
    assert isinstance(fitted, Forecaster)
    assert fitted.scope_ == "site"


def test_forecasts_are_ordered_non_negative_and_capped(
    fitted: DemandForecaster, sessions: pl.DataFrame
):
    out = fitted.predict(
        sessions, site=_site("alpha"), issued_at=ISSUED, interval_starts=_day(ISSUED)
    )
    assert out.columns == ["interval_start", "p10", "p50", "p90", "note"]
    assert_frame_equal(out.select("interval_start"), _day(ISSUED).to_frame())
    q = out.select("p10", "p50", "p90").to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
    assert q.min() >= 0.0
    # one 3.7 kW connector over one hour: at most 3.7 kWh per interval
    assert q.max() <= 3.7
    assert q[:, 2].max() == pytest.approx(3.7)  # 7 kW sessions push P90 up to the cap
    assert out["note"].is_null().all()


def test_two_fits_on_the_same_data_give_identical_forecasts(
    fitted: DemandForecaster, sessions: pl.DataFrame
):
    again = DemandForecaster(SMALL).fit(sessions, site=_site("alpha"), issued_at=ISSUED)
    args = {"site": _site("alpha"), "issued_at": ISSUED, "interval_starts": _day(ISSUED)}
    assert_frame_equal(fitted.predict(sessions, **args), again.predict(sessions, **args))


def test_sessions_unknown_at_fit_and_issue_time_change_nothing(
    fitted: DemandForecaster, sessions: pl.DataFrame
):
    extra = _sessions("alpha", start=ISSUED - timedelta(hours=5), days=3, seed=9).with_columns(
        pl.col("session_id") + "-late"
    )
    # every extra session ends at or after ISSUED, or starts after it: unknown at ISSUED
    late = extra.filter(pl.col("plug_out_at") >= ISSUED)
    assert late.height > 0
    polluted = pl.concat([sessions, late])
    refit = DemandForecaster(SMALL).fit(polluted, site=_site("alpha"), issued_at=ISSUED)
    args = {"site": _site("alpha"), "issued_at": ISSUED, "interval_starts": _day(ISSUED)}
    assert_frame_equal(fitted.predict(sessions, **args), refit.predict(polluted, **args))


def test_predict_before_fit_raises(sessions: pl.DataFrame):
    with pytest.raises(NotFittedError, match="not fitted"):
        DemandForecaster(SMALL).predict(
            sessions, site=_site("alpha"), issued_at=ISSUED, interval_starts=_day(ISSUED)
        )


@pytest.mark.parametrize(
    ("starts", "match"),
    [
        pytest.param(
            [ISSUED + timedelta(hours=h) for h in range(30)], "exceeds horizon_hours", id="30h"
        ),
        pytest.param([ISSUED - timedelta(hours=1)], "before issued_at", id="past-interval"),
    ],
)
def test_requests_outside_the_horizon_are_refused(
    fitted: DemandForecaster, sessions: pl.DataFrame, starts: list[datetime], match: str
):
    series = pl.Series("interval_start", starts, dtype=pl.Datetime("us", "UTC"))
    with pytest.raises(ConfigError, match=match):
        fitted.predict(sessions, site=_site("alpha"), issued_at=ISSUED, interval_starts=series)


def test_short_history_uses_the_global_model_and_says_so(sessions: pl.DataFrame):
    young = _sessions("young", start=ISSUED - timedelta(days=10), days=10, seed=3)
    both = pl.concat([sessions, young])
    sites = (_site("alpha"), _site("young", power_kw=7.0))
    model = DemandForecaster(SMALL, pool_sites=sites).fit(both, site=sites[1], issued_at=ISSUED)
    out = model.predict(both, site=sites[1], issued_at=ISSUED, interval_starts=_day(ISSUED))
    assert model.scope_ == "global"
    assert out["note"].str.contains("global model: young had 10 days").all()
    assert out["p90"].max() <= 7.0


def test_global_pooling_serves_every_site_from_the_pooled_model(sessions: pl.DataFrame):
    other = _sessions("beta", start=START, days=140, seed=5)
    both = pl.concat([sessions, other])
    config = SMALL.model_copy(update={"pooling": "global"})
    sites = (_site("alpha"), _site("beta"))
    model = DemandForecaster(config, pool_sites=sites).fit(both, site=sites[0], issued_at=ISSUED)
    out = model.predict(both, site=sites[0], issued_at=ISSUED, interval_starts=_day(ISSUED))
    alone = DemandForecaster(SMALL).fit(sessions, site=sites[0], issued_at=ISSUED)
    assert model.scope_ == "global"
    assert out["note"].is_null().all()  # enough history: the pooled model is no fallback
    assert not out["p50"].equals(
        alone.predict(sessions, site=sites[0], issued_at=ISSUED, interval_starts=_day(ISSUED))[
            "p50"
        ]
    )


def test_hybrid_pooling_keeps_the_site_median_and_pools_the_tails(sessions: pl.DataFrame):
    both = pl.concat([sessions, _sessions("beta", start=START, days=140, seed=5)])
    sites = (_site("alpha"), _site("beta"))
    config = SMALL.model_copy(update={"pooling": "hybrid"})
    hybrid = DemandForecaster(config, pool_sites=sites).fit(both, site=sites[0], issued_at=ISSUED)
    pooled = DemandForecaster(SMALL.model_copy(update={"pooling": "global"}), pool_sites=sites)
    pooled.fit(both, site=sites[0], issued_at=ISSUED)
    alone = DemandForecaster(SMALL).fit(sessions, site=sites[0], issued_at=ISSUED)
    args = {"site": sites[0], "issued_at": ISSUED, "interval_starts": _day(ISSUED)}
    out = hybrid.predict(both, **args)
    assert hybrid.scope_ == "hybrid"
    assert out["note"].is_null().all()
    q = out.select("p10", "p50", "p90").to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
    assert q.min() >= 0.0
    # the tails are not the site's own (they learn from both sites), the median is not the
    # pooled one (it learns from the site's rows alone)
    assert not out["p90"].equals(alone.predict(sessions, **args)["p90"])
    assert not out["p50"].equals(pooled.predict(both, **args)["p50"])


def test_hybrid_sessions_unknown_at_fit_and_issue_time_change_nothing(sessions: pl.DataFrame):
    both = pl.concat([sessions, _sessions("beta", start=START, days=140, seed=5)])
    late = _sessions("beta", start=ISSUED - timedelta(hours=5), days=3, seed=9).with_columns(
        pl.col("session_id") + "-late"
    )
    polluted = pl.concat([both, late.filter(pl.col("plug_out_at") >= ISSUED)])
    sites = (_site("alpha"), _site("beta"))
    config = SMALL.model_copy(update={"pooling": "hybrid"})
    args = {"site": sites[0], "issued_at": ISSUED, "interval_starts": _day(ISSUED)}
    clean = DemandForecaster(config, pool_sites=sites).fit(both, site=sites[0], issued_at=ISSUED)
    dirty = DemandForecaster(config, pool_sites=sites)
    dirty.fit(polluted, site=sites[0], issued_at=ISSUED)
    assert_frame_equal(clean.predict(both, **args), dirty.predict(polluted, **args))


@pytest.mark.parametrize("pooling", ["site", "hybrid", "global"])
def test_fit_site_models_equals_fitting_each_site(sessions: pl.DataFrame, pooling: str):
    both = pl.concat([sessions, _sessions("beta", start=START, days=140, seed=5)])
    sites = (_site("alpha"), _site("beta", power_kw=7.0))
    config = SMALL.model_copy(update={"pooling": pooling})
    matrix = pl.concat(
        [build_training_matrix(both, site=s, issued_at=ISSUED, config=config) for s in sites]
    )
    history = {
        s.site_id: compute_history_days(both, site_id=s.site_id, issued_at=ISSUED) for s in sites
    }
    models = fit_site_models(
        matrix, sites=sites, issued_at=ISSUED, history_days=history, config=config
    )
    for site in sites:
        own = DemandForecaster(config, pool_sites=sites).fit(both, site=site, issued_at=ISSUED)
        args = {"site": site, "issued_at": ISSUED, "interval_starts": _day(ISSUED)}
        assert models[site.site_id].scope_ == own.scope_ == pooling
        assert_frame_equal(models[site.site_id].predict(both, **args), own.predict(both, **args))


def test_fit_site_models_serves_short_histories_from_the_pooled_model(sessions: pl.DataFrame):
    young = _sessions("young", start=ISSUED - timedelta(days=10), days=10, seed=3)
    both = pl.concat([sessions, young])
    sites = (_site("alpha"), _site("young", power_kw=7.0))
    config = SMALL.model_copy(update={"pooling": "hybrid"})
    matrix = pl.concat(
        [build_training_matrix(both, site=s, issued_at=ISSUED, config=config) for s in sites]
    )
    history = {
        s.site_id: compute_history_days(both, site_id=s.site_id, issued_at=ISSUED) for s in sites
    }
    models = fit_site_models(
        matrix, sites=sites, issued_at=ISSUED, history_days=history, config=config
    )
    assert (models["alpha"].scope_, models["young"].scope_) == ("hybrid", "global")
    out = models["young"].predict(
        both, site=sites[1], issued_at=ISSUED, interval_starts=_day(ISSUED)
    )
    assert out["note"].str.contains("global model: young had 10 days").all()
    own = DemandForecaster(config, pool_sites=sites).fit(both, site=sites[1], issued_at=ISSUED)
    args = {"site": sites[1], "issued_at": ISSUED, "interval_starts": _day(ISSUED)}
    assert_frame_equal(out, own.predict(both, **args))


def test_short_history_without_a_pool_is_refused(sessions: pl.DataFrame):
    young = _sessions("young", start=ISSUED - timedelta(days=10), days=10, seed=3)
    with pytest.raises(
        SchemaError, match=r"has \d+\.\d days of history \(< min_history_days=30\).*pool_sites"
    ):
        DemandForecaster(SMALL).fit(young, site=_site("young"), issued_at=ISSUED)


def test_restated_season_matrix_equals_the_matrix_built_at_fit_time(sessions: pl.DataFrame):
    from features.matrix import build_feature_matrix
    from models.demand_matrix import build_training_issue_times

    site = _site("alpha")
    known = sessions.filter(pl.col("plug_out_at") < ISSUED)
    issues = build_training_issue_times(known, site=site, issued_at=ISSUED, config=SMALL)
    season = build_feature_matrix(
        sessions,
        site=site,
        issue_times=[*issues, ISSUED, ISSUED + timedelta(days=1)],
        horizon=SMALL.horizon,
        resolution=SMALL.resolution,
    )
    restated = restate_targets(season, sessions, issued_at=ISSUED, config=SMALL)
    direct = build_training_matrix(sessions, site=site, issued_at=ISSUED, config=SMALL)
    assert_frame_equal(restated, direct)


@pytest.mark.parametrize(
    ("power_kw", "minutes", "cap"),
    [pytest.param(22.0, 60, 22.0, id="22kW-1h"), pytest.param(50.0, 15, 12.5, id="50kW-15min")],
)
def test_cap_is_capacity_times_interval_hours(power_kw: float, minutes: int, cap: float):
    site = _site("alpha", power_kw=power_kw)
    assert compute_cap_kwh(site, resolution=timedelta(minutes=minutes)) == pytest.approx(cap)


def test_no_cap_without_chargers():
    site = _site("alpha").model_copy(update={"chargers": ()})
    assert compute_cap_kwh(site, resolution=timedelta(hours=1)) is None
