"""Sites fitted one by one with pooling share one pooled fit, and it changes no forecast."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.config import SiteConfig
from models.demand import DemandForecaster, fit_site_models
from models.demand_config import DemandConfig, LightGBMParams
from models.demand_matrix import build_training_matrix, compute_history_days
from models.pooled_fits import POOLED_FITS, FitMemo, MemoStats, compute_content_fingerprint
from tests.models.test_demand import ISSUED, SMALL, START, _day, _sessions, _site

HYBRID = SMALL.model_copy(update={"pooling": "hybrid"})
SITES = (_site("alpha"), _site("beta", power_kw=7.0), _site("gamma"))


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    POOLED_FITS.clear()
    yield
    POOLED_FITS.clear()


@pytest.fixture(scope="module")
def pool_sessions() -> pl.DataFrame:
    return pl.concat(
        [
            _sessions("alpha", start=START, days=140, seed=1),
            _sessions("beta", start=START, days=140, seed=5),
            _sessions("gamma", start=START + timedelta(days=20), days=120, seed=7),
        ]
    )


def _forecast(model: DemandForecaster, sessions: pl.DataFrame, site: SiteConfig) -> pl.DataFrame:
    return model.predict(sessions, site=site, issued_at=ISSUED, interval_starts=_day(ISSUED))


def _fit_each(sessions: pl.DataFrame, config: DemandConfig) -> dict[str, DemandForecaster]:
    return {
        s.site_id: DemandForecaster(config, pool_sites=SITES).fit(
            sessions, site=s, issued_at=ISSUED
        )
        for s in SITES
    }


def _fit_the_old_way(sessions: pl.DataFrame, site: SiteConfig) -> DemandForecaster:
    """What ``fit`` did before the memo: the site's matrix first, then the others', one fit."""
    known = sessions.filter(pl.col("plug_out_at") < ISSUED)
    order = [site, *(s for s in SITES if s.site_id != site.site_id)]
    matrix = pl.concat(
        [build_training_matrix(known, site=s, issued_at=ISSUED, config=HYBRID) for s in order]
    )
    history = compute_history_days(known, site_id=site.site_id, issued_at=ISSUED)
    return DemandForecaster(HYBRID, pool_sites=SITES).fit_matrix(
        matrix, site=site, issued_at=ISSUED, history_days=history, pooled=True
    )


def test_sites_fitted_one_by_one_share_one_pooled_fit_and_match_fit_site_models(
    pool_sessions: pl.DataFrame,
):
    one_by_one = _fit_each(pool_sessions, HYBRID)
    assert POOLED_FITS.stats() == MemoStats(fits=1, hits=2, entries=1)
    known = pool_sessions.filter(pl.col("plug_out_at") < ISSUED)
    matrix = pl.concat(
        [build_training_matrix(known, site=s, issued_at=ISSUED, config=HYBRID) for s in SITES]
    )
    history = {
        s.site_id: compute_history_days(known, site_id=s.site_id, issued_at=ISSUED) for s in SITES
    }
    together = fit_site_models(
        matrix, sites=SITES, issued_at=ISSUED, history_days=history, config=HYBRID
    )
    for site in SITES:
        assert one_by_one[site.site_id].scope_ == "hybrid"
        assert_frame_equal(
            _forecast(one_by_one[site.site_id], pool_sessions, site),
            _forecast(together[site.site_id], pool_sessions, site),
        )


@pytest.mark.parametrize("index", [pytest.param(i, id=s.site_id) for i, s in enumerate(SITES)])
def test_memoised_fit_gives_the_forecasts_of_the_previous_code_path(
    pool_sessions: pl.DataFrame, index: int
):
    site = SITES[index]
    _fit_each(pool_sessions, HYBRID)  # fills the memo, so ``site`` is served from it
    served = DemandForecaster(HYBRID, pool_sites=SITES).fit(
        pool_sessions, site=site, issued_at=ISSUED
    )
    assert POOLED_FITS.stats().hits == 3
    # bit for bit (no tolerance): same rows, deterministic LightGBM, only the block order differs
    assert_frame_equal(
        _forecast(served, pool_sessions, site),
        _forecast(_fit_the_old_way(pool_sessions, site), pool_sessions, site),
        check_exact=True,
    )


def test_two_threads_training_two_sites_at_once_fit_the_pool_once(pool_sessions: pl.DataFrame):
    def fit(site: SiteConfig) -> DemandForecaster:
        return DemandForecaster(HYBRID, pool_sites=SITES).fit(
            pool_sessions, site=site, issued_at=ISSUED
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        models = list(pool.map(fit, SITES[:2]))
    assert POOLED_FITS.stats() == MemoStats(fits=1, hits=1, entries=1)
    assert [m.site_id_ for m in models] == ["alpha", "beta"]


def test_what_the_pooled_fit_reads_is_part_of_the_key(pool_sessions: pl.DataFrame):
    site = SITES[0]
    DemandForecaster(HYBRID, pool_sites=SITES).fit(pool_sessions, site=site, issued_at=ISSUED)
    later = pool_sessions.filter(pl.col("plug_out_at") >= ISSUED)  # unknown at the fit: a hit
    assert later.height > 0
    DemandForecaster(HYBRID, pool_sites=SITES).fit(pool_sessions, site=site, issued_at=ISSUED)
    other_seed = HYBRID.model_copy(
        update={"lightgbm": LightGBMParams(**{**SMALL.lightgbm.model_dump(), "seed": 7})}
    )
    DemandForecaster(other_seed, pool_sites=SITES).fit(pool_sessions, site=site, issued_at=ISSUED)
    earlier = ISSUED - timedelta(days=1)
    DemandForecaster(HYBRID, pool_sites=SITES).fit(pool_sessions, site=site, issued_at=earlier)
    DemandForecaster(HYBRID, pool_sites=SITES[:2]).fit(pool_sessions, site=site, issued_at=ISSUED)
    assert POOLED_FITS.stats() == MemoStats(fits=4, hits=1, entries=4)


def test_short_histories_share_the_global_fit(pool_sessions: pl.DataFrame):
    young = pl.concat(
        [
            _sessions(name, start=ISSUED - timedelta(days=10), days=10, seed=seed)
            for name, seed in (("young", 3), ("new", 4))
        ]
    )
    sites = (*SITES[:2], _site("young"), _site("new"))
    sessions = pl.concat([pool_sessions.filter(pl.col("site_id") != "gamma"), young])
    models = [
        DemandForecaster(HYBRID, pool_sites=sites).fit(sessions, site=s, issued_at=ISSUED)
        for s in sites[2:]
    ]
    assert [m.scope_ for m in models] == ["global", "global"]
    assert POOLED_FITS.stats() == MemoStats(fits=1, hits=1, entries=1)
    assert models[0].model_ is models[1].model_


def test_memo_fits_once_per_key_and_keeps_the_most_recent():
    memo = FitMemo(max_entries=2)
    calls: list[str] = []

    def fit(key: str) -> str:
        calls.append(key)
        return key.upper()

    results = [memo.get_or_fit(k, lambda k=k: fit(k)) for k in ("a", "b", "a", "c", "b", "a")]
    assert results == ["A", "B", "A", "C", "B", "A"]
    assert calls == ["a", "b", "c", "b", "a"]  # "b" was dropped for "c", then "a" for "b"
    assert memo.stats() == MemoStats(fits=5, hits=1, entries=2)


def test_memo_callers_of_one_key_wait_for_one_fit():
    memo = FitMemo()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        started.set()
        assert release.wait(timeout=10)
        return 42

    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(memo.get_or_fit, "k", slow)
        assert started.wait(timeout=10)
        others = [pool.submit(memo.get_or_fit, "k", slow) for _ in range(2)]
        release.set()
        assert [f.result(timeout=10) for f in (first, *others)] == [42, 42, 42]
    assert calls == [1]
    assert memo.stats() == MemoStats(fits=1, hits=2, entries=1)


def test_memo_does_not_keep_a_failed_fit():
    memo = FitMemo()

    def failing() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        memo.get_or_fit("k", failing)
    assert memo.get_or_fit("k", lambda: 3) == 3
    assert memo.stats() == MemoStats(fits=1, hits=0, entries=1)


def test_memo_refuses_a_zero_bound():
    with pytest.raises(ValueError, match="max_entries must be at least 1, got 0"):
        FitMemo(max_entries=0)


@pytest.mark.parametrize(
    ("other", "same"),
    [
        pytest.param(pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}), True, id="same-content"),
        pytest.param(pl.DataFrame({"a": [1, 3], "b": ["x", "y"]}), False, id="other-value"),
        pytest.param(pl.DataFrame({"a": [2, 1], "b": ["y", "x"]}), False, id="other-order"),
        pytest.param(pl.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), False, id="other-dtype"),
        pytest.param(None, False, id="none"),
    ],
)
def test_content_fingerprint(other: pl.DataFrame | None, same: bool):
    base = compute_content_fingerprint(pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert (compute_content_fingerprint(other) == base) is same
    assert compute_content_fingerprint(None) == ""
