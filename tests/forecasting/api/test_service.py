"""Caching, rate limiting and signing pieces of the API, tested directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_support import T0, Env, publish_example

from forecasting.api.config import ApiConfig
from forecasting.api.problems import ProblemError
from forecasting.api.ratelimit import RateLimiter, retry_after_header
from forecasting.api.service import ForecastService
from forecasting.api.signing import compute_signature, verify_signature


def _service(env: Env) -> ForecastService:
    config = ApiConfig(latest_ttl_s=0.0)
    return ForecastService(env.store, config=config, signing_key=b"k", clock=env.clock)


def test_a_body_is_rendered_once_per_run_and_window(env: Env) -> None:
    service = _service(env)
    first = service.render_forecast("site-a", "net", None, None)
    again = service.render_forecast("site-a", "net", None, None)  # latest looked up again
    assert again is first
    assert service.lookup_forecast("site-a", "pv", None, None) is None  # another target
    newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
    assert service.render_forecast("site-a", "net", None, None).run_id == newer


def test_missing_runs_and_targets_are_problems(env: Env) -> None:
    service = _service(env)
    with pytest.raises(ProblemError, match="no forecast has been published"):
        service.render_forecast("site-zz", "net", None, None)
    with pytest.raises(ProblemError, match="no grid limit"):
        service.render_forecast("site-b", "headroom", None, None)


def test_schedule_is_a_conflict_once_the_run_has_ended(env: Env) -> None:
    env.clock.now = T0 + timedelta(days=3)
    with pytest.raises(ProblemError, match="the latest run has ended"):
        _service(env).render_schedule("site-a")


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("t") == pytest.approx(0.5)  # one token at 2/s
    assert limiter.acquire("other") == 0.0
    now[0] = 0.5
    assert limiter.acquire("t") == 0.0
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("md5=abc", id="other-scheme"),
        pytest.param(compute_signature(b"other body", key=b"k"), id="other-body"),
        pytest.param(compute_signature(b"body", key=b"other key"), id="other-key"),
    ],
)
def test_signature_verification_rejects(header: str | None) -> None:
    assert verify_signature(b"body", compute_signature(b"body", key=b"k"), key=b"k")
    assert not verify_signature(b"body", header, key=b"k")
