"""Caching, rate limiting and signing pieces of the API, tested directly."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import suppress
from datetime import timedelta

import pytest
import sqlalchemy as sa
from api_support import T0, Env, publish_example
from sqlalchemy.engine import Engine

from forecasting.api import service as service_module
from forecasting.api.auth import Gatekeeper
from forecasting.api.config import ApiConfig
from forecasting.api.problems import ProblemError
from forecasting.api.ratelimit import RateLimiter, retry_after_header
from forecasting.api.service import ForecastService, Rendered
from forecasting.api.signing import compute_signature, verify_signature
from forecasting.io.forecast_store import StoredRun, latest_run_id, read_run


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


def _count_latest_lookups(monkeypatch: pytest.MonkeyPatch, *, failing: str = "") -> list[int]:
    """Record the thread of every latest-run lookup; make the lookups of ``failing`` fail."""
    threads: list[int] = []

    def lookup(engine: Engine, site_id: str) -> str | None:
        threads.append(threading.get_ident())
        if site_id == failing:
            msg = "database is locked"
            raise OSError(msg)
        return latest_run_id(engine, site_id)

    monkeypatch.setattr(service_module, "latest_run_id", lookup)
    return threads


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def test_the_refresher_keeps_requested_sites_fresh_and_picks_up_a_new_run(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 0.1
    service = ForecastService(
        env.store, config=ApiConfig(latest_ttl_s=ttl), signing_key=b"k", clock=env.clock
    )
    lookups = _count_latest_lookups(monkeypatch)

    async def run() -> tuple[Rendered, list[Rendered | None], str, Rendered]:
        task = asyncio.create_task(service.keep_fresh())
        first = service.render_forecast("site-a", "net", None, None)  # the first request looks up
        seen = []
        for _ in range(30):  # 1.5 s: longer than the TTL plus the refresher's 1 s of slack
            await asyncio.sleep(0.05)
            seen.append(service.lookup_forecast("site-a", "net", None, None))
        newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
        published = time.monotonic()
        while service.lookup_forecast("site-a", "net", None, None) is first:
            assert time.monotonic() - published < ttl + 0.8  # a period, a refresh; busy machine
            await asyncio.sleep(0.01)
        now_served = service.render_forecast("site-a", "net", None, None)  # renders, no lookup
        await _stop(task)
        return first, seen, newer, now_served

    first, seen, newer, now_served = asyncio.run(run())
    assert all(rendered is first for rendered in seen)  # from memory, every time
    assert now_served.run_id == newer
    main_thread = threading.get_ident()
    assert lookups.count(main_thread) == 1  # only the first request looked the run up itself
    assert len(lookups) > 10  # the refresher did, every 0.1 s


def test_the_refresher_skips_a_failing_site_and_keeps_going(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ttl = 0.05
    service = ForecastService(
        env.store, config=ApiConfig(latest_ttl_s=ttl), signing_key=b"k", clock=env.clock
    )
    service.render_forecast("site-b", "net", None, None)  # refreshed before site-a
    first = service.render_forecast("site-a", "net", None, None)
    lookups = _count_latest_lookups(monkeypatch, failing="site-b")

    async def run() -> Rendered:
        task = asyncio.create_task(service.keep_fresh())
        newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
        published = time.monotonic()
        while service.lookup_forecast("site-a", "net", None, None) is first:
            assert time.monotonic() - published < 0.8  # < the 1.05 s an entry is served
            await asyncio.sleep(0.01)
        await asyncio.sleep(5 * ttl)  # more passes, each failing on site-b
        rendered = service.render_forecast("site-a", "net", None, None)
        await _stop(task)
        assert rendered.run_id == newer
        return rendered

    with caplog.at_level(logging.WARNING, logger="forecasting.api.service"):
        asyncio.run(run())
    assert threading.get_ident() not in lookups  # site-a was never looked up by a request
    failures = [r for r in caplog.records if "'site-b'" in r.getMessage()]
    assert len(failures) >= 3
    assert failures[0].exc_info is not None  # the first with its traceback
    assert all(r.exc_info is None for r in failures[1:])  # then one line each


def test_refreshing_reads_a_run_only_when_the_latest_changes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []

    def counted_read_run(engine: Engine, run_id: str) -> StoredRun | None:
        reads.append(run_id)
        return read_run(engine, run_id)

    monkeypatch.setattr(service_module, "read_run", counted_read_run)
    service = _service(env)
    for site_id in ("site-a", "site-b", "site-c"):
        service.render_forecast(site_id, "net", None, None)
    assert len(reads) == 3
    assert (service.refresh_recent(), service.refresh_recent()) == (3, 3)
    assert len(reads) == 3  # the runs are unchanged: none is read again
    newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
    assert service.refresh_recent() == 3
    assert reads[3:] == [newer]


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


def test_a_failed_token_re_read_is_retried_at_most_every_quarter_of_the_cache_time(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    token_id = env.token_ab.split("_")[1]
    attempts: list[float] = []
    failing = [False]

    def token_reads(conn, cursor, statement, *args) -> None:
        if "FROM tokens" in statement:
            attempts.append(time.monotonic())
            if failing[0]:
                msg = "database is locked"
                raise OSError(msg)

    gate = Gatekeeper(
        env.store, limiter=RateLimiter(rate_per_s=1.0, burst=1), clock=env.clock, cache_s=0.8
    )

    async def run() -> int:
        assert await gate.find(token_id) is not None  # read, before the store fails
        failing[0] = True
        read_at, finds = time.monotonic(), 0
        while time.monotonic() - read_at < 0.6:  # past half the cache time, short of all of it
            assert await gate.find(token_id) is not None  # the cached record meanwhile
            finds += 1
            await asyncio.sleep(0.005)
        return finds

    sa.event.listen(env.store, "before_cursor_execute", token_reads)
    try:
        with caplog.at_level(logging.WARNING, logger="forecasting.api.auth"):
            finds = asyncio.run(run())
    finally:
        sa.event.remove(env.store, "before_cursor_execute", token_reads)
    re_reads = len(attempts) - 1
    assert finds > 20
    assert 1 <= re_reads <= 3  # from 0.4 s to 0.6 s, once every 0.2 s at most (+1: timing)
    failures = [r for r in caplog.records if token_id in r.getMessage()]
    assert len(failures) == re_reads
    assert failures[0].exc_info is not None
    assert all(r.exc_info is None for r in failures[1:])


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
