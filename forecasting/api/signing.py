"""HMAC-SHA256 response signatures, so a load balancer can tell a schedule was not altered.

Every JSON body the API sends carries ``X-Evcast-Signature: sha256=<hex>``, the HMAC-SHA256 of
the *exact body bytes* under the shared key ``EVCAST_SIGNING_KEY``. To verify, a load balancer:

1. reads the raw response body bytes, before any JSON parsing or re-encoding;
2. computes ``HMAC-SHA256(key, body)`` and hex-encodes it (lowercase);
3. compares it with the header value after ``sha256=`` in constant time
   (e.g. Python's :func:`hmac.compare_digest`), and rejects the response on mismatch;
4. then checks freshness from the signed body itself: ``run_id``, ``expires_at``, ``stale``
   and ``fallback`` are inside the signed bytes, so a replayed old body is recognisable.

:func:`verify_signature` does exactly that. Without a configured key no header is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "X-Evcast-Signature"
_PREFIX: Final = "sha256="


def compute_signature(body: bytes, *, key: bytes) -> str:
    """Return the header value ``sha256=<hex>`` of ``body`` under ``key``."""
    return _PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, *, key: bytes) -> bool:
    """Return whether ``header`` is the valid signature of ``body`` (constant-time compare)."""
    if header is None or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(compute_signature(body, key=key), header)
