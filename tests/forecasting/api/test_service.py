"""Caching, rate limiting and signing pieces of the API, tested directly."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from api_support import T0, Env, publish_example

from forecasting.api.auth import Gatekeeper
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


def test_the_refresher_keeps_requested_sites_fresh_and_picks_up_a_new_run(env: Env) -> None:
    ttl = 0.1
    config = ApiConfig(latest_ttl_s=ttl)
    service = ForecastService(env.store, config=config, signing_key=b"k", clock=env.clock)
    first = service.render_forecast("site-a", "net", None, None)  # the slow path, once
    assert service.lookup_forecast("site-a", "net", None, None) is first
    time.sleep(2 * ttl)
    assert service.lookup_forecast("site-a", "net", None, None) is None  # no refresher: expired

    async def run() -> tuple[list[object], str, float]:
        task = asyncio.create_task(service.keep_fresh())
        await asyncio.sleep(0)
        service.render_forecast("site-a", "net", None, None)  # the request after expiry
        seen = []
        for _ in range(30):  # 0.6 s, six refresh periods, answered from memory every time
            await asyncio.sleep(0.02)
            seen.append(service.lookup_forecast("site-a", "net", None, None))
        newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
        published = time.monotonic()
        while (latest := service.latest("site-a")) is not None and latest.run_id != newer:
            await asyncio.sleep(0.01)
        task.cancel()
        return seen, newer, time.monotonic() - published

    seen, newer, delay = asyncio.run(run())
    assert all(rendered is first for rendered in seen)
    assert delay < ttl + 1.0  # one period plus one refresh; 1 s allows a busy machine
    assert service.render_forecast("site-a", "net", None, None).run_id == newer


def test_token_records_are_renewed_in_the_background_and_requests_never_wait(env: Env) -> None:
    token_id = env.token_ab.split("_")[1]
    reads: list[float] = []

    def slow_token_reads(conn, cursor, statement, *args) -> None:
        if "FROM tokens" in statement:
            reads.append(time.monotonic())
            time.sleep(0.2)  # in the thread pool: a slow store

    gate = Gatekeeper(
        env.store, limiter=RateLimiter(rate_per_s=1.0, burst=1), clock=env.clock, cache_s=0.8
    )

    async def run() -> list[float]:
        waits = []
        for _ in range(40):  # 2 s: past the cache time twice over
            started = time.monotonic()
            record = await gate.find(token_id)
            waits.append(time.monotonic() - started)
            assert record is not None
            assert record.token_id == token_id
            await asyncio.sleep(0.05)
        return waits

    sa.event.listen(env.store, "before_cursor_execute", slow_token_reads)
    try:
        waits = asyncio.run(run())
    finally:
        sa.event.remove(env.store, "before_cursor_execute", slow_token_reads)
    assert waits[0] >= 0.2  # the first request reads the store
    assert max(waits[1:]) < 0.1  # the later ones never wait for it (0.1 s: a busy machine)
    assert len(reads) >= 3  # yet the record was read again, in the background


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
