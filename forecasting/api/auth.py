"""Bearer tokens: issued once, stored hashed, scoped to sites, checked in constant time.

A token reads ``evc_<token_id>_<secret>``: ``token_id`` (16 hex digits) is public and names
the token in the audit log; ``secret`` (43 URL-safe characters, 256 bits) is shown once, and
only its SHA-256 is stored. A high-entropy secret needs no slow password hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer
from sqlalchemy.engine import Engine

from forecasting.api.failures import RepeatedFailures
from forecasting.api.problems import ProblemError
from forecasting.api.ratelimit import RateLimiter, retry_after_header
from forecasting.config import SITE_ID_PATTERN
from forecasting.errors import ConfigError
from forecasting.io.forecast_store import TokenRecord, read_token, write_token

TOKEN_PREFIX: Final = "evc"
_MAX_CACHED_TOKENS: Final = 10_000
_DUMMY_HASH: Final = hashlib.sha256(b"evcast-no-such-token").hexdigest()
_LOG = logging.getLogger(__name__)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    engine: Engine,
    *,
    sites: Sequence[str],
    now: datetime,
    expires_at: datetime | None,
) -> tuple[TokenRecord, str]:
    """Create and store a token for ``sites``; return its record and the token (shown once)."""
    bad = [s for s in sites if not re.fullmatch(SITE_ID_PATTERN, s)]
    if not sites or bad:
        msg = f"token needs at least one valid site id; invalid: {bad!r}. see `evcast sites`"
        raise ConfigError(msg)
    if expires_at is not None and expires_at <= now:
        msg = f"token expiry {expires_at.isoformat()!r} is not in the future; pick a later time"
        raise ConfigError(msg)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        token_id=token_id,
        secret_sha256=_hash_secret(secret),
        sites=tuple(sorted(set(sites))),
        created_at=now,
        expires_at=expires_at,
    )
    write_token(engine, record)
    return record, f"{TOKEN_PREFIX}_{token_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """Return ``(token_id, secret)`` of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 16:
        return None
    return parts[1], parts[2]


def check_secret(record: TokenRecord | None, secret: str) -> bool:
    """Return whether ``secret`` matches ``record`` (constant time, also when record is None)."""
    expected = record.secret_sha256 if record is not None else _DUMMY_HASH
    matches = hmac.compare_digest(_hash_secret(secret), expected)
    return matches and record is not None


def _unauthorized(detail: str, *, error: str | None) -> ProblemError:
    challenge = 'Bearer realm="evcast"' + (f', error="{error}"' if error else "")
    return ProblemError(401, detail, kind="unauthorized", headers={"WWW-Authenticate": challenge})


class Gatekeeper(HTTPBearer):
    """FastAPI dependency: authenticate the bearer token, then apply its rate limit.

    It is FastAPI's ``HTTPBearer`` security scheme itself (same name in the OpenAPI spec, same
    header parsing), so a request resolves one dependency rather than a scheme nested in a
    checker. Token records are cached for a few seconds and renewed in the background (see
    :meth:`find`), so a fetch does not wait for the store; expiry is checked against the clock
    on every request, and so is the secret's hash (0.6 us: not worth keeping secrets around).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        limiter: RateLimiter,
        clock: Callable[[], datetime],
        cache_s: float = 5.0,
    ) -> None:
        """Check tokens against ``engine``; a record read is used for ``cache_s`` [s] at most."""
        super().__init__(
            scheme_name="HTTPBearer",
            description="Token from `evcast tokens create`.",
            auto_error=False,
        )
        self._engine = engine
        self._limiter = limiter
        self._clock = clock
        self._cache_s = cache_s
        self._tokens: dict[str, tuple[TokenRecord, float]] = {}
        self._renewing: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}  # after a failed re-read, when to try again [s]
        self._failures = RepeatedFailures(_LOG)

    async def find(self, token_id: str) -> TokenRecord | None:
        """Return the record of ``token_id`` (None if unknown), from the cache when it can.

        A record is used for at most ``cache_s`` [s] after it was read. Once it is half that
        old, the next request starts a re-read in the background and goes on with the cached
        record, so requests for a token in use never wait for the store (only its first one).
        A failed re-read is tried again at most every ``cache_s / 4`` [s].
        """
        cached = self._tokens.get(token_id)
        if cached is not None:
            now = time.monotonic()
            age = now - cached[1]
            if age < self._cache_s:
                if age >= self._cache_s / 2 and self._may_renew(token_id, now):
                    self._renewing[token_id] = asyncio.create_task(self._renew(token_id))
                return cached[0]
        return await self._read(token_id)

    def _may_renew(self, token_id: str, now: float) -> bool:
        return token_id not in self._renewing and now >= self._retry_at.get(token_id, 0.0)

    async def _read(self, token_id: str) -> TokenRecord | None:
        read_at = time.monotonic()
        record = await run_in_threadpool(read_token, self._engine, token_id)
        if record is None:  # unknown ids are not cached, so guessing cannot fill memory
            self._tokens.pop(token_id, None)
            return None
        if len(self._tokens) >= _MAX_CACHED_TOKENS:
            self._tokens.clear()
        self._tokens[token_id] = (record, read_at)
        return record

    async def _renew(self, token_id: str) -> None:
        try:
            await self._read(token_id)
        except Exception:  # the cached record expires; a request then reads and reports it
            if len(self._retry_at) >= _MAX_CACHED_TOKENS:
                self._retry_at.clear()
            self._retry_at[token_id] = time.monotonic() + self._cache_s / 4
            self._failures.failed(token_id, "re-reading token %s failed", token_id)
        else:
            self._retry_at.pop(token_id, None)
            self._failures.recovered(token_id)
        finally:
            del self._renewing[token_id]

    async def __call__(self, request: Request) -> TokenRecord:  # type: ignore[override]
        """Return the caller's token record, or raise a 401 / 429 problem."""
        credentials = await super().__call__(request)
        if credentials is None:
            raise _unauthorized("a bearer token is required", error=None)
        parts = split_token(credentials.credentials)
        record = await self.find(parts[0]) if parts else None
        if parts is None or record is None or not check_secret(record, parts[1]):
            raise _unauthorized("the bearer token is invalid", error="invalid_token")
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise _unauthorized("the bearer token has expired", error="invalid_token")
        request.state.token_id = record.token_id
        wait = self._limiter.acquire(record.token_id)
        if wait > 0:
            msg = (
                f"rate limit of {self._limiter.rate_per_s:g} requests/s per worker process "
                "exceeded; retry later"
            )
            raise ProblemError(
                429, msg, kind="rate-limited", headers={"Retry-After": retry_after_header(wait)}
            )
        return record
