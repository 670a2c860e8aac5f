"""The FastAPI application: thin routes over :class:`forecasting.api.service.ForecastService`.

Routes: ``GET /healthz``, ``GET /v1/sites``, ``GET /v1/sites/{site_id}/forecast`` and
``GET /v1/sites/{site_id}/schedule``. Every ``/v1`` route needs a bearer token (see
:mod:`forecasting.api.auth`); a site outside the token's scope is answered exactly like an
unknown site (404), so scope does not leak existence. Errors are RFC 9457 problem documents,
bodies are signed (:mod:`forecasting.api.signing`), and every ``/v1`` request is audited.

(No ``from __future__ import annotations`` here: FastAPI resolves route annotations at
definition time, and some of them are local to :func:`_add_routes`.)
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forecasting.api import models
from forecasting.api.audit import AuditBuffer
from forecasting.api.auth import Gatekeeper
from forecasting.api.config import ApiConfig
from forecasting.api.failures import RepeatedFailures
from forecasting.api.problems import ProblemError, install_problem_handlers
from forecasting.api.ratelimit import RateLimiter
from forecasting.api.service import ForecastService, Rendered
from forecasting.api.signing import SIGNATURE_HEADER
from forecasting.config import SITE_ID_PATTERN, SiteConfig
from forecasting.io.forecast_store import AuditRecord, TokenRecord
from forecasting.publication.documents import format_time
from forecasting.settings import Settings

TargetName = Literal["demand", "pv", "net", "headroom"]
SiteId = Annotated[str, Path(pattern=SITE_ID_PATTERN, max_length=64, examples=["site-1"])]
_PROBLEM = {"model": models.Problem, "content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = dict.fromkeys((400, 401, 404, 429), _PROBLEM)
_LOG = logging.getLogger(__name__)


class _Auditor:
    """Pure ASGI middleware: append who fetched what to the audit buffer after each response."""

    def __init__(self, app: ASGIApp, *, buffer: AuditBuffer) -> None:
        self.app = app
        self.buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {"status": 500, "run_id": None}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = dict(message.get("headers", []))
                run_id = headers.get(b"x-evcast-run-id")
                seen["run_id"] = run_id.decode() if run_id else None
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state", {})
            self.buffer.add(
                AuditRecord(
                    at=datetime.now(UTC),
                    token_id=state.get("token_id"),
                    site_id=state.get("site_id"),
                    path=scope["path"][:512],
                    status=seen["status"],
                    run_id=seen["run_id"],
                )
            )


def _parse_instant(value: str | None, *, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        msg = (
            f"{name}={value!r} is not an ISO 8601 instant with a UTC offset, e.g. 2024-06-01T00:00Z"
        )
        raise ProblemError(400, msg, kind="invalid-window")
    return parsed.astimezone(UTC)


def _window(
    start_text: str | None, end_text: str | None, *, limit: timedelta
) -> tuple[datetime | None, datetime | None]:
    start = _parse_instant(start_text, name="from")
    end = _parse_instant(end_text, name="to")
    hours = limit / timedelta(hours=1)
    if start is not None and end is None:
        end = start + limit
    elif end is not None and start is None:
        start = end - limit
    if start is not None and end is not None:
        if end <= start:
            msg = f"window is empty: to {format_time(end)} is not after from {format_time(start)}"
            raise ProblemError(400, msg, kind="invalid-window")
        if end - start > limit:
            span = (end - start) / timedelta(hours=1)
            msg = f"window of {span:g} h exceeds the limit of {hours:g} h; ask for a shorter one"
            raise ProblemError(400, msg, kind="window-too-long")
    return start, end


def _send(rendered: Rendered, request: Request, *, now: datetime) -> Response:
    age = max(0, int((rendered.expires_at - now).total_seconds()))
    headers = {
        "ETag": rendered.etag,
        "Cache-Control": "no-cache" if rendered.stale else f"private, max-age={age}",
        "X-Evcast-Run-Id": rendered.run_id,
    }
    if rendered.signature:
        headers[SIGNATURE_HEADER] = rendered.signature
    match = request.headers.get("if-none-match")
    if match is not None and (
        match.strip() == "*" or rendered.etag in {t.strip() for t in match.split(",")}
    ):
        headers.pop(SIGNATURE_HEADER, None)
        return Response(status_code=304, headers=headers)
    return Response(rendered.body, media_type="application/json", headers=headers)


def _lifespan(
    buffer: AuditBuffer, service: ForecastService, *, flush_s: float
) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        failures = RepeatedFailures(_LOG)

        async def flush_forever() -> None:
            while True:
                await asyncio.sleep(flush_s)
                try:
                    await run_in_threadpool(buffer.flush)
                    failures.recovered("audit")
                except Exception:  # the records stay queued; the next flush writes them
                    failures.failed("audit", "writing the audit log failed; retry in %g s", flush_s)

        tasks = [asyncio.create_task(flush_forever())]
        if service.config.latest_ttl_s > 0:  # with a TTL of 0 every request looks up itself
            tasks.append(asyncio.create_task(service.keep_fresh()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await run_in_threadpool(buffer.flush)
            except Exception:
                _LOG.exception("writing the last audit records at shutdown failed; they are lost")

    return lifespan


def create_app(
    settings: Settings,
    store: Engine,
    sites: Sequence[SiteConfig],
    *,
    config: ApiConfig | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """Build the API over a forecast store and the known sites.

    Parameters
    ----------
    settings
        Runtime settings; ``signing_key`` signs every JSON body.
    store
        The forecast store engine (:func:`forecasting.io.forecast_store.open_store`).
    sites
        The sites served (configured and, later, discovered ones).
    config
        Serving options; default from ``EVCAST_API_*`` variables.
    clock
        Returns "now" [UTC]; injectable so tests can make runs stale.
    """
    config = config or ApiConfig()
    now = clock or (lambda: datetime.now(UTC))
    key = settings.signing_key.get_secret_value().encode() if settings.signing_key else None
    buffer = AuditBuffer(store)
    service = ForecastService(store, config=config, signing_key=key, clock=now)
    app = FastAPI(
        title="evcast",
        version="1.0",
        summary="Forecasts of EV charging demand, PV, net load and grid headroom per site.",
        lifespan=_lifespan(buffer, service, flush_s=config.audit_flush_s),
    )
    app.state.service = service
    app.state.audit = buffer
    install_problem_handlers(app, key=key)
    app.add_middleware(_Auditor, buffer=buffer)
    limiter = RateLimiter(rate_per_s=config.rate_per_s, burst=config.burst)
    gate = Gatekeeper(store, limiter=limiter, clock=now, cache_s=config.token_cache_s)
    _add_routes(app, gate=gate, known={s.site_id: s for s in sites}, config=config, now=now)
    return app


def _require_site(
    request: Request, site_id: str, *, token: TokenRecord, known: dict[str, SiteConfig]
) -> None:
    request.state.site_id = site_id
    if site_id not in known or site_id not in token.sites:
        raise ProblemError(404, f"site {site_id!r} not found", kind="site-not-found")


def _add_routes(
    app: FastAPI,
    *,
    gate: Gatekeeper,
    known: dict[str, SiteConfig],
    config: ApiConfig,
    now: Callable[[], datetime],
) -> None:
    service: ForecastService = app.state.service
    token_dep = Annotated[TokenRecord, Depends(gate)]

    async def respond(
        request: Request, fast: Callable[[], Rendered | None], slow: Callable[[], Rendered]
    ) -> Response:
        rendered = fast()
        if rendered is None:
            rendered = await run_in_threadpool(slow)
        return _send(rendered, request, now=now())

    @app.get("/healthz", summary="Liveness probe (no authentication).")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/v1/sites",
        response_model=models.SiteList,
        responses=_ERRORS,
        summary="Sites in the caller's token scope, with their latest run.",
    )
    async def list_sites(token: token_dep) -> Response:
        visible = [known[s] for s in token.sites if s in known]
        latest = await run_in_threadpool(lambda: [service.latest(s.site_id) for s in visible])
        entries = [
            models.SiteEntry(
                site_id=site.site_id,
                name=site.name,
                timezone=site.timezone,
                latest_run_id=run.run_id if run else None,
                issued_at=format_time(run.issued_at) if run else None,
            )
            for site, run in zip(visible, latest, strict=True)
        ]
        body = models.SiteList(sites=entries).model_dump_json()
        return Response(body, media_type="application/json")

    @app.get(
        "/v1/sites/{site_id}/forecast",
        response_model=models.ForecastDocument,
        responses=_ERRORS,
        summary="The latest forecast of one target over a window.",
    )
    async def get_forecast(
        request: Request,
        *,
        site_id: SiteId,
        token: token_dep,
        target: Annotated[TargetName, Query(description="Which quantity.")] = "net",
        start: Annotated[str | None, Query(alias="from", max_length=64)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=64)] = None,
    ) -> Response:
        _require_site(request, site_id, token=token, known=known)
        window = _window(start, end, limit=timedelta(hours=config.max_window_hours))
        return await respond(
            request,
            lambda: service.lookup_forecast(site_id, target, *window),
            lambda: service.render_forecast(site_id, target, *window),
        )

    @app.get(
        "/v1/sites/{site_id}/schedule",
        response_model=models.ScheduleDocument,
        responses={**_ERRORS, 409: _PROBLEM},
        summary="OCPP 2.0.1 SetChargingProfileRequest from the headroom P10.",
    )
    async def get_schedule(request: Request, site_id: SiteId, token: token_dep) -> Response:
        _require_site(request, site_id, token=token, known=known)
        return await respond(
            request,
            lambda: service.lookup_schedule(site_id),
            lambda: service.render_schedule(site_id),
        )


__all__ = ["create_app"]
