"""What the API serves: the latest run per site, rendered once per run and window, cached.

A run never changes once published (its id is a content hash), so the serialized body, its
ETag and its signature are cached per ``(run id, target, window, served state)``. Only the
latest run id of a site is looked up again, every ``latest_ttl_s`` seconds: by
:meth:`ForecastService.keep_fresh`, a background task that refreshes the sites requested in
the last minute off the request path, or, for a site it does not cover (first request, or no
refresher running), by the request itself.
:meth:`ForecastService.lookup_forecast` answers from memory only (no I/O, safe on the event
loop); :meth:`ForecastService.render_forecast` may read the store (run it in a thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from forecasting.api.config import ApiConfig
from forecasting.api.failures import RepeatedFailures
from forecasting.api.problems import ProblemError
from forecasting.api.signing import compute_signature
from forecasting.errors import SchemaError
from forecasting.io.forecast_store import latest_run_id, read_run
from forecasting.publication.baseline import resolve_served
from forecasting.publication.contract import Publication
from forecasting.publication.documents import build_forecast_document, encode_document
from forecasting.publication.ocpp import build_schedule_document

_RECENT_S = 60.0  # sites requested within this long are kept fresh by the refresher [s]
_REFRESH_SLACK_S = 1.0  # while the refresher runs, entries are served this much past the TTL [s]
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """A serialized response body with its validators."""

    body: bytes
    etag: str
    signature: str | None
    run_id: str
    expires_at: datetime
    stale: bool


class _Lru:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class ForecastService:
    """Latest-run lookup, stale handling and body rendering for one store."""

    def __init__(
        self,
        engine: Engine,
        *,
        config: ApiConfig,
        signing_key: bytes | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self._key = signing_key
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        # per site: its latest run (None: nothing published) and when it was looked up [s];
        # bounded by the sites requested in the last minute (the app only serves known sites)
        self._latest: dict[str, tuple[Publication | None, float]] = {}
        self._requested: dict[str, float] = {}
        self._refreshers = 0  # keep_fresh tasks running: they allow the slack past the TTL
        self._failures = RepeatedFailures(_LOG)
        self._bodies = _Lru(config.cache_entries)

    def _max_age(self) -> float:
        slack = _REFRESH_SLACK_S if self._refreshers > 0 else 0.0
        return self.config.latest_ttl_s + slack

    def _cached_latest(self, site_id: str) -> Publication | bool | None:
        """Return the cached latest run, None if none is published, False if unknown."""
        now = time.monotonic()
        with self._lock:
            self._requested[site_id] = now
            entry = self._latest.get(site_id)
            if entry is None or now - entry[1] > self._max_age():
                return False
            return entry[0]

    def latest(self, site_id: str) -> Publication | None:
        """Return the latest run of a site (from cache when fresh), or None.

        Refreshes are serialized: requests that arrive while one refresh reads the store wait
        for it and then find the cache fresh, instead of each reading the store.
        """
        cached = self._cached_latest(site_id)
        if cached is not False:
            return cached  # type: ignore[return-value]
        with self._refresh_lock:
            cached = self._cached_latest(site_id)
            if cached is not False:
                return cached  # type: ignore[return-value]
            return self._refresh(site_id)

    def refresh_recent(self) -> int:
        """Look up again the latest run of each site requested in the last minute (store I/O).

        A site whose lookup fails is logged (with a traceback the first time it fails, then
        in one line) and skipped, so the other sites are still refreshed. Sites not requested
        in the last minute are dropped from the cache.

        Returns
        -------
        int
            How many sites were refreshed [-].
        """
        cutoff = time.monotonic() - _RECENT_S
        with self._lock:
            self._requested = {s: t for s, t in self._requested.items() if t >= cutoff}
            self._latest = {s: e for s, e in self._latest.items() if s in self._requested}
            sites = list(self._requested)
        refreshed = 0
        for site_id in sites:
            try:
                with self._refresh_lock:
                    self._refresh(site_id)
            except Exception:  # the entry ages out; requests then look it up and report it
                self._failures.failed(site_id, "refreshing the latest run of %r failed", site_id)
            else:
                self._failures.recovered(site_id)
                refreshed += 1
        return refreshed

    async def keep_fresh(self) -> None:
        """Run :meth:`refresh_recent` every ``latest_ttl_s`` in a thread, until cancelled.

        While it runs, requests serve a cached latest run up to ``latest_ttl_s`` + 1 s old
        without looking it up, so a fetch in steady state does no I/O; a newly published run is
        served within ``latest_ttl_s`` plus one refresh. A failed refresh is logged and retried;
        its sites then age out of the cache and requests look them up (and report the error).
        """
        period = self.config.latest_ttl_s
        self._refreshers += 1
        try:
            while True:
                await asyncio.sleep(period)
                try:
                    await run_in_threadpool(self.refresh_recent)
                except Exception:
                    _LOG.exception("refreshing the latest runs failed; retrying in %g s", period)
        finally:
            self._refreshers -= 1

    def _refresh(self, site_id: str) -> Publication | None:
        run_id = latest_run_id(self.engine, site_id)
        publication = None
        if run_id is not None:
            with self._lock:
                entry = self._latest.get(site_id)
            if entry is not None and entry[0] is not None and entry[0].run_id == run_id:
                publication = entry[0]  # unchanged: a run is never read twice
            else:
                stored = read_run(self.engine, run_id)
                publication = stored.publication if stored else None
        with self._lock:
            self._latest[site_id] = (publication, time.monotonic())
        return publication

    def _finish(self, document: dict[str, Any], *, publication: Publication) -> Rendered:
        body = encode_document(document)
        return Rendered(
            body=body,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            signature=compute_signature(body, key=self._key) if self._key else None,
            run_id=publication.run_id,
            expires_at=publication.expires_at,
            stale=bool(document["stale"]),
        )

    def _state(self, publication: Publication, now: datetime) -> str:
        if now < publication.expires_at:
            return "fresh"
        if self.config.stale_policy == "mark":
            return "stale"
        step = timedelta(seconds=publication.resolution_s)
        return f"baseline@{(now - publication.issued_at) // step}"

    def _forecast_key(
        self, publication: Publication, target: str, window: tuple[datetime | None, ...]
    ) -> tuple[Hashable, ...]:
        return (
            "forecast",
            publication.run_id,
            target,
            window,
            self._state(publication, self.clock()),
        )

    def lookup_forecast(
        self, site_id: str, target: str, start: datetime | None, end: datetime | None
    ) -> Rendered | None:
        """Return the cached body, or None when it must be rendered (no I/O here)."""
        cached = self._cached_latest(site_id)
        if not isinstance(cached, Publication):
            return None
        with self._lock:
            return self._bodies.get(self._forecast_key(cached, target, (start, end)))

    def render_forecast(
        self, site_id: str, target: str, start: datetime | None, end: datetime | None
    ) -> Rendered:
        """Render (and cache) the forecast document of a site's latest run."""
        publication = self._require_latest(site_id)
        now = self.clock()
        key = self._forecast_key(publication, target, (start, end))
        with self._lock:
            cached = self._bodies.get(key)
        if cached is not None:  # the latest id was looked up again, but the run is unchanged
            return cached
        served, stale, reason = resolve_served(
            publication, now=now, stale_policy=self.config.stale_policy
        )
        if target not in served.targets:
            msg = f"target {target!r} is not published for site {site_id!r}; " + (
                "the site has no grid limit configured"
                if target == "headroom"
                else "the site has no PV forecast"
            )
            raise ProblemError(404, msg, kind="target-not-published")
        document = build_forecast_document(
            served, target=target, start=start, end=end, stale=stale, fallback_reason=reason
        )
        rendered = self._finish(document, publication=publication)
        with self._lock:
            self._bodies.put(key, rendered)
        return rendered

    def _schedule_key(self, publication: Publication, now: datetime) -> tuple[Hashable, ...]:
        step = timedelta(seconds=publication.resolution_s)
        current = (now - publication.issued_at) // step
        return ("schedule", publication.run_id, current, self._state(publication, now))

    def lookup_schedule(self, site_id: str) -> Rendered | None:
        """Return the cached schedule body, or None when it must be rendered (no I/O here)."""
        cached = self._cached_latest(site_id)
        if not isinstance(cached, Publication):
            return None
        with self._lock:
            return self._bodies.get(self._schedule_key(cached, self.clock()))

    def render_schedule(self, site_id: str) -> Rendered:
        """Render the OCPP schedule document of a site's latest run (from the current interval)."""
        publication = self._require_latest(site_id)
        now = self.clock()
        key = self._schedule_key(publication, now)
        with self._lock:
            cached = self._bodies.get(key)
        if cached is not None:
            return cached
        served, stale, reason = resolve_served(
            publication, now=now, stale_policy=self.config.stale_policy
        )
        if "headroom" not in served.targets:
            msg = f"site {site_id!r} has no headroom forecast; configure its grid_limit_kw"
            raise ProblemError(404, msg, kind="target-not-published")
        try:
            document = build_schedule_document(
                served,
                now=now,
                stale=stale,
                fallback_reason=reason,
                stack_level=self.config.schedule_stack_level,
            )
        except SchemaError as exc:
            msg = f"no current schedule for site {site_id!r}: the latest run has ended ({exc})"
            raise ProblemError(409, msg, kind="no-current-schedule") from exc
        rendered = self._finish(document, publication=publication)
        with self._lock:
            self._bodies.put(key, rendered)
        return rendered

    def _require_latest(self, site_id: str) -> Publication:
        publication = self.latest(site_id)
        if publication is None:
            msg = f"no forecast has been published for site {site_id!r} yet; run the pipeline"
            raise ProblemError(404, msg, kind="no-forecast")
        return publication
