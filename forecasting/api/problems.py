"""RFC 9457 problem details (``application/problem+json``) for every error the API returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from forecasting.api.signing import SIGNATURE_HEADER, compute_signature

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
PROBLEM_BASE: Final = "https://evcast.dev/problems/"
_TITLES: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class ProblemError(StarletteHTTPException):
    """An HTTP error answered as a problem document; ``kind`` names the problem type."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=dict(headers or {}))
        self.kind = kind


def build_problem_response(
    status: int,
    detail: str,
    *,
    kind: str,
    instance: str,
    headers: Mapping[str, str] | None = None,
    key: bytes | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Return a signed problem response (RFC 9457 members: type, title, status, detail)."""
    document = {
        "type": PROBLEM_BASE + kind,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
        **(extra or {}),
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    all_headers = dict(headers or {})
    if key is not None:
        all_headers[SIGNATURE_HEADER] = compute_signature(body, key=key)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=all_headers)


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("path", "query"))
    return f"{where}: {error.get('msg', 'invalid')}"


def install_problem_handlers(app: FastAPI, *, key: bytes | None) -> None:
    """Answer HTTP errors, request validation errors and crashes as problem documents.

    A crash is still logged and re-raised by Starlette after the 500 problem is sent.
    """

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = getattr(exc, "kind", "http-error")
        return build_problem_response(
            exc.status_code,
            str(exc.detail),
            kind=kind,
            instance=request.url.path,
            headers=exc.headers,
            key=key,
        )

    async def on_crash(request: Request, _exc: Exception) -> Response:
        return build_problem_response(
            500,
            "internal error; the server log has the details",
            kind="internal-error",
            instance=request.url.path,
            key=key,
        )

    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = "; ".join(_describe(e) for e in exc.errors())
        return build_problem_response(
            400,
            f"invalid request: {details}",
            kind="invalid-request",
            instance=request.url.path,
            key=key,
        )

    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_crash)
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
